#pragma once
// OutlierDetector: passive health checking of one cluster on one worker. It watches the outcome
// of every request the worker sends (response status, or a local failure: connect failure,
// reset, timeout) and ejects a host after too many consecutive failures, for a time that grows
// each time the same host is ejected again; an ejected host is excluded from this worker's
// LoadBalancer until its time is up. See docs/resilience.md.
//
// Rules (App Mesh outlierDetection -> fields here):
//   maxServerErrors      -> consecutive_5xx: that many 5xx responses or local failures in a row
//   (weft)               -> consecutive_gateway_failure: that many 502/503/504 or local failures
//                           in a row (a 500 resets this count; 0 disables it)
//   interval             -> interval: how often ejections are swept (un-ejection, multiplier decay)
//   baseEjectionDuration -> base_ejection_time: ejected for base * times ejected, at most
//                           max(max_ejection_time, base)
//   maxEjectionPercent   -> max_ejection_percent: an ejection must leave at most this percent of
//                           the hosts ejected, except that one host may always be ejected
// Any response that is not a 5xx resets both counts. A host is returned to service at the first
// sweep at or after its ejection ends (so an ejection lasts up to one interval longer, as in
// Envoy); its times-ejected multiplier then decays by one each sweep it stays in service.
//
// Threading: one detector per cluster per worker, used only on that worker's thread (its timer is
// on the worker's TimerQueue). Workers do not share what they observe: each ejects on its own
// evidence, which is what that worker's traffic experienced. State is kept per host address and
// follows update() like the LoadBalancer's. What every worker has ejected is shown to other
// threads (the admin's /clusters) through an OutlierBoard.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "common/stats.h"
#include "common/time.h"
#include "common/timer.h"
#include "upstream/host_set.h"
#include "upstream/load_balancer.h"

namespace weft::upstream {

struct OutlierConfig {
  uint32_t consecutive_5xx = 5;
  uint32_t consecutive_gateway_failure = 5;
  Duration interval = seconds(10);
  Duration base_ejection_time = seconds(30);
  Duration max_ejection_time = seconds(300);
  uint32_t max_ejection_percent = 10;
};

// Any may be null. ejections_active is added to and subtracted from by each worker, so a scrape
// shows the sum over workers (a host ejected on two workers counts twice).
struct OutlierStats {
  std::shared_ptr<stats::Gauge> ejections_active;      // ..._outlier_detection_ejections_active
  std::shared_ptr<stats::Counter> ejections_enforced;  // ..._ejections_enforced_total
  std::shared_ptr<stats::Counter> ejections_overflow;  // ..._ejections_overflow_total
};

// On which workers each host of one HostSet is ejected now: one flag per (host, worker), written
// only by that worker's detector of the cluster (a relaxed store when it ejects a host of
// `hosts()`, when the host returns, when its set changes and when the detector goes: never per
// request) and read from any thread, e.g. by the admin endpoint on the main thread, which counts
// the flags. No lock and no read-modify-write, like the metrics' per-worker slots. Bound to one
// HostSet: a new set gets a new board (see OutlierDetector::publishTo()).
class OutlierBoard {
 public:
  OutlierBoard(HostSetPtr hosts, uint32_t workers);
  const HostSetPtr& hosts() const { return hosts_; }
  uint32_t workers() const { return workers_; }
  // Workers on which hosts()[i] is ejected now (0 for i out of range).
  uint32_t ejectedOn(size_t i) const;
  // Worker `worker`'s flag for hosts()[i]; out-of-range arguments are ignored.
  void set(size_t i, uint32_t worker, bool ejected);

 private:
  HostSetPtr hosts_;
  uint32_t workers_;
  std::unique_ptr<std::atomic<bool>[]> flags_;  // [i * workers_ + worker]
};
using OutlierBoardPtr = std::shared_ptr<OutlierBoard>;

class OutlierDetector {
 public:
  // Called when a host of the current set is ejected (true) or returned (false). `host` is an
  // element of the set last given to the constructor or update(). Typical use: exclude it from
  // the worker's LoadBalancer, which must hold the same set (see excludeIn()).
  using EjectionCallback = std::function<void(const Host& host, bool ejected)>;

  OutlierDetector(OutlierConfig config, HostSetPtr hosts, TimerQueue& timers,
                  EjectionCallback on_ejection, OutlierStats stats = {});
  ~OutlierDetector();
  OutlierDetector(const OutlierDetector&) = delete;
  OutlierDetector& operator=(const OutlierDetector&) = delete;

  // A callback that applies ejections to `lb` (which must be updated with the same host sets).
  static EjectionCallback excludeIn(LoadBalancer& lb);

  // Outcome of one request on `host` (a host of the current set or of an older one; matched by
  // address; unknown addresses are ignored). `http_status` is the upstream's response status;
  // for gRPC pass httpStatusForGrpc(grpc-status) (retry.h), since gRPC errors come as HTTP 200.
  void onResponse(const Host& host, int http_status);
  // The request got no response from `host`: connect failure or timeout, reset or close before
  // the response. Counts as a 5xx and as a gateway failure (Envoy maps these to 503/504).
  void onLocalFailure(const Host& host);

  // New membership. State (counts, ejections, multipliers) carries over to hosts with the same
  // address; departed hosts are forgotten (no callback: the balancer forgets them too). The
  // board, bound to the old set, is left (its marks withdrawn): publishTo() the new set's.
  void update(HostSetPtr hosts);

  // Shows this detector's ejections on `board`, as worker `worker`, from now on (and withdraws
  // them from the board it used before). A board bound to another HostSet than the detector's is
  // taken as none (null). The same board again is a no-op.
  void publishTo(OutlierBoardPtr board, uint32_t worker);

  bool ejected(const Host& host) const;
  // Times the host has been ejected, decayed (the current ejection-time multiplier).
  uint32_t ejectionMultiplier(const Host& host) const;
  size_t ejectedCount() const { return ejected_count_; }
  const OutlierConfig& config() const { return config_; }

 private:
  struct HostState {
    uint32_t consecutive_5xx = 0;
    uint32_t consecutive_gateway = 0;
    uint32_t multiplier = 0;
    bool ejected = false;
    MonoTime eject_until{};
  };
  size_t indexFor(const Host& host) const;
  void record(size_t i, bool is_5xx, bool is_gateway);
  void maybeEject(size_t i);
  void sweep();
  void armSweep();
  void mark(size_t i, bool ejected);
  void withdrawAll();

  OutlierConfig config_;
  HostSetPtr hosts_;
  TimerQueue& timers_;
  EjectionCallback on_ejection_;
  OutlierStats stats_;
  std::vector<HostState> state_;  // by position in hosts_
  size_t ejected_count_ = 0;
  OutlierBoardPtr board_;  // bound to hosts_, or null
  uint32_t board_worker_ = 0;
  Timer sweep_timer_;  // armed only while some host is ejected or has a multiplier to decay
};

}  // namespace weft::upstream
