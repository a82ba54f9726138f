#pragma once
// Auto-registration: the registry learns from the proxies (docs/registry.md "Instances from
// proxies"), as ECS registers a task's containers in Cloud Map.
//
// A virtual node's sidecar that says Hello registers its app as an instance of the node's Cloud
// Map service (serviceDiscovery.awsCloudMap: namespaceName + serviceName; or a DNS hostname
// inside a registry namespace: first label = service, the rest = namespace):
//   id          "<host>-<address>" (stable across reconnects of the same host; characters
//               outside Cloud Map's instance id alphabet become '-', at most 64)
//   attributes  AWS_INSTANCE_IPV4 (the first IPv4 of Hello.addresses; else AWS_INSTANCE_IPV6),
//               AWS_INSTANCE_PORT (the node's first listener port), the node's awsCloudMap
//               attributes, and weft:auto=1
//   health      from the proxy's HealthReports (the listener port's state; UNKNOWN keeps what
//               is there); a new instance starts as RegisterInstance would start it.
// The instance is deregistered when its proxy ends its stream after a Goodbye (it drains). A
// proxy lost without one (or silent: no Hello or report) for stale_after makes the instance
// UNHEALTHY; after 2 × stale_after it is deregistered. A reconnect in between (same host and
// address) takes the instance over again. Instances registered through the API (no weft:auto)
// are never written by this, even when their id collides. After a control-plane restart, the
// auto-registered instances in the store are adopted as if their proxies had just been lost.
//
// Writes go through RegistryApi (same records, counters, operations and DNS snapshot refresh as
// the Cloud Map API), so the store's listener re-pushes the callers' endpoints.
//
// Thread-safety: every method takes an internal lock (PushServer calls them from one thread).

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "common/time.h"
#include "control/push/instance_registrar.h"
#include "control/registry/registry_api.h"
#include "control/store/store.h"

namespace weft::control::registry {

class AutoRegistration final : public push::InstanceRegistrar {
 public:
  // `store` (for the App Mesh records), `registry` and `time` must outlive this object.
  AutoRegistration(Store& store, RegistryApi& registry, const TimeSource& time);
  ~AutoRegistration() override;

  void proxyConnected(const push::ConnectedProxy& proxy) override;
  void proxyHealth(uint64_t stream_id,
                   const std::vector<std::pair<uint32_t, push::AppHealth>>& ports) override;
  void proxyDisconnected(uint64_t stream_id, bool clean) override;
  void tick(std::chrono::milliseconds stale_after) override;

  // "service-id/instance-id" of every instance it manages (tests, diagnostics).
  std::set<std::string> managed() const;

 private:
  struct Target;
  struct Stream;
  struct Instance;
  std::optional<Target> targetOf(const push::ConnectedProxy& proxy);
  void attach(uint64_t stream_id, Stream& s);
  void write(Instance& inst, std::string_view health);

  Store& store_;
  RegistryApi& registry_;
  const TimeSource& time_;
  mutable std::mutex mu_;
  std::map<uint64_t, std::unique_ptr<Stream>> streams_;
  std::map<std::string, std::unique_ptr<Instance>> instances_;  // by "service/instance"
  bool adopted_ = false;
};

}  // namespace weft::control::registry
