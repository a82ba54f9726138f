#include "upstream/load_balancer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace weft::upstream {
namespace {

// Scripted randomness: uniform() returns the queued values in order (checked against the bound),
// and records every bound it was asked for.
class FakeRandom final : public Random {
 public:
  explicit FakeRandom(std::vector<uint64_t> script = {}) : script_(script.begin(), script.end()) {}
  void push(std::initializer_list<uint64_t> values) {
    script_.insert(script_.end(), values.begin(), values.end());
  }
  uint64_t next() override { return 0; }
  uint64_t uniform(uint64_t bound) override {
    bounds.push_back(bound);
    if (script_.empty()) return 0;
    uint64_t v = script_.front();
    script_.pop_front();
    EXPECT_LT(v, bound) << "test script gave " << v << " for a draw in [0, " << bound << ")";
    return v;
  }
  std::vector<uint64_t> bounds;

 private:
  std::deque<uint64_t> script_;
};

net::Address addr(const std::string& ip, uint16_t port) {
  auto a = net::parseAddress(ip, port);
  EXPECT_TRUE(a.has_value()) << ip;
  return *a;
}

// Hosts 10.0.0.1:80, 10.0.0.2:80, ...; `unhealthy` lists positions created unhealthy.
HostSetPtr makeSet(size_t n, std::vector<size_t> unhealthy = {}, int first = 1) {
  std::vector<Host> hosts;
  for (size_t i = 0; i < n; ++i) {
    bool healthy = std::find(unhealthy.begin(), unhealthy.end(), i) == unhealthy.end();
    hosts.emplace_back(addr("10.0.0." + std::to_string(first + i), 80), "", healthy);
  }
  return std::make_shared<const HostSet>(std::move(hosts));
}

std::string picks(LoadBalancer& lb, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    const Host* h = lb.pick();
    if (!out.empty()) out += " ";
    out += h == nullptr ? "null" : h->address().ip().substr(7);  // last octet
  }
  return out;
}

TEST(LoadBalancerTest, EmptySetReturnsNullptr) {
  FakeRandom rnd;
  for (LbPolicy p : {LbPolicy::kRoundRobin, LbPolicy::kLeastRequest}) {
    LoadBalancer lb(p, makeSet(0), rnd);
    EXPECT_EQ(lb.pick(), nullptr) << "an empty host set must yield no host";
  }
}

TEST(LoadBalancerTest, SingleHostAlwaysPicked) {
  FakeRandom rnd;
  for (LbPolicy p : {LbPolicy::kRoundRobin, LbPolicy::kLeastRequest}) {
    LoadBalancer lb(p, makeSet(1), rnd);
    EXPECT_EQ(picks(lb, 4), "1 1 1 1");
  }
  // P2C with one host draws nothing; RR drew its start offset once.
  EXPECT_EQ(rnd.bounds, std::vector<uint64_t>({1}));
}

TEST(LoadBalancerTest, RoundRobinExactRotation) {
  FakeRandom rnd({0});
  LoadBalancer lb(LbPolicy::kRoundRobin, makeSet(3), rnd);
  EXPECT_EQ(picks(lb, 7), "1 2 3 1 2 3 1");
}

TEST(LoadBalancerTest, RoundRobinStartsAtRandomOffset) {
  FakeRandom rnd({2});
  LoadBalancer lb(LbPolicy::kRoundRobin, makeSet(3), rnd);
  EXPECT_EQ(picks(lb, 4), "3 1 2 3");
}

TEST(LoadBalancerTest, RoundRobinSkipsUnhealthyHosts) {
  FakeRandom rnd({0});
  LoadBalancer lb(LbPolicy::kRoundRobin, makeSet(4, {1, 2}), rnd);
  EXPECT_EQ(picks(lb, 4), "1 4 1 4");
}

TEST(LoadBalancerTest, RoundRobinSkipsExcludedHostsOnThisWorkerOnly) {
  FakeRandom rnd({0}), rnd2({0});
  auto set = makeSet(3);
  LoadBalancer lb(LbPolicy::kRoundRobin, set, rnd);
  LoadBalancer other(LbPolicy::kRoundRobin, set, rnd2);
  lb.setExcluded((*set)[1], true);
  EXPECT_EQ(picks(lb, 4), "1 3 1 3");
  EXPECT_EQ(picks(other, 3), "1 2 3") << "exclusion must not leak to another worker's balancer";
  lb.setExcluded((*set)[1], false);
  // The cursor stays where it was (position 2) and the rotation goes on over all three.
  EXPECT_EQ(picks(lb, 4), "3 1 2 3");
}

