#pragma once
// The HTTP API of config push (SigV4-signed like /weft/v1/credentials; JSON; see
// docs/config-push.md):
//   POST   /weft/v1/tokens        {"resource": R, "ttlSeconds": N (optional, 0 = never)}
//          -> 201 {"token", "id", "resource" (normalized "mesh/M/virtualNode/N"), "expiresAt"}
//             (the only time the token is shown)
//   GET    /weft/v1/tokens        -> 200 {"tokens": [{"id", "resource", "createdAt",
//                                         "expiresAt", "revoked"}]}
//   DELETE /weft/v1/tokens/<id>   -> 200 {"id", "revoked": true}; 404 NotFoundException
//   GET    /weft/v1/proxies[?mesh=M]
//          -> 200 {"proxies": [{"resource", "host", "network", "proxyVersion", "peer",
//                  "versionSent", "versionAcked", "lastNackVersion", "lastNackReason",
//                  "connectedAt"}]}
//   GET    /weft/v1/proxy-config?resource=R
//          -> 200 the ProxyConfig a proxy of R gets (protobuf JSON mapping, proto field names);
//             404 NotFoundException when R does not exist; 400 for a malformed R.
// Times are unix seconds (0 = never / none).
//
// Thread-safety: handle() may run on several threads at once (Tokens, the compiler and the
// proxies callback are thread-safe).

#include <functional>
#include <string_view>
#include <vector>

#include "control/api/api_types.h"
#include "control/ca/mesh_identity.h"
#include "control/compile/compiler.h"
#include "control/push/push_server.h"
#include "control/push/tokens.h"

namespace weft::control::push {

class PushApi {
 public:
  using ProxiesFn = std::function<std::vector<ProxyStatus>()>;

  // `tokens` and `compiler` must outlive the API. `proxies` answers the connected proxies
  // (PushServer::proxies in the server).
  PushApi(Tokens& tokens, const compile::Compiler& compiler, ProxiesFn proxies);
  // Added (issue 7): with `store` (and `identities`, which makes a mesh's identity CA when its
  // policy turns identities on), /weft/v1/mesh-policies is served; both must outlive the API.
  PushApi(Tokens& tokens, const compile::Compiler& compiler, ProxiesFn proxies, Store& store,
          ca::MeshIdentityIssuer* identities);

  // "/weft/v1/tokens" (and below), "/weft/v1/proxies", "/weft/v1/proxy-config",
  // "/weft/v1/mesh-policies/<mesh>".
  static bool handles(std::string_view path);
  ApiResponse handle(const ApiRequest& request);

 private:
  ApiResponse createToken(const ApiRequest& request);
  ApiResponse listTokens(const ApiRequest& request);
  ApiResponse revokeToken(const ApiRequest& request, std::string_view id);
  ApiResponse listProxies(const ApiRequest& request);
  ApiResponse proxyConfig(const ApiRequest& request);
  ApiResponse meshPolicy(const ApiRequest& request, std::string_view mesh);

  Tokens& tokens_;
  const compile::Compiler& compiler_;
  ProxiesFn proxies_;
  Store* store_ = nullptr;
  ca::MeshIdentityIssuer* identities_ = nullptr;
};

}  // namespace weft::control::push
