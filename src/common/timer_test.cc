#include "common/timer.h"

#include <gtest/gtest.h>

#include <vector>

namespace weft {
namespace {

TEST(TimerQueue, FiresInDeadlineOrderOnlyWhenDue) {
  SimTimeSource time;
  TimerQueue q(time);
  std::vector<int> fired;
  Timer a(q, [&] { fired.push_back(1); });
  Timer b(q, [&] { fired.push_back(2); });
  Timer c(q, [&] { fired.push_back(3); });
  a.arm(seconds(3));
  b.arm(seconds(1));
  c.arm(seconds(2));
  EXPECT_EQ(q.untilNext(), seconds(1));
  time.advance(milliseconds(999));
  q.runExpired();
  EXPECT_TRUE(fired.empty()) << "nothing is due before 1 s";
  time.advance(seconds(5));
  q.runExpired();
  EXPECT_EQ(fired, (std::vector<int>{2, 3, 1}));
  EXPECT_EQ(q.size(), 0u);
  EXPECT_EQ(q.untilNext(), milliseconds(-1));
}

TEST(TimerQueue, RearmMovesAndDisarmCancels) {
  SimTimeSource time;
  TimerQueue q(time);
  int fired = 0;
  Timer t(q, [&] { ++fired; });
  t.arm(seconds(1));
  t.arm(seconds(10));  // moved, not duplicated
  EXPECT_EQ(q.size(), 1u);
  time.advance(seconds(2));
  q.runExpired();
  EXPECT_EQ(fired, 0) << "a re-armed timer fires at its new deadline";
  t.disarm();
  time.advance(seconds(20));
  q.runExpired();
  EXPECT_EQ(fired, 0) << "a disarmed timer never fires";
}

TEST(TimerQueue, DestroyedTimerIsRemoved) {
  SimTimeSource time;
  TimerQueue q(time);
  int fired = 0;
  {
    Timer t(q, [&] { ++fired; });
    t.arm(seconds(1));
  }
  EXPECT_EQ(q.size(), 0u);
  time.advance(seconds(2));
  q.runExpired();
  EXPECT_EQ(fired, 0);
}

TEST(TimerQueue, CallbackMayRearmItselfAndOthers) {
  SimTimeSource time;
  TimerQueue q(time);
  int ticks = 0;
  Timer other(q, [] {});
  Timer t(q, [&] {
    if (++ticks < 3) t.arm(seconds(1));
    other.disarm();
  });
  other.arm(seconds(100));
  t.arm(seconds(1));
  for (int i = 0; i < 5; ++i) {
    time.advance(seconds(1));
    q.runExpired();
  }
  EXPECT_EQ(ticks, 3);
  EXPECT_FALSE(other.armed());
}

TEST(TimerQueue, ManyTimersKeepHeapOrder) {
  SimTimeSource time;
  TimerQueue q(time);
  std::vector<int> fired;
  std::vector<std::unique_ptr<Timer>> timers;
  for (int i = 0; i < 200; ++i) {
    timers.push_back(std::make_unique<Timer>(q, [&fired, i] { fired.push_back(i); }));
    timers.back()->arm(milliseconds((i * 7919) % 200 + 1));  // a permutation of 1..200 ms
  }
  for (int i = 0; i < 200; i += 3) timers[i]->disarm();
  time.advance(seconds(1));
  q.runExpired();
  for (size_t k = 1; k < fired.size(); ++k) {
    EXPECT_LT((fired[k - 1] * 7919) % 200, (fired[k] * 7919) % 200) << "out of deadline order";
  }
  EXPECT_EQ(fired.size(), 200u - 67u);
}

}  // namespace
}  // namespace weft
