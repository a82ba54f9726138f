// HealthChecker on a simulated clock with a scripted prober.
#include "upstream/health_checker.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "upstream/load_balancer.h"

namespace weft::upstream {
namespace {

class FakeProbe;

// Records every probe it makes by port; a test answers a probe in flight with answer().
class FakeFactory final : public ProbeFactory {
 public:
  std::unique_ptr<HealthProbe> create(const Host& host, ProbeCallback done) override;
  std::map<uint16_t, FakeProbe*> probes;
  int created = 0;
};

class FakeProbe final : public HealthProbe {
 public:
  FakeProbe(FakeFactory& f, uint16_t port, ProbeCallback done)
      : factory_(f), port_(port), done_(std::move(done)) {}
  ~FakeProbe() override { factory_.probes.erase(port_); }
  void start() override {
    EXPECT_FALSE(in_flight) << "start() while a check of port " << port_ << " is in flight";
    in_flight = true;
    ++starts;
  }
  void cancel() override {
    if (in_flight) ++cancels;
    in_flight = false;
  }
  void answer(bool ok) {
    ASSERT_TRUE(in_flight) << "no check of port " << port_ << " in flight";
    in_flight = false;
    done_(ok, ok ? "ok" : "failed");
  }
  bool in_flight = false;
  int starts = 0;
  int cancels = 0;

 private:
  FakeFactory& factory_;
  uint16_t port_;
  ProbeCallback done_;
};

std::unique_ptr<HealthProbe> FakeFactory::create(const Host& host, ProbeCallback done) {
  ++created;
  auto p = std::make_unique<FakeProbe>(*this, host.address().port(), std::move(done));
  probes[host.address().port()] = p.get();
  return p;
}

HostSetPtr makeSet(std::vector<uint16_t> ports) {
  std::vector<Host> hosts;
  for (uint16_t p : ports) hosts.emplace_back(*net::parseAddress("10.0.0.2", p));
  return std::make_shared<const HostSet>(std::move(hosts));
}

net::Address addr(uint16_t port) { return *net::parseAddress("10.0.0.2", port); }

class HealthCheckerTest : public ::testing::Test {
 protected:
  HealthCheckerTest() : timers(time), registry(1) {
    stats.attempt = registry.counter("weft_test_hc_attempt_total");
    stats.failure = registry.counter("weft_test_hc_failure_total");
    stats.healthy = registry.gauge("weft_test_hc_healthy");
  }
  void make(HealthCheckConfig config = cfg()) {
    HealthCheckCallbacks cb;
    cb.on_host_changed = [this](const net::Address& a, bool healthy, std::string_view) {
      transitions.push_back(std::to_string(a.port()) + (healthy ? "+" : "-"));
    };
    cb.on_set_changed = [this] { ++set_changes; };
    checker = std::make_unique<HealthChecker>(config, factory, timers, std::move(cb), stats);
  }
  static HealthCheckConfig cfg() {
    HealthCheckConfig c;
    c.interval = seconds(5);
    c.timeout = seconds(2);
    c.healthy_threshold = 3;
    c.unhealthy_threshold = 2;
    return c;
  }
  void advance(Duration d) {
    time.advance(d);
    timers.runExpired();
  }
  // Runs one check of `port` to completion: waits for the interval to start it, then answers.
  void check(uint16_t port, bool ok) {
    FakeProbe* p = factory.probes.at(port);
    if (!p->in_flight) advance(seconds(5));
    ASSERT_TRUE(p->in_flight) << "port " << port << " not probed after an interval";
    p->answer(ok);
    timers.runExpired();  // coalesced notification
  }
  std::string takeTransitions() {
    std::string s;
    for (auto& t : transitions) s += (s.empty() ? "" : " ") + t;
    transitions.clear();
    return s;
  }

