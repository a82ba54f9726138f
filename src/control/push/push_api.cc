#include "control/push/push_api.h"

#include <google/protobuf/util/json_util.h>

#include <cstdlib>

#include "common/json.h"
#include "control/compile/mesh_policy.h"
#include "control/model/resource_keys.h"
#include "control/stacks/json_value.h"

namespace weft::control::push {
namespace {

constexpr std::string_view kTokensPath = "/weft/v1/tokens";
constexpr std::string_view kProxiesPath = "/weft/v1/proxies";
constexpr std::string_view kProxyConfigPath = "/weft/v1/proxy-config";
constexpr std::string_view kMeshPoliciesPath = "/weft/v1/mesh-policies";
constexpr int kMaxPolicyRetries = 8;
constexpr size_t kMaxBody = 4096;
// Ten years: longer is as good as "never" (ttlSeconds 0).
constexpr int64_t kMaxTtl = int64_t{10} * 366 * 24 * 3600;

bool underPath(std::string_view path, std::string_view base) {
  return path == base || (path.size() > base.size() && path.substr(0, base.size()) == base &&
                          path[base.size()] == '/');
}

ApiResponse ok(std::string body, int status = 200) {
  ApiResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

ApiResponse badRequest(std::string_view message) {
  return apiError(400, "BadRequestException", message);
}

}  // namespace

PushApi::PushApi(Tokens& tokens, const compile::Compiler& compiler, ProxiesFn proxies)
    : tokens_(tokens), compiler_(compiler), proxies_(std::move(proxies)) {}

PushApi::PushApi(Tokens& tokens, const compile::Compiler& compiler, ProxiesFn proxies, Store& store,
                 ca::MeshIdentityIssuer* identities)
    : tokens_(tokens),
      compiler_(compiler),
      proxies_(std::move(proxies)),
      store_(&store),
      identities_(identities) {}

bool PushApi::handles(std::string_view path) {
  return underPath(path, kTokensPath) || underPath(path, kMeshPoliciesPath) ||
         path == kProxiesPath || path == kProxyConfigPath ||
         path == std::string(kProxiesPath) + "/" || path == std::string(kProxyConfigPath) + "/";
}

ApiResponse PushApi::handle(const ApiRequest& request) {
  std::string_view path = request.path;
  if (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  if (path == kTokensPath) {
    if (request.method == "POST") return createToken(request);
    if (request.method == "GET") return listTokens(request);
    return apiError(405, "MethodNotAllowedException",
                    "use POST to create a join token or GET to list them");
  }
  if (underPath(path, kTokensPath)) {
    std::string_view id = path.substr(kTokensPath.size() + 1);
    if (id.find('/') != std::string_view::npos)
      return apiError(404, "NotFoundException", "no such path " + std::string(request.path));
    if (request.method != "DELETE")
      return apiError(405, "MethodNotAllowedException",
                      "use DELETE /weft/v1/tokens/<id> to revoke a join token");
    return revokeToken(request, id);
  }
  if (path == kProxiesPath) {
    if (request.method != "GET")
      return apiError(405, "MethodNotAllowedException", "use GET /weft/v1/proxies");
    return listProxies(request);
  }
  if (path == kProxyConfigPath) {
    if (request.method != "GET")
      return apiError(405, "MethodNotAllowedException",
                      "use GET /weft/v1/proxy-config?resource=mesh/M/virtualNode/N");
    return proxyConfig(request);
  }
  if (underPath(path, kMeshPoliciesPath) && path.size() > kMeshPoliciesPath.size()) {
    std::string_view mesh = path.substr(kMeshPoliciesPath.size() + 1);
    if (mesh.find('/') != std::string_view::npos)
      return apiError(404, "NotFoundException", "no such path " + std::string(request.path));
    if (request.method != "GET" && request.method != "PUT")
      return apiError(405, "MethodNotAllowedException",
                      "use GET or PUT /weft/v1/mesh-policies/<mesh>");
    return meshPolicy(request, mesh);
  }
  return apiError(404, "NotFoundException", "no such path " + std::string(request.path));
}

ApiResponse PushApi::createToken(const ApiRequest& request) {
  if (request.body.size() > kMaxBody)
    return badRequest("the body must be at most " + std::to_string(kMaxBody) + " bytes");
  auto body = stacks::parseJson(request.body.empty() ? std::string_view("{}") : request.body);
  if (!body || !body->isObject())
    return badRequest(
        "the body must be a JSON object {\"resource\": \"mesh/M/virtualNode/N\", "
        "\"ttlSeconds\": N}");
  for (const auto& [k, v] : body->members())
    if (k != "resource" && k != "ttlSeconds")
      return badRequest("unknown field '" + k + "' (the fields are resource and ttlSeconds)");
  const stacks::Value* resource = body->find("resource");
  if (resource == nullptr || !resource->isString() || resource->str().empty())
    return badRequest(
        "resource is required: \"mesh/M/virtualNode/N\", \"mesh/M/virtualGateway/G\" or the "
        "ARN of either");
  auto who = compile::parseProxyResource(resource->str());
  if (!who) return badRequest("resource: " + who.error().message);
  int64_t ttl = 0;
  if (const stacks::Value* t = body->find("ttlSeconds"); t && !t->isNull()) {
    const std::string& text = t->text();
    if (!t->isNumber() || text.find_first_not_of("0123456789") != std::string::npos ||
        text.size() > 12)
      return badRequest("ttlSeconds must be a whole number of seconds (0 = never expires)");
    ttl = std::strtoll(text.c_str(), nullptr, 10);
    if (ttl > kMaxTtl)
      return badRequest("ttlSeconds must be at most " + std::to_string(kMaxTtl) +
                        " (ten years); 0 means the token never expires");
  }
  std::string normalized = who->resource();
  auto token = tokens_.create(normalized, ttl);
  if (!token) return internalServerError(request, "tokens: " + token.error().message);
  std::string id = Tokens::idOf(*token);
  int64_t expires_at = 0;
  auto list = tokens_.list();
  if (list)
    for (const TokenInfo& t : *list)
      if (t.id == id) expires_at = t.expires_at;
  return ok("{\"token\": " + jsonString(*token) + ", \"id\": " + jsonString(id) +
                ", \"resource\": " + jsonString(normalized) +
                ", \"expiresAt\": " + std::to_string(expires_at) + "}",
            201);
}

ApiResponse PushApi::listTokens(const ApiRequest& request) {
  auto list = tokens_.list();
  if (!list) return internalServerError(request, "tokens: " + list.error().message);
  std::string out = "{\"tokens\": [";
  for (size_t i = 0; i < list->size(); ++i) {
    const TokenInfo& t = (*list)[i];
    if (i) out += ", ";
    out += "{\"id\": " + jsonString(t.id) + ", \"resource\": " + jsonString(t.resource) +
           ", \"createdAt\": " + std::to_string(t.created_at) +
           ", \"expiresAt\": " + std::to_string(t.expires_at) +
           ", \"revoked\": " + (t.revoked ? "true" : "false") + "}";
  }
  out += "]}";
  return ok(std::move(out));
}

ApiResponse PushApi::revokeToken(const ApiRequest& request, std::string_view id) {
  auto st = tokens_.revoke(id);
  if (!st) {
    if (st.error().code == 404) return apiError(404, "NotFoundException", st.error().message);
    return internalServerError(request, "tokens: " + st.error().message);
  }
  std::string real_id = Tokens::idOf(id);
  if (real_id.empty()) real_id = std::string(id);
  return ok("{\"id\": " + jsonString(real_id) + ", \"revoked\": true}");
}

ApiResponse PushApi::listProxies(const ApiRequest& request) {
  std::string prefix;
  if (const std::string* mesh = request.queryParam("mesh"); mesh && !mesh->empty())
    prefix = "mesh/" + *mesh + "/";
  std::vector<ProxyStatus> all = proxies_ ? proxies_() : std::vector<ProxyStatus>{};
  std::string out = "{\"proxies\": [";
  bool first = true;
  for (const ProxyStatus& p : all) {
    if (!prefix.empty() && p.resource.rfind(prefix, 0) != 0) continue;
    if (!first) out += ", ";
    first = false;
    out += "{\"resource\": " + jsonString(p.resource) + ", \"host\": " + jsonString(p.host) +
           ", \"network\": " + jsonString(p.network) +
           ", \"proxyVersion\": " + jsonString(p.proxy_version) +
           ", \"peer\": " + jsonString(p.peer) +
           ", \"versionSent\": " + std::to_string(p.version_sent) +
           ", \"versionAcked\": " + std::to_string(p.version_acked) +
           ", \"lastNackVersion\": " + std::to_string(p.last_nack_version) +
           ", \"lastNackReason\": " + jsonString(p.last_nack_reason) +
           ", \"connectedAt\": " + std::to_string(p.connected_at) +
           ", \"identity\": " + jsonString(p.identity) +
           ", \"identityExpiresAt\": " + std::to_string(p.identity_expires_at) + "}";
  }
  out += "]}";
  return ok(std::move(out));
}

ApiResponse PushApi::proxyConfig(const ApiRequest& request) {
  const std::string* resource = request.queryParam("resource");
  if (resource == nullptr || resource->empty())
    return badRequest("the query parameter resource is required (mesh/M/virtualNode/N)");
  auto who = compile::parseProxyResource(*resource);
  if (!who) return badRequest("resource: " + who.error().message);
  auto compiled = compiler_.compile(*who);
  if (!compiled) {
    if (compiled.error().code == compile::kCompileNotFound)
      return apiError(404, "NotFoundException", compiled.error().message);
    return apiError(409, "ConflictException",
                    "cannot compile " + who->resource() + ": " + compiled.error().message);
  }
  // The proxy's own stream carries its listener keys; an API answer never does.
  compile::redactSecrets(compiled->config);
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  auto status = google::protobuf::util::MessageToJsonString(compiled->config, &json, options);
  if (!status.ok())
    return internalServerError(request, "proxy-config to JSON: " + status.ToString());
  return ok(std::move(json));
}

ApiResponse PushApi::meshPolicy(const ApiRequest& request, std::string_view mesh_text) {
  if (store_ == nullptr)
    return apiError(501, "NotImplementedException", "this server keeps no mesh policies");
  std::string mesh(mesh_text);
  auto answer = [&](const compile::MeshPolicy& p) {
    return ok("{\"mesh\": " + jsonString(mesh) + ", " + compile::meshPolicyJson(p).substr(1));
  };
  auto exists = store_->get(appmesh::resourceKey({appmesh::Kind::kMesh, mesh, "", mesh}));
  if (!exists) return internalServerError(request, "mesh policy: " + exists.error().message);
  if (!exists->has_value())
    return apiError(404, "NotFoundException", "mesh \"" + mesh + "\" not found");
  if (request.method == "GET") {
    auto p = compile::readMeshPolicy(*store_, mesh);
    if (!p) return internalServerError(request, "mesh policy: " + p.error().message);
    return answer(*p);
  }
  if (request.body.size() > kMaxBody)
    return badRequest("the body must be at most " + std::to_string(kMaxBody) + " bytes");
  auto body = stacks::parseJson(request.body.empty() ? std::string_view("{}") : request.body);
  if (!body || !body->isObject())
    return badRequest(
        "the body must be a JSON object {\"mtls\": \"off|permissive|strict\", "
        "\"authorization\": \"off|backends\"}");
  for (const auto& [k, v] : body->members())
    if (k != "mtls" && k != "authorization")
      return badRequest("unknown field '" + k + "' (the fields are mtls and authorization)");
  std::optional<compile::MtlsMode> mtls;
  std::optional<compile::AuthorizationMode> authorization;
  if (const stacks::Value* m = body->find("mtls")) {
    mtls = compile::parseMtlsMode(m->str());
    if (!m->isString() || !mtls)
      return badRequest("mtls must be off, permissive or strict, not " +
                        (m->isString() ? "\"" + std::string(m->str()) + "\"" : m->text()));
  }
  if (const stacks::Value* a = body->find("authorization")) {
    authorization = compile::parseAuthorizationMode(a->str());
    if (!a->isString() || !authorization)
      return badRequest("authorization must be off or backends, not " +
                        (a->isString() ? "\"" + std::string(a->str()) + "\"" : a->text()));
  }
  // Optimistic: read, change, write under a precondition on what was read.
  for (int attempt = 0; attempt < kMaxPolicyRetries; ++attempt) {
    const std::string key = compile::meshPolicyKey(mesh);
    auto kv = store_->get(key);
    if (!kv) return internalServerError(request, "mesh policy: " + kv.error().message);
    compile::MeshPolicy p;
    if (kv->has_value()) {
      auto parsed = compile::parseMeshPolicyJson((*kv)->value);
      if (!parsed) return internalServerError(request, "mesh policy: " + parsed.error().message);
      p = *parsed;
    }
    if (mtls) p.mtls = *mtls;
    if (authorization) p.authorization = *authorization;
    if (auto valid = compile::validateMeshPolicy(p); !valid)
      return badRequest(valid.error().message);
    // Identities on: the CA exists before any config needs its roots.
    if (p.mtls != compile::MtlsMode::kOff && identities_ != nullptr)
      if (auto st = identities_->ensureCa(mesh); !st)
        return internalServerError(request, "mesh identity CA: " + st.error().message);
    p.updated_at = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
    int64_t expected = kv->has_value() ? (*kv)->revision : StoreOp::kAbsent;
    auto committed = store_->commit({StoreOp::put(key, compile::meshPolicyJson(p), expected)});
    if (committed) return answer(p);
    if (committed.error().code != kStoreConflict)
      return internalServerError(request, "mesh policy: " + committed.error().message);
  }
  return apiError(400, "ThrottlingException", "the mesh policy changed concurrently; retry");
}

}  // namespace weft::control::push
