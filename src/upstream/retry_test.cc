#include "upstream/retry.h"

#include <gtest/gtest.h>

#include <set>

namespace weft::upstream {
namespace {

using Kind = AttemptOutcome::Kind;

RetryPolicy compile(std::vector<std::string> http, std::vector<std::string> tcp = {},
                    std::vector<std::string> grpc = {}, uint32_t max_retries = 2) {
  RetryPolicyConfig c;
  c.max_retries = max_retries;
  c.http_retry_events = std::move(http);
  c.tcp_retry_events = std::move(tcp);
  c.grpc_retry_events = std::move(grpc);
  auto p = RetryPolicy::compile(c);
  EXPECT_TRUE(p.has_value()) << (p ? "" : p.error().message);
  return p ? *p : RetryPolicy();
}

std::set<int> retriedStatuses(const RetryPolicy& p) {
  std::set<int> s;
  for (int code = 100; code < 600; ++code)
    if (p.retriable(AttemptOutcome::response(code))) s.insert(code);
  return s;
}

TEST(RetryPolicyTest, ServerErrorStatuses) {
  std::set<int> want = {500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511};
  EXPECT_EQ(retriedStatuses(compile({"server-error"})), want);
}

TEST(RetryPolicyTest, GatewayErrorStatuses) {
  std::set<int> want = {502, 503, 504};
  EXPECT_EQ(retriedStatuses(compile({"gateway-error"})), want);
}

TEST(RetryPolicyTest, The503EventIs503Only) {
  RetryPolicy p = compile({"503"});
  EXPECT_EQ(retriedStatuses(p), std::set<int>{503});
  EXPECT_FALSE(p.retriable(AttemptOutcome::failure(Kind::kReset)));
  EXPECT_FALSE(p.retriable(AttemptOutcome::failure(Kind::kConnectFailure)));
}

TEST(RetryPolicyTest, ClientErrorIs409Only) {
  std::set<int> want = {409};
  EXPECT_EQ(retriedStatuses(compile({"client-error"})), want);
}

TEST(RetryPolicyTest, StreamErrorIsRefusedStreamOnly) {
  RetryPolicy p = compile({"stream-error"});
  EXPECT_TRUE(retriedStatuses(p).empty());
  EXPECT_TRUE(p.retriable(AttemptOutcome::failure(Kind::kRefusedStream)));
  EXPECT_FALSE(p.retriable(AttemptOutcome::failure(Kind::kReset)));
  EXPECT_FALSE(p.retriable(AttemptOutcome::failure(Kind::kConnectFailure)));
  EXPECT_FALSE(p.retriable(AttemptOutcome::failure(Kind::kPerTryTimeout)));
}

TEST(RetryPolicyTest, ServerAndGatewayErrorIncludeEnvoyReset) {
  for (const char* e : {"server-error", "gateway-error"}) {
    RetryPolicy p = compile({e});
    for (Kind k : {Kind::kConnectFailure, Kind::kReset, Kind::kRefusedStream, Kind::kPerTryTimeout})
      EXPECT_TRUE(p.retriable(AttemptOutcome::failure(k)))
          << e << " should retry local failure kind " << int(k);
  }
  RetryPolicy client = compile({"client-error"});
  EXPECT_FALSE(client.retriable(AttemptOutcome::failure(Kind::kReset)));
  EXPECT_FALSE(client.retriable(AttemptOutcome::failure(Kind::kPerTryTimeout)));
}

TEST(RetryPolicyTest, ConnectionErrorIsConnectFailureAndReset) {
  RetryPolicy p = compile({}, {"connection-error"});
  EXPECT_TRUE(p.retriable(AttemptOutcome::failure(Kind::kConnectFailure)));
  EXPECT_TRUE(p.retriable(AttemptOutcome::failure(Kind::kReset)));
  EXPECT_FALSE(p.retriable(AttemptOutcome::failure(Kind::kRefusedStream)));
  EXPECT_FALSE(p.retriable(AttemptOutcome::failure(Kind::kPerTryTimeout)));
  EXPECT_TRUE(retriedStatuses(p).empty());
}

TEST(RetryPolicyTest, GrpcEvents) {
  struct Case {
    const char* event;
    int status;
  };
  for (Case c : {Case{"cancelled", 1}, Case{"deadline-exceeded", 4}, Case{"internal", 13},
                 Case{"resource-exhausted", 8}, Case{"unavailable", 14}}) {
    RetryPolicy p = compile({}, {}, {c.event});
    for (int s = 0; s <= 16; ++s) {
      EXPECT_EQ(p.retriable(AttemptOutcome::response(200, s)), s == c.status)
          << "event " << c.event << ", grpc-status " << s;
    }
    EXPECT_FALSE(p.retriable(AttemptOutcome::response(200))) << "no grpc-status: not retried";
  }
}

TEST(RetryPolicyTest, GrpcAnswerStillJudgedByHttpEvents) {
  RetryPolicy p = compile({"gateway-error"}, {}, {"unavailable"});
  EXPECT_TRUE(p.retriable(AttemptOutcome::response(503, 2))) << "HTTP 503 with grpc UNKNOWN";
  EXPECT_TRUE(p.retriable(AttemptOutcome::response(200, 14)));
  EXPECT_FALSE(p.retriable(AttemptOutcome::response(200, 13)));
}

TEST(RetryPolicyTest, NoEventsRetriesNothing) {
  RetryPolicy p = compile({});
  EXPECT_TRUE(retriedStatuses(p).empty());
  for (Kind k : {Kind::kConnectFailure, Kind::kReset, Kind::kRefusedStream, Kind::kPerTryTimeout})
    EXPECT_FALSE(p.retriable(AttemptOutcome::failure(k)));
  EXPECT_EQ(RetryPolicy().decide(AttemptOutcome::response(503), 0), RetryDecision::kNotRetriable);
}

TEST(RetryPolicyTest, UnknownEventNamesAreErrors) {
  RetryPolicyConfig c;
  c.http_retry_events = {"5xx"};
  auto p = RetryPolicy::compile(c);
  ASSERT_FALSE(p.has_value());
  EXPECT_NE(p.error().message.find("\"5xx\""), std::string::npos) << p.error().message;
  EXPECT_NE(p.error().message.find("gateway-error"), std::string::npos) << p.error().message;
  c = {};
  c.tcp_retry_events = {"reset"};
  EXPECT_FALSE(RetryPolicy::compile(c).has_value());
  c = {};
  c.grpc_retry_events = {"UNAVAILABLE"};
  EXPECT_FALSE(RetryPolicy::compile(c).has_value()) << "event names are case-sensitive";
}

TEST(RetryPolicyTest, AttemptsExhaust) {
  RetryPolicy p = compile({"gateway-error"}, {}, {}, 2);
  auto o = AttemptOutcome::response(503);
  EXPECT_EQ(p.decide(o, 0), RetryDecision::kRetry);
  EXPECT_EQ(p.decide(o, 1), RetryDecision::kRetry);
  EXPECT_EQ(p.decide(o, 2), RetryDecision::kRetriesExhausted);
  EXPECT_EQ(p.decide(o, 7), RetryDecision::kRetriesExhausted);
  EXPECT_EQ(p.decide(AttemptOutcome::response(200), 0), RetryDecision::kNotRetriable);
  EXPECT_EQ(p.decide(AttemptOutcome::response(500), 0), RetryDecision::kNotRetriable);
  RetryPolicy zero = compile({"gateway-error"}, {}, {}, 0);
  EXPECT_EQ(zero.decide(o, 0), RetryDecision::kRetriesExhausted);
  EXPECT_FALSE(zero.enabled());
}

TEST(RetryPolicyTest, MeshDefault) {
  RetryPolicy p = RetryPolicy::meshDefault();
  EXPECT_EQ(p.maxRetries(), 2u);
  EXPECT_EQ(retriedStatuses(p), std::set<int>{503});
  EXPECT_TRUE(p.retriable(AttemptOutcome::failure(Kind::kConnectFailure)));
  EXPECT_TRUE(p.retriable(AttemptOutcome::failure(Kind::kReset)));
  EXPECT_TRUE(p.retriable(AttemptOutcome::failure(Kind::kRefusedStream)));
  EXPECT_FALSE(p.retriable(AttemptOutcome::failure(Kind::kPerTryTimeout)));
}

TEST(RetryPolicyTest, PerTryTimeoutAndValidation) {
  RetryPolicyConfig c;
  c.max_retries = 3;
  c.per_try_timeout = milliseconds(1500);
  auto p = RetryPolicy::compile(c);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->perTryTimeout(), milliseconds(1500));
  c.per_try_timeout = milliseconds(-1);
  EXPECT_FALSE(RetryPolicy::compile(c).has_value());
  c.per_try_timeout = {};
  c.backoff_base = milliseconds(100);
  c.backoff_max = milliseconds(50);
  EXPECT_FALSE(RetryPolicy::compile(c).has_value()) << "max below base must be refused";
}

// Random that answers a fixed fraction of the bound: 0 -> 0, 1 -> bound - 1.
class FixedRandom final : public Random {
 public:
  explicit FixedRandom(bool max) : max_(max) {}
  uint64_t next() override { return max_ ? ~0ull : 0; }
  uint64_t uniform(uint64_t bound) override {
    last_bound = bound;
    return max_ ? bound - 1 : 0;
  }
  uint64_t last_bound = 0;

