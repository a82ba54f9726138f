#pragma once
// Scheduled upkeep of the certificate authority (docs/ca.md, "Scheduled work"): the tasks that
// must happen with time rather than on a request — renewing ACM certificates before they expire,
// re-signing CRLs before their nextUpdate, moving CA rotations from one phase to the next and
// retiring old roots. Each task is a function of "now" that reads the store, does what is due
// and returns; the loop calls every task in the order added, once per interval, on one thread.
//
// Contract for tasks:
//  - Idempotent and catch-up safe: a task may run late (a stopped server), twice for the same
//    instant, or with several intervals skipped; it decides from the store and `now` what is due.
//  - Errors are values: a task returns a Status; a failed task is logged (naming the task) and
//    tried again at the next interval; it never stops the loop or the other tasks.
//  - Writes go through the store like API writes, so configs that depend on what a task changed
//    are recompiled and pushed as usual.
//
// Tests drive runOnce() with a SimTimeSource; the server starts the thread (start()/stop()).
//
// Thread-safety: add() before start() only; runOnce() must not be called while the thread runs.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"
#include "common/time.h"

namespace weft::control::ca {

class Maintenance {
 public:
  using Task = std::function<Status(std::chrono::system_clock::time_point now)>;

  // `time` must outlive the loop. `interval`: time between two rounds (the first round runs at
  // start()).
  Maintenance(const TimeSource& time, std::chrono::milliseconds interval);
  ~Maintenance();  // stops the thread if running

  // `name` appears in the log when the task fails ("CA maintenance: <name>: <error>").
  void add(std::string name, Task task);

  // One round: every task with time.systemNow(), in order. Answers how many tasks failed.
  int runOnce();

  // Starts the thread: a round now, then one every interval, until stop().
  void start();
  // Wakes and joins the thread; a round in progress finishes first. Idempotent.
  void stop();

 private:
  struct Entry {
    std::string name;
    Task task;
  };
  const TimeSource& time_;
  const std::chrono::milliseconds interval_;
  std::vector<Entry> tasks_;
  std::mutex mu_;  // guards stopping_
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace weft::control::ca
