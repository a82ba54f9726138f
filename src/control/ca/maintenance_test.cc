#include "control/ca/maintenance.h"

#include <gtest/gtest.h>

#include <atomic>

namespace weft::control::ca {
namespace {

TEST(Maintenance, RunOnceCallsEveryTaskInOrderWithNowAndCountsFailures) {
  SimTimeSource time;
  time.advance(std::chrono::hours(1));
  Maintenance m(time, std::chrono::seconds(60));
  std::vector<std::string> order;
  std::chrono::system_clock::time_point seen{};
  m.add("first", [&](auto now) -> Status {
    order.push_back("first");
    seen = now;
    return makeError("store unavailable");
  });
  m.add("second", [&](auto) -> Status {
    order.push_back("second");
    return {};
  });
  EXPECT_EQ(m.runOnce(), 1) << "one of two tasks failed";
  EXPECT_EQ(order, (std::vector<std::string>{"first", "second"}))
      << "a failed task must not stop the round";
  EXPECT_EQ(seen, time.systemNow());
}

TEST(Maintenance, ThreadRunsARoundAtStartAndStopsPromptly) {
  SimTimeSource time;
  Maintenance m(time, std::chrono::hours(1));
  std::atomic<int> rounds{0};
  std::mutex mu;
  std::condition_variable cv;
  m.add("count", [&](auto) -> Status {
    {
      std::lock_guard lock(mu);
      ++rounds;
    }
    cv.notify_all();
    return {};
  });
  m.start();
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return rounds >= 1; }))
        << "start() must run a first round at once";
  }
  auto t0 = std::chrono::steady_clock::now();
  m.stop();  // must not wait for the hour-long interval
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_EQ(rounds.load(), 1);
  m.stop();  // idempotent
}

}  // namespace
}  // namespace weft::control::ca
