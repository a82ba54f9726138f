#include "net/event_loop.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "common/log.h"

namespace weft::net {

class EventLoop::Waker final : public IoHandler {
 public:
  explicit Waker(EventLoop& loop) : loop_(loop) {}
  void onIoEvents(uint32_t) override {
    uint64_t v;
    while (::read(loop_.wakefd_, &v, sizeof v) > 0) {
    }
    loop_.drainPosted();
  }

 private:
  EventLoop& loop_;
};

EventLoop::EventLoop(const TimeSource& time)
    : epfd_(::epoll_create1(EPOLL_CLOEXEC)),
      wakefd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
      timers_(time),
      waker_(std::make_unique<Waker>(*this)),
      thread_id_(std::this_thread::get_id()) {
  WEFT_CHECK(epfd_ >= 0 && wakefd_ >= 0, std::string("epoll/eventfd: ") + std::strerror(errno));
  add(wakefd_, EPOLLIN, waker_.get());
}

EventLoop::~EventLoop() {
  deferred_.clear();
  ::close(wakefd_);
  ::close(epfd_);
}

void EventLoop::add(int fd, uint32_t events, IoHandler* handler) {
  if (static_cast<size_t>(fd) >= handlers_.size()) handlers_.resize(fd + 64, nullptr);
  handlers_[fd] = handler;
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = handler;
  WEFT_CHECK(::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) == 0,
             std::string("epoll_ctl add: ") + std::strerror(errno));
}

void EventLoop::modify(int fd, uint32_t events, IoHandler* handler) {
  handlers_[fd] = handler;
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = handler;
  WEFT_CHECK(::epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev) == 0,
             std::string("epoll_ctl mod: ") + std::strerror(errno));
}

void EventLoop::remove(int fd) {
  ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
  if (fd < 0 || static_cast<size_t>(fd) >= handlers_.size()) return;
  IoHandler* h = handlers_[fd];
  handlers_[fd] = nullptr;
  // The handler may be destroyed right after this: drop its events still pending in this round.
  for (int i = batch_next_; i < batch_size_; ++i) {
    if (batch_[i].data.ptr == h) batch_[i].data.ptr = nullptr;
  }
}

void EventLoop::post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(post_mu_);
    posted_.push_back(std::move(fn));
  }
  uint64_t one = 1;
  ssize_t unused = ::write(wakefd_, &one, sizeof one);
  (void)unused;
}

void EventLoop::drainPosted() {
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard<std::mutex> lock(post_mu_);
    batch.swap(posted_);
  }
  for (auto& fn : batch) fn();
}

void EventLoop::deferDelete(std::unique_ptr<Deferrable> obj) {
  deferred_.push_back(std::move(obj));
}

void EventLoop::atEndOfRound(EndOfRound* h, std::weak_ptr<char> alive) {
  end_of_round_.emplace_back(h, std::move(alive));
}

bool EventLoop::inLoopThread() const { return std::this_thread::get_id() == thread_id_; }

void EventLoop::runOnce(Duration max_wait) {
  Duration until_timer = timers_.untilNext();
  Duration wait = max_wait;
  if (until_timer.count() >= 0 && (wait.count() < 0 || until_timer < wait)) wait = until_timer;
  int timeout_ms = -1;
  if (wait.count() >= 0) {
    // Round up so a timer is never woken for just before its deadline.
    timeout_ms = static_cast<int>((wait.count() + 999'999) / 1'000'000);
  }
  int n = ::epoll_wait(epfd_, batch_, kBatch, timeout_ms);
  if (n < 0 && errno != EINTR) {
    log::error("loop", std::string("epoll_wait: ") + std::strerror(errno));
  }
  batch_size_ = n > 0 ? n : 0;
  dispatching_ = true;
  for (batch_next_ = 0; batch_next_ < batch_size_;) {
    epoll_event& ev = batch_[batch_next_++];
    if (ev.data.ptr) static_cast<IoHandler*>(ev.data.ptr)->onIoEvents(ev.events);
  }
  batch_size_ = batch_next_ = 0;
  while (!end_of_round_.empty()) {
    end_of_round_run_.swap(end_of_round_);
    for (auto& [h, alive] : end_of_round_run_) {
      if (!alive.expired()) h->onEndOfRound();
    }
    end_of_round_run_.clear();
  }
  dispatching_ = false;
  timers_.runExpired();
  while (!deferred_.empty()) {
    auto batch = std::move(deferred_);
    deferred_.clear();
    batch.clear();
  }
}

void EventLoop::run() {
  thread_id_ = std::this_thread::get_id();
  while (!stop_.load(std::memory_order_acquire)) runOnce(milliseconds(-1));
  drainPosted();
}

void EventLoop::stop() {
  stop_.store(true, std::memory_order_release);
  uint64_t one = 1;
  ssize_t unused = ::write(wakefd_, &one, sizeof one);
  (void)unused;
}

}  // namespace weft::net
