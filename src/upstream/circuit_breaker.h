#pragma once
// CircuitBreaker: one worker's limits on one cluster — open connections, requests waiting for a
// connection, requests in flight, retries in flight — each with a counter of the requests it
// turned away. App Mesh's connectionPool maps onto it:
//   http  { maxConnections, maxPendingRequests }  -> kConnections, kPendingRequests
//   http2 { maxRequests }, grpc { maxRequests }    -> kRequests
//   tcp   { maxConnections }                       -> kConnections
// and the route's retry budget (or a fixed max_retries) -> kRetries.
//
// Single-threaded: one breaker per cluster per worker, used only on that worker's thread (no
// locks, no atomics). Limits are therefore per worker, like PoolLimits: with N workers a cluster
// sees up to N times each limit (docs/resilience.md says why).
//
// An overflow is answered by the caller with a 503 whose body is overflowMessage(r) and response
// flag "UO"; the breaker counts it in the resource's overflow counter.

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/stats.h"
#include "upstream/retry.h"

namespace weft::upstream {

enum class Resource : uint8_t { kConnections, kPendingRequests, kRequests, kRetries };
inline constexpr size_t kNumResources = 4;
// "max_connections", "max_pending_requests", "max_requests", "max_retries".
std::string_view resourceLimitName(Resource r);

struct CircuitBreakerLimits {
  uint32_t max_connections = 1024;
  uint32_t max_pending_requests = 1024;
  uint32_t max_requests = 1024;
  uint32_t max_retries = 3;  // used when `retry_budget` is not set
  // When set, the retry limit follows the active requests instead of max_retries.
  std::optional<RetryBudget> retry_budget;
};

// Overflow counters (any may be null), one per resource. Names (docs/metrics.md):
//   weft_cluster_upstream_cx_overflow_total          kConnections
//   weft_cluster_upstream_rq_pending_overflow_total  kPendingRequests
//   weft_cluster_upstream_rq_overflow_total          kRequests
//   weft_cluster_upstream_rq_retry_overflow_total    kRetries
struct CircuitBreakerStats {
  std::shared_ptr<stats::Counter> cx_overflow;
  std::shared_ptr<stats::Counter> rq_pending_overflow;
  std::shared_ptr<stats::Counter> rq_overflow;
  std::shared_ptr<stats::Counter> rq_retry_overflow;
};

class CircuitBreaker {
 public:
  explicit CircuitBreaker(CircuitBreakerLimits limits = {}, CircuitBreakerStats stats = {});
  CircuitBreaker(const CircuitBreaker&) = delete;
  CircuitBreaker& operator=(const CircuitBreaker&) = delete;

  // Takes one unit of `r` if below its limit (true; the caller must release() it exactly once),
  // else counts the overflow and returns false.
  bool tryAcquire(Resource r);
  void release(Resource r);

  // RAII form: holds one unit of a resource (or nothing, if the acquire overflowed) and releases
  // it when destroyed or reset. Movable; must not outlive its breaker.
  class Guard {
   public:
    Guard() = default;
    Guard(Guard&& o) noexcept : breaker_(o.breaker_), resource_(o.resource_) {
      o.breaker_ = nullptr;
    }
    Guard& operator=(Guard&& o) noexcept;
    ~Guard() { reset(); }
    // True if this guard holds a unit (the acquire succeeded).
    explicit operator bool() const { return breaker_ != nullptr; }
    void reset();

   private:
    friend class CircuitBreaker;
    Guard(CircuitBreaker* b, Resource r) : breaker_(b), resource_(r) {}
    CircuitBreaker* breaker_ = nullptr;
    Resource resource_ = Resource::kConnections;
  };
  // Like tryAcquire(); an empty guard means overflow (already counted).
  Guard acquire(Resource r);

  uint32_t active(Resource r) const { return active_[size_t(r)]; }
  // The current limit (for kRetries with a budget it moves with active(kRequests)).
  uint32_t limit(Resource r) const;
  // True if the next tryAcquire(r) would overflow (for /clusters: "circuit open").
  bool open(Resource r) const { return active(r) >= limit(r); }
  const CircuitBreakerLimits& limits() const { return limits_; }
  // Changes the limits (config reload). Units in use stay counted; a lowered limit only refuses
  // new acquires.
  void setLimits(CircuitBreakerLimits limits) { limits_ = std::move(limits); }

  // Body of the 503 for an overflow of `r`, e.g. "upstream overflow: max_pending_requests".
  static std::string_view overflowMessage(Resource r);
  // Response flag for access logs (Envoy's UO).
  static constexpr std::string_view kOverflowFlag = "UO";

 private:
  CircuitBreakerLimits limits_;
  CircuitBreakerStats stats_;
  std::array<uint32_t, kNumResources> active_{};
};

}  // namespace weft::upstream
