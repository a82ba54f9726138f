#include "upstream/outlier_detector.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace weft::upstream {
namespace {

HostSetPtr makeSet(std::vector<uint16_t> ports) {
  std::vector<Host> hosts;
  for (uint16_t p : ports) hosts.emplace_back(*net::parseAddress("10.0.0.1", p));
  return std::make_shared<const HostSet>(std::move(hosts));
}

class OutlierTest : public ::testing::Test {
 protected:
  OutlierTest() : timers(time), registry(1) {
    stats.ejections_active = registry.gauge("weft_test_ejections_active");
    stats.ejections_enforced = registry.counter("weft_test_ejections_enforced_total");
    stats.ejections_overflow = registry.counter("weft_test_ejections_overflow_total");
  }
  void make(OutlierConfig config, std::vector<uint16_t> ports) {
    hosts = makeSet(std::move(ports));
    detector = std::make_unique<OutlierDetector>(
        config, hosts, timers,
        [this](const Host& h, bool ejected) {
          events.push_back((ejected ? "eject " : "return ") + std::to_string(h.address().port()));
        },
        stats);
  }
  // Moves the clock in 1 s steps, running timers at each, as a live loop would.
  void advance(Duration d) {
    for (; d > Duration(0); d -= seconds(1)) {
      time.advance(std::min<Duration>(d, seconds(1)));
      timers.runExpired();
    }
  }
  const Host& host(size_t i) { return (*hosts)[i]; }
  void fail5xx(size_t i, int n, int status = 500) {
    for (int k = 0; k < n; ++k) detector->onResponse(host(i), status);
  }
  std::string takeEvents() {
    std::string s;
    for (auto& e : events) s += (s.empty() ? "" : ", ") + e;
    events.clear();
    return s;
  }

