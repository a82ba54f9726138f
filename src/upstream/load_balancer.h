#pragma once
// Per-worker load balancing over one cluster's HostSet.
//
// A LoadBalancer belongs to exactly one worker and is used only from that worker's thread: it
// has no locks and no atomics. The hosts themselves are shared and immutable (HostSet); what a
// worker mutates per host — active request counts, exclusion, the round-robin cursor — lives here,
// indexed by the host's position in the current snapshot.
//
// Policies:
//   kRoundRobin   strict rotation over the eligible hosts, starting at a random offset per
//                 worker (so N workers do not all hit host 0 first).
//   kLeastRequest power of two choices: two distinct eligible hosts drawn at random, the one with
//                 fewer active requests (this worker's count) wins; a tie goes to the first draw.
// Eligible = healthy (Host::healthy()) and not excluded on this worker (setExcluded, for outlier
// detection). If fewer than panic_threshold_percent % of the hosts are eligible (or none is), the
// balancer uses every host ("panic mode": failing open beats refusing all traffic when health
// information is wrong). Default 50 % (Envoy's); 0 panics only when no host is eligible.

#include <cstdint>
#include <memory>
#include <vector>

#include "upstream/host_set.h"

namespace weft::upstream {

// The randomness seam. Implementations need not be thread-safe; each worker owns one.
class Random {
 public:
  virtual ~Random() = default;
  // 64 uniformly distributed bits.
  virtual uint64_t next() = 0;
  // Uniform in [0, bound); bound must be > 0. The default maps next() with Lemire's
  // multiply-shift (bias < bound / 2^64, negligible here). Fakes may override it directly.
  virtual uint64_t uniform(uint64_t bound);
};

// SplitMix64: a few cycles per number, passes BigCrush, and any 64-bit seed is a good seed.
// Not cryptographic. Seed per worker (e.g. from seedFromEntropy() or worker index ^ time).
class FastRandom final : public Random {
 public:
  explicit FastRandom(uint64_t seed) : state_(seed) {}
  uint64_t next() override;
  static uint64_t seedFromEntropy();

 private:
  uint64_t state_;
};

enum class LbPolicy { kRoundRobin, kLeastRequest };

// Panic rule: with `eligible` of `total` hosts eligible (healthy and not ejected), balance over
// ALL hosts when fewer than `panic_threshold_percent` % are eligible, or none is. Threshold 0
// panics only when none is eligible. Envoy's default is 50 %.
inline constexpr uint32_t kDefaultPanicThresholdPercent = 50;
inline bool shouldPanic(size_t eligible, size_t total, uint32_t panic_threshold_percent) {
  if (total == 0) return false;
  if (eligible == 0) return true;
  return uint64_t(eligible) * 100 < uint64_t(panic_threshold_percent) * total;
}

class LoadBalancer {
 public:
  // `random` must outlive the balancer. `hosts` must not be null (it may be empty).
  LoadBalancer(LbPolicy policy, HostSetPtr hosts, Random& random,
               uint32_t panic_threshold_percent = kDefaultPanicThresholdPercent);
  LoadBalancer(const LoadBalancer&) = delete;
  LoadBalancer& operator=(const LoadBalancer&) = delete;

  // The next host by the policy, or nullptr iff the current set is empty. The pointer stays
  // valid until the next update(); if onRequestStart() was called with it, until the matching
  // onRequestEnd() even across updates (the balancer keeps the old snapshot alive).
  const Host* pick();

  // Brackets one request on `host` (a pointer from pick(), possibly of an older snapshot).
  // Every onRequestStart must be matched by exactly one onRequestEnd on the same host.
  void onRequestStart(const Host& host);
  void onRequestEnd(const Host& host);

  // Switches to a new snapshot. Per-host state (active requests, exclusion) carries over to
  // hosts with the same address; hosts that left the set are forgotten, except that the old
  // snapshot stays alive while requests started on it are in flight.
  void update(HostSetPtr hosts);

  // Per-worker exclusion (outlier detection). `host` must belong to the current snapshot;
  // anything else is ignored.
  void setExcluded(const Host& host, bool excluded);

  // Active requests on this worker for the host's address (0 if not in the current set).
  uint32_t activeRequests(const Host& host) const;
  // True while the balancer ignores health and exclusion (too few eligible hosts).
  bool panicking() const { return panicking_; }
  void setPanicThreshold(uint32_t percent);
  const HostSet& hosts() const { return *hosts_; }
  LbPolicy policy() const { return policy_; }

 private:
  struct Retired {
    HostSetPtr hosts;
    uint64_t in_flight;  // requests started on hosts of this snapshot, not yet ended
  };
  void rebuildCandidates();
  const Host* pickRoundRobin();
  const Host* pickLeastRequest();

  const LbPolicy policy_;
  Random& random_;
  HostSetPtr hosts_;
  std::vector<uint32_t> active_;      // by position in hosts_
  std::vector<uint8_t> excluded_;     // by position in hosts_
  std::vector<uint32_t> candidates_;  // positions pick() chooses from; empty iff hosts_ is empty
  size_t rr_cursor_ = 0;              // index into candidates_
  uint32_t panic_threshold_percent_;
  bool panicking_ = false;
  uint64_t in_flight_ = 0;        // requests started on hosts of the current snapshot
  std::vector<Retired> retired_;  // older snapshots with requests still in flight
};

}  // namespace weft::upstream
