#pragma once
// The service registry's APIs over a Store, as AWS Cloud Map and Route 53 answer them:
//   * Cloud Map (JSON 1.1, X-Amz-Target "Route53AutoNaming_v20170314.<Op>", SigV4 service
//     "servicediscovery"): namespaces, services, instances, health, discovery and operations;
//   * the Route 53 REST-XML subset on the hosted zones of DNS namespaces ("/2013-04-01/...",
//     SigV4 service "route53");
//   * weft's networks ("VPCs"), REST-JSON on "/weft/v1/networks[/<id>]".
// Shapes and error names are botocore's (see docs/registry.md).
//
// Storage: records under "registry/..." (networks/, namespaces/, namespace-names/, services/,
// service-names/, instances/<service>/, operations/, requests/), JSON, written with optimistic
// commits (a lost race re-reads and retries). Parents carry counters (ServiceCount,
// InstanceCount, a network's attached namespaces) that children's writes bump, so a delete that
// checks "no children" can never race a create.
//
// After every successful write the API rebuilds the DNS snapshot (one listing of registry/) and
// publishes it in snapshots(); refresh() does the same on demand (once at start).
//
// Thread-safety: every handle*() may run on several threads at once.

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"
#include "common/time.h"
#include "control/api/api_types.h"
#include "control/registry/registry_snapshot.h"
#include "control/store/store.h"

namespace weft::control::registry {

struct RegistryOptions {
  std::string region = "us-west-2";
  std::string account_id = "000000000000";  // used when a request carries none
};

class RegistryApi {
 public:
  // `store` and `time` must outlive this object.
  RegistryApi(Store& store, const TimeSource& time, RegistryOptions options);
  ~RegistryApi();

  static constexpr std::string_view kTargetPrefix = "Route53AutoNaming_v20170314.";

  ApiResponse handleCloudMap(const ApiRequest& request);

  static bool handlesRoute53(std::string_view path);
  ApiResponse handleRoute53(const ApiRequest& request);

  static bool handlesNetworks(std::string_view path);
  ApiResponse handleNetworks(const ApiRequest& request);

  // ---- Instances from proxies (auto_registration.h; docs/registry.md) ----
  // The same records, counters, operations and snapshot refresh as the Cloud Map API's.

  // The attribute that marks an instance written by auto-registration ("1").
  static constexpr std::string_view kAutoAttribute = "weft:auto";
  // The id of service `service` (case-insensitive) in the namespace whose name or HTTP name is
  // `namespace_name` (only private DNS namespaces with `private_dns_only`: a DNS hostname names
  // a service only there, as the compiler reads it); nullopt when either does not exist.
  Result<std::optional<std::string>> findService(std::string_view namespace_name,
                                                 std::string_view service,
                                                 bool private_dns_only = false);
  // Upserts instance `instance_id` of `service_id` with `attributes` plus weft:auto=1 and
  // HealthStatus `health` ("" = what RegisterInstance would start it with: HEALTHY with a custom
  // health check, else UNKNOWN). Answers false, writing nothing, when an instance of that id was
  // registered through the API (no weft:auto): it is never touched. Attributes are checked as
  // RegisterInstance checks them (InvalidInput errors).
  Result<bool> putAutoInstance(const std::string& service_id, const std::string& instance_id,
                               const std::map<std::string, std::string>& attributes,
                               std::string_view health);
  // Sets an auto-registered instance's HealthStatus (HEALTHY / UNHEALTHY / UNKNOWN). False when
  // it does not exist or is not auto-registered (nothing written).
  Result<bool> setAutoInstanceHealth(const std::string& service_id, const std::string& instance_id,
                                     std::string_view health);
  // Deregisters an auto-registered instance; false when it does not exist or is not
  // auto-registered (nothing written).
  Result<bool> removeAutoInstance(const std::string& service_id, const std::string& instance_id);
  // Every auto-registered instance: (service id, instance id).
  Result<std::vector<std::pair<std::string, std::string>>> autoInstances();

  // Re-reads registry/ and publishes a new snapshot.
  Status refresh();
  const SnapshotHolder& snapshots() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft::control::registry
