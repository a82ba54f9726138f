#pragma once
// What the control plane (src/control) and weft-proxy (src/proxy) must agree on about a proxy
// config, written once for both sides (neither may link the other):
//  - configHash: the value of ConfigUpdate.hash the server sends and the proxy checks;
//  - applyEndpoints: how an EndpointsUpdate (a delta of STATIC clusters' endpoints) changes a
//    config, which the server relies on when it sends one;
//  - ProxyResource: the App Mesh resource a proxy runs for, as join tokens, Hellos, the
//    proxy's --resource flag and APPMESH_RESOURCE_ARN name it.
//
// Thread-safety: pure functions.

#include <string>
#include <string_view>

#include "common/result.h"
#include "weft/v1/config.pb.h"
#include "weft/v1/stream.pb.h"

namespace weft::meshconfig {

// sha256 (lower-case hex) of the deterministic protobuf serialization of `config`.
std::string configHash(const v1::ProxyConfig& config);

// Replaces the endpoints of each cluster `update` names. Fails, naming the cluster, when `config`
// has no such cluster or it is not STATIC; `config` may then be partly changed (callers apply to
// a copy).
Status applyEndpoints(v1::ProxyConfig& config, const v1::EndpointsUpdate& update);

// A virtual node or virtual gateway of a mesh.
struct ProxyResource {
  std::string mesh;
  std::string name;
  bool gateway = false;  // virtualGateway (else virtualNode)

  bool operator==(const ProxyResource&) const = default;
  // "mesh/M/virtualNode/N" or "mesh/M/virtualGateway/G".
  std::string normalized() const;
};

// Parses "mesh/M/virtualNode/N", "mesh/M/virtualGateway/G" or an App Mesh ARN of either
// (arn:PARTITION:appmesh:REGION:ACCOUNT:mesh/M/virtualNode/N; any partition starting with "aws",
// region and account: a proxy's environment may carry the ARN of its old task definition). Names
// are 1–255 bytes without '/'. The error quotes the text, says what is wrong and which forms are
// accepted.
Result<ProxyResource> parseProxyResource(std::string_view text);

}  // namespace weft::meshconfig
