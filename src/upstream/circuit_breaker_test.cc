#include "upstream/circuit_breaker.h"

#include <gtest/gtest.h>

#include <vector>

namespace weft::upstream {
namespace {

struct Counters {
  Counters() : registry(1) {
    stats.cx_overflow = registry.counter("weft_test_cx_overflow_total");
    stats.rq_pending_overflow = registry.counter("weft_test_rq_pending_overflow_total");
    stats.rq_overflow = registry.counter("weft_test_rq_overflow_total");
    stats.rq_retry_overflow = registry.counter("weft_test_rq_retry_overflow_total");
  }
  stats::Registry registry;
  CircuitBreakerStats stats;
};

TEST(CircuitBreakerTest, EachLimitOverflowsAndCountsItsOwnCounter) {
  Counters c;
  CircuitBreakerLimits limits;
  limits.max_connections = 2;
  limits.max_pending_requests = 1;
  limits.max_requests = 3;
  limits.max_retries = 1;
  CircuitBreaker cb(limits, c.stats);
  struct Case {
    Resource r;
    uint32_t limit;
    stats::Counter* counter;
  };
  for (Case k : {Case{Resource::kConnections, 2, c.stats.cx_overflow.get()},
                 Case{Resource::kPendingRequests, 1, c.stats.rq_pending_overflow.get()},
                 Case{Resource::kRequests, 3, c.stats.rq_overflow.get()},
                 Case{Resource::kRetries, 1, c.stats.rq_retry_overflow.get()}}) {
    std::string name(resourceLimitName(k.r));
    for (uint32_t i = 0; i < k.limit; ++i) EXPECT_TRUE(cb.tryAcquire(k.r)) << name << " #" << i;
    EXPECT_TRUE(cb.open(k.r)) << name;
    EXPECT_FALSE(cb.tryAcquire(k.r)) << name << " past its limit";
    EXPECT_FALSE(cb.tryAcquire(k.r)) << name << " past its limit";
    EXPECT_EQ(k.counter->value(), 2u) << name << " overflow counter";
    EXPECT_EQ(cb.active(k.r), k.limit) << name;
    cb.release(k.r);
    EXPECT_FALSE(cb.open(k.r)) << name;
    EXPECT_TRUE(cb.tryAcquire(k.r)) << name << " after a release";
  }
  // Each overflow touched only its own counter.
  EXPECT_EQ(c.stats.cx_overflow->value(), 2u);
  EXPECT_EQ(c.stats.rq_pending_overflow->value(), 2u);
  EXPECT_EQ(c.stats.rq_overflow->value(), 2u);
  EXPECT_EQ(c.stats.rq_retry_overflow->value(), 2u);
}

TEST(CircuitBreakerTest, MessagesNameTheLimit) {
  EXPECT_EQ(CircuitBreaker::overflowMessage(Resource::kConnections),
            "upstream overflow: max_connections");
  EXPECT_EQ(CircuitBreaker::overflowMessage(Resource::kPendingRequests),
            "upstream overflow: max_pending_requests");
  EXPECT_EQ(CircuitBreaker::overflowMessage(Resource::kRequests),
            "upstream overflow: max_requests");
  EXPECT_NE(CircuitBreaker::overflowMessage(Resource::kRetries).find("max_retries"),
            std::string_view::npos);
}

TEST(CircuitBreakerTest, GuardsReleaseOnDestructionAndMove) {
  CircuitBreakerLimits limits;
  limits.max_requests = 2;
  CircuitBreaker cb(limits);
  {
    auto a = cb.acquire(Resource::kRequests);
    auto b = cb.acquire(Resource::kRequests);
    auto c = cb.acquire(Resource::kRequests);
    EXPECT_TRUE(a);
    EXPECT_TRUE(b);
    EXPECT_FALSE(c) << "third request over max_requests=2";
    EXPECT_EQ(cb.active(Resource::kRequests), 2u);
    CircuitBreaker::Guard moved = std::move(a);
    EXPECT_TRUE(moved);
    EXPECT_FALSE(a);
    EXPECT_EQ(cb.active(Resource::kRequests), 2u) << "a move neither takes nor releases";
    b.reset();
    EXPECT_EQ(cb.active(Resource::kRequests), 1u);
    moved = cb.acquire(Resource::kRequests);  // releases the old unit, takes a new one
    EXPECT_EQ(cb.active(Resource::kRequests), 1u);
  }
  EXPECT_EQ(cb.active(Resource::kRequests), 0u);
}

TEST(CircuitBreakerTest, RetryBudgetFollowsActiveRequests) {
  Counters c;
  CircuitBreakerLimits limits;
  limits.max_requests = 1000;
  limits.retry_budget = RetryBudget{20, 3};
  CircuitBreaker cb(limits, c.stats);
  // No requests: min_concurrency (3) retries.
  EXPECT_EQ(cb.limit(Resource::kRetries), 3u);
  std::vector<CircuitBreaker::Guard> requests;
  for (int i = 0; i < 50; ++i) requests.push_back(cb.acquire(Resource::kRequests));
  EXPECT_EQ(cb.limit(Resource::kRetries), 10u) << "20% of 50 active requests";
  std::vector<CircuitBreaker::Guard> retries;
  for (int i = 0; i < 10; ++i) {
    retries.push_back(cb.acquire(Resource::kRetries));
    EXPECT_TRUE(retries.back()) << "retry #" << i << " within budget";
  }
  EXPECT_FALSE(cb.tryAcquire(Resource::kRetries)) << "11th concurrent retry over budget";
  EXPECT_EQ(c.stats.rq_retry_overflow->value(), 1u);
  // Requests finish: the budget shrinks to the floor; retries in flight stay counted.
  requests.resize(5);
  EXPECT_EQ(cb.limit(Resource::kRetries), 3u);
  EXPECT_EQ(cb.active(Resource::kRetries), 10u);
  retries.resize(2);
  EXPECT_TRUE(cb.tryAcquire(Resource::kRetries));
  EXPECT_FALSE(cb.tryAcquire(Resource::kRetries));
}

TEST(CircuitBreakerTest, SetLimitsKeepsUnitsInUse) {
  CircuitBreakerLimits limits;
  limits.max_connections = 4;
  CircuitBreaker cb(limits);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(cb.tryAcquire(Resource::kConnections));
  limits.max_connections = 2;
  cb.setLimits(limits);
  EXPECT_EQ(cb.active(Resource::kConnections), 4u);
  EXPECT_FALSE(cb.tryAcquire(Resource::kConnections));
  for (int i = 0; i < 3; ++i) cb.release(Resource::kConnections);
  EXPECT_TRUE(cb.tryAcquire(Resource::kConnections));
  EXPECT_FALSE(cb.tryAcquire(Resource::kConnections));
}

}  // namespace
}  // namespace weft::upstream
