#pragma once
// CA rotation (docs/security.md "Rotation"): the route that starts, shows and ends rotations of
// ACM PCA CAs and mesh identity CAs, and the maintenance task that moves them through their
// phases. The per-CA work lives with the CA (CaApi, MeshIdentityIssuer); this class decides
// when a rotation may move on.
//
// Phases: PUBLISHING (a new key and certificate exist; every trust bundle built from the CA
// holds the old and the new certificate; the old key still signs) -> SIGNING_NEW (the new key
// signs; ACM certificates of the CA are re-issued; bundles still hold the old certificate) ->
// retired (the old certificate leaves the bundles once every leaf it signed has expired, or at
// retire-now).
//
// PUBLISHING -> SIGNING_NEW happens in a maintenance round when (1) an earlier round of this
// object already saw the rotation in PUBLISHING (so the push server, which recompiles within
// its coalescing window of a store change, has sent the configs with the new bundle), and (2)
// every connected proxy has acknowledged the latest config sent to it (`caught_up`). A proxy
// that is disconnected then gets the bundle of the current phase when it reconnects; until
// then it does not trust leaves of the new key. After a server restart the first round only
// observes again.
//
// Route (SigV4 like every /weft/v1 route; JSON bodies):
//   POST /weft/v1/ca-rotations         {"certificateAuthorityArn": A} or {"mesh": M}
//        -> 201 the rotation (PUBLISHING); 409 ConflictException when one is in progress or the
//           CA is not ACTIVE; 400 BadRequestException (a subordinate with an external parent);
//           404 NotFoundException.
//   GET  /weft/v1/ca-rotations?certificateAuthorityArn=A | ?mesh=M -> 200 the rotation state
//   POST /weft/v1/ca-rotations/retire  {"certificateAuthorityArn": A} or {"mesh": M}
//        -> 200: the old root leaves the bundles now (SIGNING_NEW only, else 409).
// The state: see CaApi::rotationStatus and MeshIdentityIssuer::rotationStatus.
//
// Thread-safety: handle() from any number of threads; runMaintenance() from the maintenance
// thread (it guards its own state).

#include <chrono>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <string_view>

#include "common/result.h"
#include "control/api/api_types.h"
#include "control/ca/ca_api.h"
#include "control/ca/mesh_identity.h"

namespace weft::control::ca {

class CaRotation {
 public:
  // Whether every connected proxy acknowledged the latest config sent to it.
  using CaughtUpFn = std::function<bool()>;

  // `api` and `meshes` (may be null: no mesh rotations) must outlive this object.
  CaRotation(CaApi& api, MeshIdentityIssuer* meshes, CaughtUpFn caught_up);

  // The maintenance task: one step of every rotation in progress. The CAs read the time from
  // their own TimeSource (the same clock as `now` in the server).
  Status runMaintenance(std::chrono::system_clock::time_point now);

  static bool handles(std::string_view path);
  ApiResponse handle(const ApiRequest& request);

 private:
  CaApi& api_;
  MeshIdentityIssuer* meshes_;
  CaughtUpFn caught_up_;
  std::mutex mu_;                          // guards seen_publishing_
  std::set<std::string> seen_publishing_;  // "pca:ARN" / "mesh:M" seen in PUBLISHING
};

}  // namespace weft::control::ca