TEST(LoadBalancerTest, PanicModeUsesAllHostsWhenNoneIsEligible) {
  FakeRandom rnd({0});
  LoadBalancer lb(LbPolicy::kRoundRobin, makeSet(2, {0, 1}), rnd);
  EXPECT_EQ(picks(lb, 3), "1 2 1");
}

TEST(LoadBalancerTest, LeastRequestPrefersLessLoadedOfTwoDraws) {
  FakeRandom rnd;
  auto set = makeSet(3);
  LoadBalancer lb(LbPolicy::kLeastRequest, set, rnd);
  for (int i = 0; i < 3; ++i) lb.onRequestStart((*set)[0]);  // host 1: 3 active
  lb.onRequestStart((*set)[1]);                              // host 2: 1 active

  // Draws (0, 0): first = position 0, second = 0 of the remaining {1, 2} = position 1.
  rnd.push({0, 0});
  EXPECT_EQ(lb.pick(), &(*set)[1]) << "host 2 (1 active) should beat host 1 (3 active)";
  // Draws (1, 0): position 1 then position 0; host 2 still wins, whichever order.
  rnd.push({1, 0});
  EXPECT_EQ(lb.pick(), &(*set)[1]);
  // Draws (0, 1): positions 0 and 2; host 3 (idle) wins.
  rnd.push({0, 1});
  EXPECT_EQ(lb.pick(), &(*set)[2]);
  // The second draw is over n-1 hosts so the two are always distinct.
  EXPECT_EQ(rnd.bounds, std::vector<uint64_t>({3, 2, 3, 2, 3, 2}));
}

TEST(LoadBalancerTest, LeastRequestTieGoesToFirstDraw) {
  FakeRandom rnd;
  auto set = makeSet(3);
  LoadBalancer lb(LbPolicy::kLeastRequest, set, rnd);
  rnd.push({2, 0});
  EXPECT_EQ(lb.pick(), &(*set)[2]);
  rnd.push({1, 1});  // positions 1 and 2
  EXPECT_EQ(lb.pick(), &(*set)[1]);
}

TEST(LoadBalancerTest, LeastRequestNeverPicksTheMostLoadedOfTwo) {
  FakeRandom rnd;
  auto set = makeSet(2);
  LoadBalancer lb(LbPolicy::kLeastRequest, set, rnd);
  lb.onRequestStart((*set)[0]);
  for (uint64_t first : {0, 1, 0, 1}) {
    rnd.push({first, 0});
    EXPECT_EQ(lb.pick(), &(*set)[1]) << "with two hosts both are always drawn; the idle one wins";
  }
}

TEST(LoadBalancerTest, LeastRequestDistributionWithRealRandom) {
  FastRandom rnd(42);
  auto set = makeSet(10);
  LoadBalancer lb(LbPolicy::kLeastRequest, set, rnd);
  for (int i = 0; i < 100; ++i) lb.onRequestStart((*set)[0]);  // host 1 is overloaded
  std::map<std::string, int> count;
  constexpr int kPicks = 90000;
  for (int i = 0; i < kPicks; ++i) ++count[lb.pick()->addressString()];
  EXPECT_EQ(count.count("10.0.0.1:80"), 0u) << "the overloaded host can never win a draw of two";
  for (int i = 2; i <= 10; ++i) {
    std::string name = "10.0.0." + std::to_string(i) + ":80";
    // Expected 10000 each (9 idle hosts); a fixed seed makes this deterministic.
    EXPECT_GT(count[name], 9000) << name;
    EXPECT_LT(count[name], 11000) << name;
  }
}

TEST(LoadBalancerTest, LeastRequestSkipsUnhealthy) {
  FastRandom rnd(7);
  LoadBalancer lb(LbPolicy::kLeastRequest, makeSet(3, {1}), rnd);
  for (int i = 0; i < 1000; ++i) {
    const Host* h = lb.pick();
    ASSERT_NE(h, nullptr);
    EXPECT_TRUE(h->healthy()) << "picked unhealthy " << h->addressString();
  }
}

TEST(LoadBalancerTest, ActiveCountsFollowRequests) {
  FakeRandom rnd;
  auto set = makeSet(2);
  LoadBalancer lb(LbPolicy::kLeastRequest, set, rnd);
  const Host& h = (*set)[0];
  lb.onRequestStart(h);
  lb.onRequestStart(h);
  EXPECT_EQ(lb.activeRequests(h), 2u);
  lb.onRequestEnd(h);
  EXPECT_EQ(lb.activeRequests(h), 1u);
  lb.onRequestEnd(h);
  EXPECT_EQ(lb.activeRequests(h), 0u);
}