 private:
  bool max_;
};

TEST(RetryBackoffTest, DefaultsAre25msBaseAnd10xCap) {
  RetryPolicy p = compile({"gateway-error"});
  EXPECT_EQ(p.backoffBase(), milliseconds(25));
  EXPECT_EQ(p.backoffMax(), milliseconds(250));
}

TEST(RetryBackoffTest, FullJitterBounds) {
  RetryPolicy p = compile({"gateway-error"});
  FixedRandom hi(true), lo(false);
  // Ceilings: 25 * (2^n - 1) ms, capped at 250 ms.
  const int64_t ceilings_ms[] = {25, 75, 175, 250, 250, 250};
  for (uint32_t n = 1; n <= 6; ++n) {
    Duration d = p.backoff(n, hi);
    EXPECT_EQ(hi.last_bound, uint64_t(Duration(milliseconds(ceilings_ms[n - 1])).count()))
        << "retry " << n;
    EXPECT_EQ(d, Duration(milliseconds(ceilings_ms[n - 1])) - Duration(1)) << "retry " << n;
    EXPECT_EQ(p.backoff(n, lo), Duration(0)) << "retry " << n;
  }
  // Far past the cap: no overflow, still capped.
  EXPECT_EQ(p.backoff(1000, hi), Duration(milliseconds(250)) - Duration(1));
}

TEST(RetryBackoffTest, RealRandomStaysInBounds) {
  RetryPolicy p = compile({"gateway-error"});
  FastRandom r(42);
  for (uint32_t n = 1; n <= 8; ++n) {
    for (int i = 0; i < 200; ++i) {
      Duration d = p.backoff(n, r);
      EXPECT_GE(d.count(), 0);
      EXPECT_LT(d, Duration(milliseconds(250)));
    }
  }
}

TEST(RetryBackoffTest, CustomIntervals) {
  RetryPolicyConfig c;
  c.max_retries = 1;
  c.backoff_base = milliseconds(10);
  c.backoff_max = milliseconds(35);
  auto p = RetryPolicy::compile(c);
  ASSERT_TRUE(p.has_value());
  FixedRandom hi(true);
  EXPECT_EQ(p->backoff(1, hi), Duration(milliseconds(10)) - Duration(1));
  EXPECT_EQ(p->backoff(2, hi), Duration(milliseconds(30)) - Duration(1));
  EXPECT_EQ(p->backoff(3, hi), Duration(milliseconds(35)) - Duration(1));
}

TEST(RetryBudgetTest, Limit) {
  RetryBudget b;  // 20%, min 3
  EXPECT_EQ(b.limit(0), 3u);
  EXPECT_EQ(b.limit(10), 3u);
  EXPECT_EQ(b.limit(15), 3u);
  EXPECT_EQ(b.limit(20), 4u);
  EXPECT_EQ(b.limit(100), 20u);
  EXPECT_EQ(b.limit(1000), 200u);
  RetryBudget tight{0, 0};
  EXPECT_EQ(tight.limit(1000), 0u);
}

TEST(RetryBodyTest, Bound) {
  EXPECT_TRUE(bodyFitsRetryBuffer(0));
  EXPECT_TRUE(bodyFitsRetryBuffer(kMaxRetryBodyBytes));
  EXPECT_FALSE(bodyFitsRetryBuffer(kMaxRetryBodyBytes + 1));
  EXPECT_TRUE(bodyFitsRetryBuffer(std::nullopt)) << "chunked: buffered while it fits";
  EXPECT_TRUE(stillRetriable(kMaxRetryBodyBytes));
  EXPECT_FALSE(stillRetriable(kMaxRetryBodyBytes + 1));
}

TEST(GrpcStatusTest, HttpMapping) {
  EXPECT_EQ(httpStatusForGrpc(0), 200);
  EXPECT_EQ(httpStatusForGrpc(1), 499);
  EXPECT_EQ(httpStatusForGrpc(4), 504);
  EXPECT_EQ(httpStatusForGrpc(8), 429);
  EXPECT_EQ(httpStatusForGrpc(13), 500);
  EXPECT_EQ(httpStatusForGrpc(14), 503);
  EXPECT_EQ(httpStatusForGrpc(16), 401);
  EXPECT_EQ(httpStatusForGrpc(99), 500);
}

Host hostAt(uint16_t port) { return Host(*net::parseAddress("127.0.0.1", port)); }

TEST(PickForRetryTest, AvoidsTriedHostsWhenPossible) {
  auto set = std::make_shared<const HostSet>(std::vector<Host>{hostAt(1), hostAt(2), hostAt(3)});
  FastRandom r(7);
  LoadBalancer lb(LbPolicy::kRoundRobin, set, r);
  for (int i = 0; i < 10; ++i) {
    const Host* first = lb.pick();
    net::Address tried[] = {first->address()};
    const Host* next = pickForRetry(lb, tried);
    ASSERT_NE(next, nullptr);
    EXPECT_FALSE(addressEqual(next->address(), first->address()))
        << "retry went back to " << first->addressString();
  }
  // Every host tried: still answers (the last pick).
  net::Address all[] = {(*set)[0].address(), (*set)[1].address(), (*set)[2].address()};
  EXPECT_NE(pickForRetry(lb, all), nullptr);
  // A single host: retried on itself.
  auto one = std::make_shared<const HostSet>(std::vector<Host>{hostAt(9)});
  LoadBalancer lb1(LbPolicy::kLeastRequest, one, r);
  net::Address tried1[] = {(*one)[0].address()};
  EXPECT_EQ(pickForRetry(lb1, tried1), &(*one)[0]);
  // No hosts.
  auto none = std::make_shared<const HostSet>(std::vector<Host>{});
  LoadBalancer lb0(LbPolicy::kRoundRobin, none, r);
  EXPECT_EQ(pickForRetry(lb0, {}), nullptr);
}

}  // namespace
}  // namespace weft::upstream
