#pragma once
// EventLoop: one epoll instance, a TimerQueue and a cross-thread post() queue. Each worker thread
// runs exactly one; everything registered with a loop is touched only from that loop's thread,
// except post() and stop(), which are thread-safe.

#include <sys/epoll.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/timer.h"

namespace weft::net {

// Receives readiness for one fd. `events` is an EPOLL* mask.
class IoHandler {
 public:
  virtual void onIoEvents(uint32_t events) = 0;

 protected:
  ~IoHandler() = default;
};

// Anything whose destruction must wait until the current dispatch round ends (so that a callback
// up the stack never touches a freed object).
class Deferrable {
 public:
  virtual ~Deferrable() = default;
};

// Work to do once at the end of the current dispatch round (see EventLoop::atEndOfRound).
class EndOfRound {
 public:
  virtual void onEndOfRound() = 0;

 protected:
  ~EndOfRound() = default;
};

class EventLoop {
 public:
  explicit EventLoop(const TimeSource& time = RealTimeSource::instance());
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Registers fd (edge- or level-triggered per `events`). The handler must outlive registration.
  void add(int fd, uint32_t events, IoHandler* handler);
  void modify(int fd, uint32_t events, IoHandler* handler);
  void remove(int fd);

  // Thread-safe: runs fn on this loop's thread, in posting order.
  void post(std::function<void()> fn);
  // Destroys obj after the current round of callbacks.
  void deferDelete(std::unique_ptr<Deferrable> obj);
  // While dispatching I/O events: runs h->onEndOfRound() once every I/O callback of this round
  // has run, unless `alive` has expired by then. Loop thread only; no allocation once warm.
  void atEndOfRound(EndOfRound* h, std::weak_ptr<char> alive);
  bool dispatching() const { return dispatching_; }

  // Runs until stop(). stop() is thread-safe.
  void run();
  void stop();
  // One round: wait at most `max_wait` (negative = until an event), dispatch, run timers.
  void runOnce(Duration max_wait);

  TimerQueue& timers() { return timers_; }
  MonoTime now() const { return timers_.now(); }
  const TimeSource& time() const { return timers_.time(); }
  bool inLoopThread() const;

 private:
  class Waker;
  void drainPosted();
  int epfd_;
  int wakefd_;
  TimerQueue timers_;
  std::atomic<bool> stop_{false};
  std::mutex post_mu_;  // guards posted_ only; never taken on the request path
  std::vector<std::function<void()>> posted_;
  std::vector<std::unique_ptr<Deferrable>> deferred_;
  std::unique_ptr<Waker> waker_;
  // fd -> handler, so remove() can cancel events of the current round for a handler about to die.
  std::vector<IoHandler*> handlers_;
  static constexpr int kBatch = 256;
  epoll_event batch_[kBatch];
  int batch_size_ = 0;
  int batch_next_ = 0;
  bool dispatching_ = false;
  std::vector<std::pair<EndOfRound*, std::weak_ptr<char>>> end_of_round_, end_of_round_run_;
  std::thread::id thread_id_;
};

}  // namespace weft::net
