#include "control/compile/mesh_policy.h"

#include <arpa/inet.h>
#include <google/protobuf/util/json_util.h>

#include <cstdlib>

#include "aws/appmesh/v20190125/records.pb.h"
#include "common/json.h"
#include "control/model/resource_keys.h"
#include "control/stacks/json_value.h"

namespace weft::control::compile {
namespace {

namespace am = ::aws::appmesh::v20190125;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool isIpLiteral(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

}  // namespace

std::string meshPolicyKey(std::string_view mesh) {
  return std::string(kMeshPolicyKeyPrefix) + appmesh::encodeKeySegment(mesh);
}

std::string_view mtlsModeName(MtlsMode mode) {
  switch (mode) {
    case MtlsMode::kOff:
      return "off";
    case MtlsMode::kPermissive:
      return "permissive";
    case MtlsMode::kStrict:
      return "strict";
  }
  return "permissive";
}

std::string_view authorizationModeName(AuthorizationMode mode) {
  return mode == AuthorizationMode::kBackends ? "backends" : "off";
}

std::optional<MtlsMode> parseMtlsMode(std::string_view text) {
  std::string t = lower(text);
  if (t == "off") return MtlsMode::kOff;
  if (t == "permissive") return MtlsMode::kPermissive;
  if (t == "strict") return MtlsMode::kStrict;
  return std::nullopt;
}

std::optional<AuthorizationMode> parseAuthorizationMode(std::string_view text) {
  std::string t = lower(text);
  if (t == "off") return AuthorizationMode::kOff;
  if (t == "backends") return AuthorizationMode::kBackends;
  return std::nullopt;
}

Status validateMeshPolicy(const MeshPolicy& policy) {
  if (policy.authorization == AuthorizationMode::kBackends && policy.mtls != MtlsMode::kStrict)
    return makeError(
        "authorization backends needs mtls strict: a caller is known only by its identity "
        "certificate, which callers present only under strict (use --mtls strict "
        "--authorization backends)");
  return {};
}

std::string meshPolicyJson(const MeshPolicy& policy) {
  return "{\"mtls\": " + jsonString(mtlsModeName(policy.mtls)) +
         ", \"authorization\": " + jsonString(authorizationModeName(policy.authorization)) +
         ", \"updatedAt\": " + std::to_string(policy.updated_at) + "}";
}

std::string spiffeId(std::string_view mesh, bool gateway, std::string_view name) {
  return "spiffe://" + std::string(mesh) + (gateway ? "/virtualGateway/" : "/virtualNode/") +
         std::string(name);
}

Result<MeshPolicy> parseMeshPolicyJson(std::string_view json) {
  auto v = stacks::parseJson(json);
  if (!v || !v->isObject()) return makeError("a mesh policy must be a JSON object");
  MeshPolicy p;
  if (const stacks::Value* m = v->find("mtls")) {
    auto mode = parseMtlsMode(m->str());
    if (!mode)
      return makeError("mtls must be off, permissive or strict, not \"" + std::string(m->str()) +
                       "\"");
    p.mtls = *mode;
  }
  if (const stacks::Value* a = v->find("authorization")) {
    auto mode = parseAuthorizationMode(a->str());
    if (!mode)
      return makeError("authorization must be off or backends, not \"" + std::string(a->str()) +
                       "\"");
    p.authorization = *mode;
  }
  if (const stacks::Value* u = v->find("updatedAt"); u && u->isNumber())
    p.updated_at = std::strtoll(u->text().c_str(), nullptr, 10);
  return p;
}

Result<MeshPolicy> readMeshPolicy(Store& store, std::string_view mesh) {
  auto kv = store.get(meshPolicyKey(mesh));
  if (!kv) return Unexpected<Error>{kv.error()};
  if (!kv->has_value()) return MeshPolicy{};
  auto p = parseMeshPolicyJson((*kv)->value);
  if (!p)
    return makeError("the stored policy of mesh \"" + std::string(mesh) +
                     "\" is not readable: " + p.error().message);
  return p;
}

Result<std::vector<std::string>> identityDnsNames(Store& store, const ProxyIdentity& who) {
  if (who.kind != appmesh::Kind::kVirtualNode) return std::vector<std::string>();
  auto kv = store.get(appmesh::resourceKey({who.kind, who.mesh, "", who.name}));
  if (!kv) return Unexpected<Error>{kv.error()};
  if (!kv->has_value()) return std::vector<std::string>();
  am::StoredResource rec;
  google::protobuf::util::JsonParseOptions po;
  po.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage((*kv)->value, &rec, po).ok())
    return makeError("the stored virtual node " + who.resource() + " is not readable");
  const am::ServiceDiscovery& sd = rec.virtualnode().spec().servicediscovery();
  std::string name;
  if (sd.has_dns()) {
    name = lower(sd.dns().hostname());
    if (isIpLiteral(name)) name.clear();
  } else if (sd.has_awscloudmap()) {
    name = lower(sd.awscloudmap().servicename() + "." + sd.awscloudmap().namespacename());
  }
  while (!name.empty() && name.back() == '.') name.pop_back();
  if (name.empty()) return std::vector<std::string>();
  return std::vector<std::string>{name};
}

}  // namespace weft::control::compile
