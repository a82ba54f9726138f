#pragma once
// TimerQueue: a binary min-heap of deadlines with O(log n) arm/disarm. A Timer is owned by its
// user, never by the queue; destroying a Timer disarms it. Single-threaded: a queue and its
// timers belong to one event loop (or one test).

#include <functional>
#include <vector>

#include "common/time.h"

namespace weft {

class TimerQueue;

class Timer {
 public:
  Timer(TimerQueue& queue, std::function<void()> callback)
      : queue_(queue), callback_(std::move(callback)) {}
  ~Timer() { disarm(); }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // (Re)arms to fire once at now + d. Arming an armed timer moves its deadline.
  void arm(Duration d);
  void armAt(MonoTime deadline);
  void disarm();
  bool armed() const { return index_ != kNotArmed; }
  MonoTime deadline() const { return deadline_; }

 private:
  friend class TimerQueue;
  static constexpr size_t kNotArmed = static_cast<size_t>(-1);
  TimerQueue& queue_;
  std::function<void()> callback_;
  MonoTime deadline_{};
  size_t index_ = kNotArmed;
};

class TimerQueue {
 public:
  explicit TimerQueue(const TimeSource& time) : time_(time) {}
  const TimeSource& time() const { return time_; }
  MonoTime now() const { return time_.monotonicNow(); }

  // Fires every timer whose deadline is <= now, earliest first. A callback may arm or disarm any
  // timer, including itself, and may destroy timers other than the one running.
  void runExpired();
  // Time until the earliest deadline (0 if already due), or -1 ms if none is armed.
  Duration untilNext() const;
  size_t size() const { return heap_.size(); }

 private:
  friend class Timer;
  void insert(Timer* t);
  void remove(Timer* t);
  void siftUp(size_t i);
  void siftDown(size_t i);
  void place(size_t i, Timer* t) {
    heap_[i] = t;
    t->index_ = i;
  }
  const TimeSource& time_;
  std::vector<Timer*> heap_;
};

}  // namespace weft
