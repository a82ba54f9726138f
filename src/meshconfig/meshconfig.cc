#include "meshconfig/meshconfig.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <openssl/sha.h>

#include <array>
#include <vector>

#include "common/hex.h"

namespace weft::meshconfig {

std::string configHash(const v1::ProxyConfig& config) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream sos(&bytes);
    google::protobuf::io::CodedOutputStream cos(&sos);
    cos.SetSerializationDeterministic(true);
    config.SerializeToCodedStream(&cos);
  }
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), md);
  return hexEncode(std::string_view(reinterpret_cast<const char*>(md), sizeof md));
}

Status applyEndpoints(v1::ProxyConfig& config, const v1::EndpointsUpdate& update) {
  for (const v1::ClusterEndpoints& ce : update.clusters()) {
    v1::Cluster* target = nullptr;
    for (v1::Cluster& c : *config.mutable_clusters())
      if (c.name() == ce.cluster()) target = &c;
    if (target == nullptr || target->type() != v1::Cluster::STATIC)
      return makeError("endpoints delta names cluster '" + ce.cluster() +
                       "', which is not a STATIC cluster of the config");
    *target->mutable_endpoints() = ce.endpoints();
  }
  return {};
}

std::string ProxyResource::normalized() const {
  return "mesh/" + mesh + (gateway ? "/virtualGateway/" : "/virtualNode/") + name;
}

Result<ProxyResource> parseProxyResource(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return makeError("invalid resource \"" + std::string(text) + "\": " + why +
                     "; expected mesh/MESH/virtualNode/NAME, mesh/MESH/virtualGateway/NAME or an "
                     "App Mesh ARN (arn:aws:appmesh:REGION:ACCOUNT:mesh/MESH/virtualNode/NAME)");
  };
  std::string_view rest = text;
  if (rest.substr(0, 4) == "arn:") {
    // arn:PARTITION:appmesh:REGION:ACCOUNT:RESOURCE
    std::string_view r = rest;
    std::array<std::string_view, 5> parts;
    for (auto& p : parts) {
      size_t c = r.find(':');
      if (c == std::string_view::npos) return bad("not a complete ARN");
      p = r.substr(0, c);
      r.remove_prefix(c + 1);
    }
    if (parts[1].substr(0, 3) != "aws" || parts[2] != "appmesh")
      return bad("not an App Mesh ARN (service \"" + std::string(parts[2]) + "\")");
    rest = r;
  }
  std::vector<std::string_view> segs;
  while (true) {
    size_t s = rest.find('/');
    segs.push_back(rest.substr(0, s));
    if (s == std::string_view::npos) break;
    rest.remove_prefix(s + 1);
  }
  if (segs.size() != 4 || segs[0] != "mesh") return bad("the wrong shape");
  if (segs[2] != "virtualNode" && segs[2] != "virtualGateway")
    return bad("names a \"" + std::string(segs[2]) + "\", not a virtualNode or virtualGateway");
  for (size_t i : {1, 3})
    if (segs[i].empty() || segs[i].size() > 255) return bad("a name is empty or too long");
  ProxyResource r;
  r.mesh = std::string(segs[1]);
  r.name = std::string(segs[3]);
  r.gateway = segs[2] == "virtualGateway";
  return r;
}

}  // namespace weft::meshconfig
