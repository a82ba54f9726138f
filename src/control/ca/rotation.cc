#include "control/ca/rotation.h"

#include <vector>

#include "control/stacks/json_value.h"

namespace weft::control::ca {
namespace {

constexpr std::string_view kPath = "/weft/v1/ca-rotations";
constexpr std::string_view kRetirePath = "/weft/v1/ca-rotations/retire";
constexpr size_t kMaxBody = 4096;

ApiResponse errorFrom(const Error& e) {
  switch (e.code) {
    case 400:
      return apiError(400, "BadRequestException", e.message);
    case 404:
      return apiError(404, "NotFoundException", e.message);
    case 409:
      return apiError(409, "ConflictException", e.message);
    default:
      return apiError(500, "InternalFailure", "internal error: " + e.message);
  }
}

ApiResponse okJson(std::string body, int status) {
  ApiResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

// Which CA a request names: exactly one of a CA ARN and a mesh.
struct Target {
  std::string ca_arn;
  std::string mesh;
};

Result<Target> targetFromBody(const std::string& text) {
  if (text.size() > kMaxBody)
    return makeError("the body must be at most " + std::to_string(kMaxBody) + " bytes", 400);
  auto body = stacks::parseJson(text.empty() ? std::string_view("{}") : text);
  if (!body || !body->isObject())
    return makeError(
        "the body must be a JSON object {\"certificateAuthorityArn\": ARN} or {\"mesh\": M}", 400);
  Target t;
  for (const auto& [k, v] : body->members()) {
    if (k != "certificateAuthorityArn" && k != "mesh")
      return makeError(
          "unknown field '" + k + "' (the fields are certificateAuthorityArn and mesh)", 400);
    if (!v.isString()) return makeError(k + " must be a string", 400);
    (k == "mesh" ? t.mesh : t.ca_arn) = std::string(v.str());
  }
  if (t.ca_arn.empty() == t.mesh.empty())
    return makeError(
        "give exactly one of certificateAuthorityArn (an ACM PCA CA) and mesh (a "
        "mesh's identity CA)",
        400);
  return t;
}

Result<Target> targetFromQuery(const ApiRequest& request) {
  Target t;
  if (const std::string* a = request.queryParam("certificateAuthorityArn")) t.ca_arn = *a;
  if (const std::string* m = request.queryParam("mesh")) t.mesh = *m;
  if (t.ca_arn.empty() == t.mesh.empty())
    return makeError("give exactly one of ?certificateAuthorityArn=ARN and ?mesh=M", 400);
  return t;
}

}  // namespace

CaRotation::CaRotation(CaApi& api, MeshIdentityIssuer* meshes, CaughtUpFn caught_up)
    : api_(api), meshes_(meshes), caught_up_(std::move(caught_up)) {}

Status CaRotation::runMaintenance(std::chrono::system_clock::time_point /*now*/) {
  std::vector<std::pair<std::string, bool>> todo;  // ("pca:ARN" | "mesh:M", mesh?)
  auto cas = api_.rotatingCas();
  if (!cas) return Unexpected<Error>{cas.error()};
  for (const std::string& arn : *cas) todo.emplace_back("pca:" + arn, false);
  if (meshes_ != nullptr) {
    auto meshes = meshes_->rotatingMeshes();
    if (!meshes) return Unexpected<Error>{meshes.error()};
    for (const std::string& m : *meshes) todo.emplace_back("mesh:" + m, true);
  }
  const bool caught_up = !todo.empty() && caught_up_ && caught_up_();
  std::lock_guard lock(mu_);
  std::set<std::string> seen;
  Status result;
  for (const auto& [tag, mesh] : todo) {
    const std::string name = tag.substr(tag.find(':') + 1);
    bool may_switch = caught_up && seen_publishing_.count(tag) > 0;
    auto phase =
        mesh ? meshes_->advanceRotation(name, may_switch) : api_.advanceRotation(name, may_switch);
    if (!phase) {
      // The others still move; the first failure is reported (and logged by Maintenance).
      if (result)
        result = makeError((mesh ? "mesh " : "CA ") + name + ": " + phase.error().message);
      if (seen_publishing_.count(tag)) seen.insert(tag);
      continue;
    }
    if (*phase == "PUBLISHING") seen.insert(tag);
  }
  seen_publishing_ = std::move(seen);
  return result;
}

bool CaRotation::handles(std::string_view path) {
  return path == kPath || path == kRetirePath || path == std::string(kPath) + "/" ||
         path == std::string(kRetirePath) + "/";
}

ApiResponse CaRotation::handle(const ApiRequest& request) {
  std::string_view path = request.path;
  if (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  const bool retire = path == kRetirePath;
  if (retire ? request.method != "POST" : request.method != "POST" && request.method != "GET")
    return apiError(405, "MethodNotAllowedException",
                    retire
                        ? "use POST /weft/v1/ca-rotations/retire"
                        : "use POST /weft/v1/ca-rotations to start a rotation or GET to show it");
  auto target = request.method == "GET" ? targetFromQuery(request) : targetFromBody(request.body);
  if (!target) return errorFrom(target.error());
  if (!target->mesh.empty() && meshes_ == nullptr)
    return apiError(404, "NotFoundException", "this server has no mesh identity CAs");
  Result<std::string> out = [&]() -> Result<std::string> {
    const bool mesh = !target->mesh.empty();
    if (request.method == "GET")
      return mesh ? meshes_->rotationStatus(target->mesh) : api_.rotationStatus(target->ca_arn);
    if (retire)
      return mesh ? meshes_->retireRotationNow(target->mesh)
                  : api_.retireRotationNow(target->ca_arn);
    return mesh ? meshes_->startRotation(target->mesh) : api_.startRotation(target->ca_arn);
  }();
  if (!out) return errorFrom(out.error());
  return okJson(std::move(*out), request.method == "POST" && !retire ? 201 : 200);
}

}  // namespace weft::control::ca
