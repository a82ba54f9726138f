#pragma once
// HealthChecker: active health checks of one cluster's hosts. Every `interval` each host is
// probed (ProbeFactory: TCP, HTTP/1, later gRPC); a probe that does not answer within `timeout`
// fails. A healthy host turns unhealthy after `unhealthy_threshold` failures in a row and back
// after `healthy_threshold` successes in a row. See docs/resilience.md.
//
// A host that joins (first update() that names its address) starts unhealthy and "pending", and
// is probed at once; its first result decides, whichever it is (Envoy's behaviour: a new host
// needs one successful check, not healthy_threshold of them). Until then it is not balanced to
// unless the balancer panics, which it does while every host is pending.
//
// Threading and publication: health checks run on ONE thread for the whole proxy (the server's
// main loop), not per worker, so a host gets one probe per interval whatever the concurrency.
// Results reach the workers the way every change does: the owner builds a HostSet with the
// health flags (withHealth()) and publishes a new Snapshot. To keep that cheap the checker
// coalesces: on_set_changed runs at most once per loop turn (from a zero-delay timer), after
// any number of transitions; on_host_changed runs at each transition, for logs.
//
// The checker, its timers and its probes belong to the loop whose TimerQueue it was given.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "common/stats.h"
#include "common/time.h"
#include "common/timer.h"
#include "upstream/health_probe.h"
#include "upstream/host_set.h"
#include "upstream/load_balancer.h"  // shouldPanic: the panic rule lives with the balancer

namespace weft::upstream {

struct HealthCheckConfig {
  Duration interval = seconds(10);
  Duration timeout = seconds(5);
  uint32_t healthy_threshold = 2;
  uint32_t unhealthy_threshold = 2;
};

// App Mesh's ranges: interval 5-300 s, timeout 2-60 s, thresholds 2-10. The config loader calls
// this; the checker itself accepts any positive values (tests use short ones).
Status validateHealthCheck(const HealthCheckConfig& config, std::string_view where);

// Any may be null. Updated on the checker's thread (which is not a worker: the shared slot).
struct HealthCheckStats {
  std::shared_ptr<stats::Counter> attempt;  // weft_cluster_health_check_attempt_total
  std::shared_ptr<stats::Counter> failure;  // weft_cluster_health_check_failure_total
  std::shared_ptr<stats::Gauge> healthy;    // weft_cluster_membership_healthy (set())
};

struct HealthCheckCallbacks {
  // A host turned healthy or unhealthy (pending -> either also counts). Must not call back into
  // the checker.
  std::function<void(const net::Address& host, bool healthy, std::string_view detail)>
      on_host_changed;
  // The set of unhealthy hosts changed (coalesced, once per loop turn). May call update() and
  // withHealth(); must not destroy the checker (post that to the loop instead).
  std::function<void()> on_set_changed;
};

class HealthChecker {
 public:
  // `factory` and `timers` must outlive the checker. Nothing is probed before update().
  HealthChecker(HealthCheckConfig config, ProbeFactory& factory, TimerQueue& timers,
                HealthCheckCallbacks callbacks, HealthCheckStats stats = {});
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // The hosts to check. Hosts already known keep their state and schedule; new ones start pending
  // and are probed now; departed ones are dropped (their probe cancelled).
  void update(const HostSet& hosts);

  // Unknown addresses count as healthy (not checked by this checker).
  bool healthy(const net::Address& address) const;
  bool pending(const net::Address& address) const;
  size_t size() const { return hosts_.size(); }
  size_t healthyCount() const;
  // Bumped whenever the set of unhealthy hosts changes.
  uint64_t version() const { return version_; }
  // `base` with each host's health flag set from this checker: what the owner publishes.
  HostSetPtr withHealth(const HostSet& base) const;

 private:
  struct HostState;
  void startProbe(HostState& h);
  void onResult(HostState& h, bool ok, std::string_view detail);
  void setHealthy(HostState& h, bool healthy, std::string_view detail);
  void changed();

  HealthCheckConfig config_;
  ProbeFactory& factory_;
  TimerQueue& timers_;
  HealthCheckCallbacks callbacks_;
  HealthCheckStats stats_;
  std::unordered_map<net::Address, std::unique_ptr<HostState>, AddressHash, AddressEq> hosts_;
  uint64_t version_ = 0;
  Timer notify_;  // zero-delay: runs on_set_changed once per loop turn
};

}  // namespace weft::upstream