TEST(LoadBalancerTest, UpdateCarriesCountsAndKeepsOldSnapshotWhileInFlight) {
  FakeRandom rnd;
  auto set1 = makeSet(2);  // .1, .2
  std::weak_ptr<const HostSet> weak1 = set1;
  LoadBalancer lb(LbPolicy::kLeastRequest, set1, rnd);
  const Host& old_host = (*set1)[1];  // 10.0.0.2
  lb.onRequestStart(old_host);
  lb.setExcluded((*set1)[0], true);

  auto set2 = makeSet(3, {}, 2);  // .2, .3, .4
  lb.update(set2);
  set1.reset();
  ASSERT_FALSE(weak1.expired()) << "the old snapshot must live while a request on it is in flight";
  EXPECT_EQ(lb.activeRequests((*set2)[0]), 1u) << "10.0.0.2's count should carry to the new set";
  EXPECT_EQ(lb.activeRequests((*set2)[1]), 0u);

  lb.onRequestEnd(old_host);
  EXPECT_EQ(lb.activeRequests((*set2)[0]), 0u);
  EXPECT_TRUE(weak1.expired()) << "the old snapshot should be released after its last request";
}

TEST(LoadBalancerTest, UpdateCarriesExclusion) {
  FakeRandom rnd({0});
  auto set1 = makeSet(3);
  LoadBalancer lb(LbPolicy::kRoundRobin, set1, rnd);
  lb.setExcluded((*set1)[1], true);  // 10.0.0.2
  lb.update(makeSet(3));             // same addresses, new objects
  EXPECT_EQ(picks(lb, 4), "1 3 1 3");
}

TEST(LoadBalancerTest, RequestOnRemovedHostEndsCleanly) {
  FakeRandom rnd;
  auto set1 = makeSet(2);
  std::weak_ptr<const HostSet> weak1 = set1;
  LoadBalancer lb(LbPolicy::kRoundRobin, set1, rnd);
  const Host& gone = (*set1)[0];
  lb.onRequestStart(gone);
  lb.update(makeSet(1, {}, 5));
  set1.reset();
  EXPECT_EQ(lb.activeRequests(lb.hosts()[0]), 0u);
  lb.onRequestEnd(gone);
  EXPECT_TRUE(weak1.expired());
  EXPECT_EQ(lb.activeRequests(lb.hosts()[0]), 0u);
}

TEST(LoadBalancerTest, UpdateToEmptyAndBack) {
  FakeRandom rnd({0});
  LoadBalancer lb(LbPolicy::kRoundRobin, makeSet(2), rnd);
  lb.update(makeSet(0));
  EXPECT_EQ(lb.pick(), nullptr);
  lb.update(makeSet(3));
  EXPECT_EQ(picks(lb, 3), "1 2 3");
}

TEST(FastRandomTest, UniformStaysInBoundsAndCoversRange) {
  FastRandom rnd(1);
  std::vector<int> hits(7, 0);
  for (int i = 0; i < 70000; ++i) {
    uint64_t v = rnd.uniform(7);
    ASSERT_LT(v, 7u);
    ++hits[v];
  }
  for (int i = 0; i < 7; ++i) {
    EXPECT_GT(hits[i], 9000) << "value " << i;
    EXPECT_LT(hits[i], 11000) << "value " << i;
  }
  FastRandom a(5), b(5), c(6);
  EXPECT_EQ(a.next(), b.next()) << "same seed, same sequence";
  EXPECT_NE(FastRandom(5).next(), c.next());
}

TEST(LoadBalancerPanicTest, ThresholdUsesAllHostsWhenTooFewAreEligible) {
  std::vector<Host> hosts;
  for (uint16_t p = 1; p <= 4; ++p)
    hosts.emplace_back(*net::parseAddress("10.9.0.1", p), "", p != 1);  // 3 of 4 healthy
  auto set = std::make_shared<const HostSet>(std::move(hosts));
  FastRandom r(11);
  LoadBalancer lb(LbPolicy::kRoundRobin, set, r);  // default 50 %
  EXPECT_FALSE(lb.panicking()) << "75% eligible";
  lb.setExcluded((*set)[1], true);
  EXPECT_FALSE(lb.panicking()) << "50% eligible is not below 50%";
  lb.setExcluded((*set)[2], true);
  EXPECT_TRUE(lb.panicking()) << "25% eligible";
  std::set<int> seen;
  for (int i = 0; i < 8; ++i) seen.insert(lb.pick()->address().port());
  EXPECT_EQ(seen.size(), 4u) << "panic balances over every host";
  lb.setPanicThreshold(0);
  EXPECT_FALSE(lb.panicking()) << "threshold 0: panic only when none is eligible";
  for (int i = 0; i < 8; ++i) EXPECT_EQ(lb.pick()->address().port(), 4);
}

}  // namespace
}  // namespace weft::upstream
