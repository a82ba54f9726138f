#pragma once
// The App Mesh REST-JSON API (version 2019-01-25) over a Store: every operation on the
// `/v20190125/meshes...` paths, with App Mesh's validation, reference and delete-order rules,
// metadata, quotas, tags, pagination and error names.
//
// Thread-safety: handle() may be called from several threads at once; consistency comes from the
// store's optimistic commits (a lost race is retried, never half-applied).

#include <cstdint>
#include <memory>
#include <string>

#include "common/time.h"
#include "control/api/api_types.h"
#include "control/store/store.h"

namespace weft::control::appmesh {

// Per-mesh limits; App Mesh's default quotas.
struct Quotas {
  int virtual_nodes_per_mesh = 200;
  int virtual_services_per_mesh = 200;
  int virtual_routers_per_mesh = 200;
  int routes_per_virtual_router = 50;
  int backends_per_virtual_node = 50;
  int virtual_gateways_per_mesh = 3;
  int gateway_routes_per_virtual_gateway = 10;
  int meshes_per_account = 15;
};

struct Options {
  std::string region = "us-west-2";
  std::string account_id = "000000000000";  // used when a request carries none
  Quotas quotas;
};

class AppMeshApi {
 public:
  // `store` and `time` must outlive this object.
  AppMeshApi(Store& store, const TimeSource& time, Options options);
  ~AppMeshApi();

  // True when `path` belongs to this API ("/v20190125/..." and "/v20190125/tags...").
  static bool handles(std::string_view path);

  ApiResponse handle(const ApiRequest& request);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft::control::appmesh