  SimTimeSource time;
  TimerQueue timers;
  stats::Registry registry;
  OutlierStats stats;
  HostSetPtr hosts;
  std::unique_ptr<OutlierDetector> detector;
  std::vector<std::string> events;
};

OutlierConfig config(uint32_t max_percent = 100) {
  OutlierConfig c;
  c.consecutive_5xx = 3;
  c.consecutive_gateway_failure = 0;
  c.interval = seconds(10);
  c.base_ejection_time = seconds(30);
  c.max_ejection_time = seconds(300);
  c.max_ejection_percent = max_percent;
  return c;
}

TEST_F(OutlierTest, Consecutive5xxEjects) {
  make(config(), {1, 2, 3, 4});
  fail5xx(0, 2);
  EXPECT_FALSE(detector->ejected(host(0))) << "2 of 3 errors";
  fail5xx(0, 1, 503);
  EXPECT_TRUE(detector->ejected(host(0)));
  EXPECT_EQ(takeEvents(), "eject 1");
  EXPECT_EQ(stats.ejections_active->value(), 1);
  EXPECT_EQ(stats.ejections_enforced->value(), 1u);
}

TEST_F(OutlierTest, SuccessResetsTheCount) {
  make(config(), {1, 2});
  fail5xx(0, 2);
  detector->onResponse(host(0), 404);  // not a 5xx: a success for outlier detection
  fail5xx(0, 2);
  EXPECT_FALSE(detector->ejected(host(0))) << "the 404 reset the run";
  fail5xx(0, 1);
  EXPECT_TRUE(detector->ejected(host(0)));
}

TEST_F(OutlierTest, LocalFailuresCount) {
  make(config(), {1, 2});
  detector->onLocalFailure(host(1));
  detector->onResponse(host(1), 502);
  detector->onLocalFailure(host(1));
  EXPECT_TRUE(detector->ejected(host(1)));
}

TEST_F(OutlierTest, ConsecutiveGatewayFailures) {
  OutlierConfig c = config();
  c.consecutive_5xx = 10;
  c.consecutive_gateway_failure = 2;
  make(c, {1, 2});
  detector->onResponse(host(0), 503);
  detector->onResponse(host(0), 500);  // a 5xx but not a gateway error: resets the gateway run
  detector->onResponse(host(0), 504);
  EXPECT_FALSE(detector->ejected(host(0)));
  detector->onLocalFailure(host(0));  // connect failure: a gateway failure
  EXPECT_TRUE(detector->ejected(host(0)));
}

TEST_F(OutlierTest, EjectionTimeGrowsAndIsCapped) {
  OutlierConfig c = config();
  c.max_ejection_time = seconds(70);
  make(c, {1, 2});
  // 1st ejection: 30 s (returned at the sweep at t=30).
  fail5xx(0, 3);
  advance(seconds(29));
  EXPECT_TRUE(detector->ejected(host(0)));
  advance(seconds(1));
  EXPECT_FALSE(detector->ejected(host(0))) << "returned after base_ejection_time";
  EXPECT_EQ(takeEvents(), "eject 1, return 1");
  // Again at once: 2nd ejection, 60 s.
  fail5xx(0, 3);
  EXPECT_EQ(detector->ejectionMultiplier(host(0)), 2u);
  advance(seconds(59));
  EXPECT_TRUE(detector->ejected(host(0))) << "2nd ejection lasts 2 x 30 s";
  advance(seconds(10));  // next sweep after the 60 s
  EXPECT_FALSE(detector->ejected(host(0)));
  // 3rd: 90 s, capped at 70 s (returned at the first sweep at or after 70 s).
  fail5xx(0, 3);
  EXPECT_EQ(detector->ejectionMultiplier(host(0)), 3u);
  advance(seconds(69));
  EXPECT_TRUE(detector->ejected(host(0)));
  advance(seconds(10));
  EXPECT_FALSE(detector->ejected(host(0))) << "capped at max_ejection_time";
}

TEST_F(OutlierTest, MultiplierDecaysWhileInService) {
  make(config(), {1, 2});
  fail5xx(0, 3);
  advance(seconds(30));  // returned at this sweep, multiplier 1
  EXPECT_FALSE(detector->ejected(host(0)));
  EXPECT_EQ(detector->ejectionMultiplier(host(0)), 1u);
  advance(seconds(10));  // a sweep in service: decays to 0
  EXPECT_EQ(detector->ejectionMultiplier(host(0)), 0u);
  EXPECT_EQ(timers.size(), 0u) << "nothing left to sweep: the timer is idle";
  fail5xx(0, 3);
  EXPECT_EQ(detector->ejectionMultiplier(host(0)), 1u) << "back to the base ejection time";
}

TEST_F(OutlierTest, MaxEjectionPercent) {
  make(config(50), {1, 2, 3, 4, 5});
  fail5xx(0, 3);
  fail5xx(1, 3);
  EXPECT_EQ(detector->ejectedCount(), 2u) << "2 of 5 = 40% <= 50%";
  fail5xx(2, 3);
  EXPECT_FALSE(detector->ejected(host(2))) << "3 of 5 = 60% > 50%";
  EXPECT_EQ(stats.ejections_overflow->value(), 1u);
  // Once one is back, the next failure of host 2 ejects it.
  advance(seconds(30));
  EXPECT_EQ(detector->ejectedCount(), 0u);
  fail5xx(2, 1);
  EXPECT_TRUE(detector->ejected(host(2)));
}

TEST_F(OutlierTest, AtLeastOneHostMayBeEjected) {
  make(config(10), {1, 2, 3});  // 10% of 3 hosts rounds down to none
  fail5xx(0, 3);
  EXPECT_TRUE(detector->ejected(host(0))) << "App Mesh: at least one host regardless";
  fail5xx(1, 3);
  EXPECT_FALSE(detector->ejected(host(1))) << "but not a second";
  make(config(0), {1});
  fail5xx(0, 3);
  EXPECT_TRUE(detector->ejected(host(0))) << "even 0% and a single host";
}

TEST_F(OutlierTest, DrivesTheLoadBalancer) {
  hosts = makeSet({1, 2, 3});
  FastRandom random(1);
  LoadBalancer lb(LbPolicy::kRoundRobin, hosts, random);
  OutlierDetector d(config(), hosts, timers, OutlierDetector::excludeIn(lb));
  for (int i = 0; i < 3; ++i) d.onResponse((*hosts)[1], 503);
  for (int i = 0; i < 30; ++i)
    EXPECT_NE(lb.pick()->address().port(), 2) << "ejected host 2 picked at pick " << i;
  advance(seconds(30));
  bool seen = false;
  for (int i = 0; i < 3; ++i) seen |= lb.pick()->address().port() == 2;
  EXPECT_TRUE(seen) << "host 2 is back in rotation after its ejection";
}

TEST_F(OutlierTest, UpdateCarriesStateByAddressAndForgetsDeparted) {
  make(config(), {1, 2, 3});
  fail5xx(0, 3);
  fail5xx(1, 2);
  auto next = makeSet({2, 1, 4});  // 3 left, 4 joined, order changed
  // A request started on the old set ends after the update: matched by address.
  const Host& old_host2 = host(1);
  HostSetPtr keep_old = hosts;
  detector->update(next);
  hosts = next;
  EXPECT_TRUE(detector->ejected((*next)[1])) << "port 1 is still ejected";
  EXPECT_EQ(detector->ejectedCount(), 1u);
  detector->onResponse(old_host2, 500);
  EXPECT_TRUE(detector->ejected((*next)[0])) << "port 2's run carried over (2 + 1)";
  EXPECT_EQ(stats.ejections_active->value(), 2);
  detector->update(makeSet({4}));
  EXPECT_EQ(detector->ejectedCount(), 0u);
  EXPECT_EQ(stats.ejections_active->value(), 0) << "departed ejected hosts leave the gauge";
}

TEST_F(OutlierTest, DestructionReleasesTheGauge) {
  make(config(), {1, 2});
  fail5xx(0, 3);
  EXPECT_EQ(stats.ejections_active->value(), 1);
  detector.reset();
  EXPECT_EQ(stats.ejections_active->value(), 0);
}

// Two detectors stand for two workers of one cluster, publishing to one board.
TEST_F(OutlierTest, BoardCountsTheWorkersThatEjectedEachHost) {
  make(config(), {1, 2, 3});
  auto board = std::make_shared<OutlierBoard>(hosts, 2);
  detector->publishTo(board, 0);
  OutlierDetector other(config(), hosts, timers, nullptr);
  other.publishTo(board, 1);
  auto marks = [&] {
    std::string s;
    for (size_t i = 0; i < hosts->size(); ++i) s += std::to_string(board->ejectedOn(i));
    return s;
  };
  EXPECT_EQ(marks(), "000");
  fail5xx(0, 3);
  EXPECT_EQ(marks(), "100") << "ejected on one worker";
  for (int k = 0; k < 3; ++k) other.onResponse(host(0), 502);
  EXPECT_EQ(marks(), "200") << "ejected on both workers";
  advance(seconds(40));  // 30 s ejection, swept at the next 10 s interval
  EXPECT_FALSE(detector->ejected(host(0)));
  EXPECT_EQ(marks(), "000") << "back in service on both";
  EXPECT_EQ(board->ejectedOn(7), 0u) << "out of range reads 0";
}

TEST_F(OutlierTest, BoardFollowsTheHostSetAndTheDetectorsLife) {
  make(config(), {1, 2, 3});
  auto board = std::make_shared<OutlierBoard>(hosts, 2);
  fail5xx(1, 3);  // ejected before a board was given: shown once it is
  detector->publishTo(board, 1);
  EXPECT_EQ(board->ejectedOn(1), 1u);
  detector->publishTo(board, 1);
  EXPECT_EQ(board->ejectedOn(1), 1u) << "the same board again counts nothing twice";
  detector->publishTo(board, 7);
  EXPECT_EQ(board->ejectedOn(1), 0u) << "a worker index beyond the board's is not shown";
  detector->publishTo(std::make_shared<OutlierBoard>(makeSet({1, 2, 3}), 2), 1);
  EXPECT_EQ(board->ejectedOn(1), 0u) << "a board for another set is taken as none";

  detector->publishTo(board, 1);
  EXPECT_EQ(board->ejectedOn(1), 1u);
  auto next = makeSet({2, 5});  // port 2 (ejected) moves to position 0
  detector->update(next);
  EXPECT_EQ(board->ejectedOn(1), 0u) << "the old set's board is left by update()";
  auto next_board = std::make_shared<OutlierBoard>(next, 2);
  detector->publishTo(next_board, 1);
  EXPECT_EQ(next_board->ejectedOn(0), 1u) << "the carried-over ejection, at its new position";
  EXPECT_EQ(next_board->ejectedOn(1), 0u);
  detector.reset();
  EXPECT_EQ(next_board->ejectedOn(0), 0u) << "a detector that goes withdraws its marks";
}

}  // namespace
}  // namespace weft::upstream
