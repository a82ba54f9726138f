#include "common/timer.h"

namespace weft {

void Timer::arm(Duration d) { armAt(queue_.now() + d); }

void Timer::armAt(MonoTime deadline) {
  if (armed()) queue_.remove(this);
  deadline_ = deadline;
  queue_.insert(this);
}

void Timer::disarm() {
  if (armed()) queue_.remove(this);
}

void TimerQueue::insert(Timer* t) {
  heap_.push_back(t);
  t->index_ = heap_.size() - 1;
  siftUp(t->index_);
}

void TimerQueue::remove(Timer* t) {
  size_t i = t->index_;
  Timer* last = heap_.back();
  heap_.pop_back();
  t->index_ = Timer::kNotArmed;
  if (last == t) return;
  place(i, last);
  siftUp(i);
  siftDown(last->index_);
}

void TimerQueue::siftUp(size_t i) {
  Timer* t = heap_[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (heap_[parent]->deadline_ <= t->deadline_) break;
    place(i, heap_[parent]);
    i = parent;
  }
  place(i, t);
}

void TimerQueue::siftDown(size_t i) {
  Timer* t = heap_[i];
  size_t n = heap_.size();
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && heap_[c + 1]->deadline_ < heap_[c]->deadline_) ++c;
    if (t->deadline_ <= heap_[c]->deadline_) break;
    place(i, heap_[c]);
    i = c;
  }
  place(i, t);
}

void TimerQueue::runExpired() {
  MonoTime now = this->now();
  while (!heap_.empty() && heap_[0]->deadline_ <= now) {
    Timer* t = heap_[0];
    remove(t);
    t->callback_();  // may destroy t: nothing touches t after this
  }
}

Duration TimerQueue::untilNext() const {
  if (heap_.empty()) return milliseconds(-1);
  Duration d = heap_[0]->deadline_ - now();
  return d.count() < 0 ? Duration(0) : d;
}

}  // namespace weft