  SimTimeSource time;
  TimerQueue timers;
  stats::Registry registry;
  HealthCheckStats stats;
  FakeFactory factory;
  std::unique_ptr<HealthChecker> checker;
  std::vector<std::string> transitions;
  int set_changes = 0;
};

TEST_F(HealthCheckerTest, NewHostsArePendingAndProbedAtOnce) {
  make();
  checker->update(*makeSet({1, 2}));
  EXPECT_TRUE(factory.probes.at(1)->in_flight) << "first check starts without waiting";
  EXPECT_TRUE(factory.probes.at(2)->in_flight);
  EXPECT_TRUE(checker->pending(addr(1)));
  EXPECT_FALSE(checker->healthy(addr(1))) << "pending hosts are not balanced to";
  EXPECT_EQ(stats.attempt->value(), 2u);
  // First result decides, even a single success below healthy_threshold (3).
  factory.probes.at(1)->answer(true);
  factory.probes.at(2)->answer(false);
  EXPECT_TRUE(checker->healthy(addr(1)));
  EXPECT_FALSE(checker->healthy(addr(2)));
  EXPECT_FALSE(checker->pending(addr(2)));
  EXPECT_EQ(takeTransitions(), "1+ 2-");
  EXPECT_EQ(stats.healthy->value(), 1);
  EXPECT_EQ(stats.failure->value(), 1u);
}

TEST_F(HealthCheckerTest, UnhealthyAfterThresholdFailuresHealthyAfterThresholdSuccesses) {
  make();
  checker->update(*makeSet({1}));
  check(1, true);
  takeTransitions();
  check(1, false);
  EXPECT_TRUE(checker->healthy(addr(1))) << "1 failure of unhealthy_threshold 2";
  check(1, true);  // resets the failure run
  check(1, false);
  EXPECT_TRUE(checker->healthy(addr(1)));
  check(1, false);
  EXPECT_FALSE(checker->healthy(addr(1))) << "2 failures in a row";
  EXPECT_EQ(takeTransitions(), "1-");
  check(1, true);
  check(1, true);
  EXPECT_FALSE(checker->healthy(addr(1))) << "2 successes of healthy_threshold 3";
  check(1, false);  // resets the success run
  check(1, true);
  check(1, true);
  EXPECT_FALSE(checker->healthy(addr(1)));
  check(1, true);
  EXPECT_TRUE(checker->healthy(addr(1))) << "3 successes in a row";
  EXPECT_EQ(takeTransitions(), "1+");
}

TEST_F(HealthCheckerTest, TimeoutIsAFailureAndProbesFollowTheInterval) {
  make();
  checker->update(*makeSet({1}));
  FakeProbe* p = factory.probes.at(1);
  p->answer(true);
  EXPECT_FALSE(p->in_flight);
  advance(seconds(4));
  EXPECT_FALSE(p->in_flight) << "next check only after the 5 s interval";
  advance(seconds(1));
  EXPECT_TRUE(p->in_flight);
  advance(seconds(2));  // timeout
  EXPECT_FALSE(p->in_flight) << "the timed-out check was cancelled";
  EXPECT_EQ(p->cancels, 1);
  EXPECT_EQ(stats.failure->value(), 1u);
  advance(seconds(5));
  advance(seconds(2));
  EXPECT_FALSE(checker->healthy(addr(1))) << "two timeouts in a row";
  EXPECT_EQ(p->starts, 3);
}

TEST_F(HealthCheckerTest, SetChangesAreCoalescedPerLoopTurn) {
  make();
  checker->update(*makeSet({1, 2, 3}));
  timers.runExpired();
  EXPECT_EQ(set_changes, 1) << "three new hosts, one notification";
  uint64_t v = checker->version();
  for (uint16_t p : {1, 2, 3}) factory.probes.at(p)->answer(true);
  timers.runExpired();
  EXPECT_EQ(set_changes, 2) << "three transitions in one turn, one notification";
  EXPECT_GT(checker->version(), v);
  // A result that changes nothing notifies nothing.
  check(1, true);
  EXPECT_EQ(set_changes, 2);
}

TEST_F(HealthCheckerTest, UpdateKeepsStateAndDropsDeparted) {
  make();
  checker->update(*makeSet({1, 2}));
  factory.probes.at(1)->answer(true);
  factory.probes.at(2)->answer(true);
  check(1, false);
  check(1, false);
  ASSERT_FALSE(checker->healthy(addr(1)));
  FakeProbe* p2 = factory.probes.at(2);
  advance(seconds(5));
  ASSERT_TRUE(p2->in_flight);
  checker->update(*makeSet({1, 3}));
  EXPECT_EQ(factory.probes.count(2), 0u) << "port 2's probe is gone";
  EXPECT_FALSE(checker->healthy(addr(1))) << "port 1 kept its state";
  EXPECT_TRUE(checker->pending(addr(3)));
  EXPECT_TRUE(checker->healthy(addr(2))) << "unknown addresses count as healthy";
  EXPECT_EQ(factory.created, 3);
  EXPECT_EQ(checker->size(), 2u);
}

TEST_F(HealthCheckerTest, WithHealthBuildsThePublishedSet) {
  make();
  auto base = makeSet({1, 2, 3});
  checker->update(*base);
  factory.probes.at(1)->answer(true);
  factory.probes.at(2)->answer(false);
  factory.probes.at(3)->answer(true);
  HostSetPtr published = checker->withHealth(*base);
  ASSERT_EQ(published->size(), 3u);
  EXPECT_TRUE((*published)[0].healthy());
  EXPECT_FALSE((*published)[1].healthy());
  EXPECT_TRUE((*published)[2].healthy());
  // The balancer skips the unhealthy host.
  FastRandom random(3);
  LoadBalancer lb(LbPolicy::kRoundRobin, published, random);
  for (int i = 0; i < 20; ++i) EXPECT_NE(lb.pick()->address().port(), 2) << "pick " << i;
}

TEST_F(HealthCheckerTest, PanicWhenEveryHostFails) {
  make();
  auto base = makeSet({1, 2});
  checker->update(*base);
  // Everything pending: the published set has no healthy host; the balancer uses all of them.
  FastRandom random(5);
  LoadBalancer lb(LbPolicy::kRoundRobin, checker->withHealth(*base), random);
  std::set<int> seen;
  for (int i = 0; i < 4; ++i) seen.insert(lb.pick()->address().port());
  EXPECT_EQ(seen.size(), 2u) << "panic: all hosts used while none is healthy";
  factory.probes.at(1)->answer(false);
  factory.probes.at(2)->answer(false);
  lb.update(checker->withHealth(*base));
  seen.clear();
  for (int i = 0; i < 4; ++i) seen.insert(lb.pick()->address().port());
  EXPECT_EQ(seen.size(), 2u) << "panic: all hosts used when every check fails";
}

TEST(PanicRuleTest, Threshold) {
  EXPECT_FALSE(shouldPanic(0, 0, 50)) << "no hosts: nothing to panic over";
  EXPECT_TRUE(shouldPanic(0, 4, 0)) << "none eligible always panics";
  EXPECT_FALSE(shouldPanic(1, 4, 0));
  EXPECT_TRUE(shouldPanic(1, 4, 50)) << "25% < 50%";
  EXPECT_FALSE(shouldPanic(2, 4, 50)) << "50% is not below 50%";
  EXPECT_TRUE(shouldPanic(1, 3, 50)) << "33% < 50%";
  EXPECT_FALSE(shouldPanic(3, 3, 100));
  EXPECT_TRUE(shouldPanic(2, 3, 100));
}

TEST(HealthCheckValidationTest, AppMeshRanges) {
  HealthCheckConfig c;
  c.interval = seconds(5);
  c.timeout = seconds(2);
  c.healthy_threshold = 2;
  c.unhealthy_threshold = 10;
  EXPECT_TRUE(validateHealthCheck(c, "hc").has_value());
  auto bad = [&](auto mutate, std::string_view want) {
    HealthCheckConfig b = c;
    mutate(b);
    auto s = validateHealthCheck(b, "clusters[x].health_check");
    ASSERT_FALSE(s.has_value()) << want;
    EXPECT_NE(s.error().message.find(want), std::string::npos) << s.error().message;
  };
  bad([](HealthCheckConfig& b) { b.interval = milliseconds(4999); }, "interval");
  bad([](HealthCheckConfig& b) { b.interval = seconds(301); }, "interval");
  bad([](HealthCheckConfig& b) { b.timeout = seconds(1); }, "timeout");
  bad([](HealthCheckConfig& b) { b.timeout = seconds(61); }, "timeout");
  bad([](HealthCheckConfig& b) { b.healthy_threshold = 1; }, "healthy_threshold");
  bad([](HealthCheckConfig& b) { b.unhealthy_threshold = 11; }, "unhealthy_threshold");
}

}  // namespace
}  // namespace weft::upstream
