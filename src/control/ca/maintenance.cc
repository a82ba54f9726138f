#include "control/ca/maintenance.h"

#include "common/log.h"

namespace weft::control::ca {

Maintenance::Maintenance(const TimeSource& time, std::chrono::milliseconds interval)
    : time_(time), interval_(interval) {}

Maintenance::~Maintenance() { stop(); }

void Maintenance::add(std::string name, Task task) {
  tasks_.push_back(Entry{std::move(name), std::move(task)});
}

int Maintenance::runOnce() {
  int failed = 0;
  for (const auto& e : tasks_) {
    if (auto st = e.task(time_.systemNow()); !st) {
      ++failed;
      log::warn("ca", "CA maintenance: " + e.name + ": " + st.error().message +
                          " (tried again at the next round)");
    }
  }
  return failed;
}

void Maintenance::start() {
  if (thread_.joinable()) return;
  {
    std::lock_guard lock(mu_);
    stopping_ = false;
  }
  thread_ = std::thread([this] {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      lock.unlock();
      runOnce();
      lock.lock();
      wake_.wait_for(lock, interval_, [this] { return stopping_; });
    }
  });
}

void Maintenance::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace weft::control::ca
