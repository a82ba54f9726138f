#include "upstream/outlier_detector.h"

#include <algorithm>

#include "common/log.h"

namespace weft::upstream {

OutlierBoard::OutlierBoard(HostSetPtr hosts, uint32_t workers)
    : hosts_(std::move(hosts)),
      workers_(workers),
      flags_(std::make_unique<std::atomic<bool>[]>((hosts_ ? hosts_->size() : 0) * workers)) {}

uint32_t OutlierBoard::ejectedOn(size_t i) const {
  if (!hosts_ || i >= hosts_->size()) return 0;
  uint32_t n = 0;
  for (uint32_t w = 0; w < workers_; ++w)
    n += flags_[i * workers_ + w].load(std::memory_order_relaxed) ? 1 : 0;
  return n;
}

void OutlierBoard::set(size_t i, uint32_t worker, bool ejected) {
  if (!hosts_ || i >= hosts_->size() || worker >= workers_) return;
  flags_[i * workers_ + worker].store(ejected, std::memory_order_relaxed);
}

OutlierDetector::OutlierDetector(OutlierConfig config, HostSetPtr hosts, TimerQueue& timers,
                                 EjectionCallback on_ejection, OutlierStats stats)
    : config_(config),
      hosts_(std::move(hosts)),
      timers_(timers),
      on_ejection_(std::move(on_ejection)),
      stats_(std::move(stats)),
      sweep_timer_(timers, [this] { sweep(); }) {
  WEFT_CHECK(hosts_ != nullptr, "OutlierDetector needs a HostSet (an empty one is fine)");
  if (config_.interval.count() <= 0) config_.interval = seconds(10);
  state_.assign(hosts_->size(), HostState{});
}

OutlierDetector::~OutlierDetector() {
  if (stats_.ejections_active && ejected_count_ > 0)
    stats_.ejections_active->sub(static_cast<int64_t>(ejected_count_));
  withdrawAll();
}

void OutlierDetector::mark(size_t i, bool ejected) {
  if (board_) board_->set(i, board_worker_, ejected);
}

void OutlierDetector::withdrawAll() {
  for (size_t i = 0; board_ && i < state_.size(); ++i) {
    if (state_[i].ejected) board_->set(i, board_worker_, false);
  }
}

void OutlierDetector::publishTo(OutlierBoardPtr board, uint32_t worker) {
  if (board && board->hosts() != hosts_) board = nullptr;  // another set's positions
  if (board == board_ && worker == board_worker_) return;
  withdrawAll();
  board_ = std::move(board);
  board_worker_ = worker;
  for (size_t i = 0; board_ && i < state_.size(); ++i) {
    if (state_[i].ejected) board_->set(i, board_worker_, true);
  }
}

OutlierDetector::EjectionCallback OutlierDetector::excludeIn(LoadBalancer& lb) {
  return [&lb](const Host& host, bool ejected) { lb.setExcluded(host, ejected); };
}

size_t OutlierDetector::indexFor(const Host& host) const {
  size_t i = hosts_->indexOf(host);
  return i != HostSet::kNpos ? i : hosts_->find(host.address());
}

void OutlierDetector::onResponse(const Host& host, int http_status) {
  size_t i = indexFor(host);
  if (i == HostSet::kNpos) return;
  bool is_5xx = http_status >= 500 && http_status <= 599;
  bool is_gateway = http_status >= 502 && http_status <= 504;
  record(i, is_5xx, is_gateway);
}

void OutlierDetector::onLocalFailure(const Host& host) {
  size_t i = indexFor(host);
  if (i == HostSet::kNpos) return;
  record(i, true, true);
}

void OutlierDetector::record(size_t i, bool is_5xx, bool is_gateway) {
  HostState& s = state_[i];
  if (!is_5xx) {
    s.consecutive_5xx = 0;
    s.consecutive_gateway = 0;
    return;
  }
  ++s.consecutive_5xx;
  s.consecutive_gateway = is_gateway ? s.consecutive_gateway + 1 : 0;
  // An ejected host can still see results of requests started before its ejection (or while
  // the balancer panics): they change nothing until it is back.
  if (s.ejected) return;
  bool by_5xx = config_.consecutive_5xx > 0 && s.consecutive_5xx >= config_.consecutive_5xx;
  bool by_gateway = config_.consecutive_gateway_failure > 0 &&
                    s.consecutive_gateway >= config_.consecutive_gateway_failure;
  if (by_5xx || by_gateway) maybeEject(i);
}

void OutlierDetector::maybeEject(size_t i) {
  HostState& s = state_[i];
  // At most max_ejection_percent of the hosts ejected after this ejection; the first ejection is
  // always allowed (App Mesh: "will eject at least one host regardless of the value").
  uint64_t after = ejected_count_ + 1;
  if (ejected_count_ > 0 && after * 100 > uint64_t(config_.max_ejection_percent) * hosts_->size()) {
    if (stats_.ejections_overflow) stats_.ejections_overflow->inc();
    return;
  }
  s.consecutive_5xx = 0;
  s.consecutive_gateway = 0;
  s.ejected = true;
  ++s.multiplier;
  Duration cap = std::max(config_.max_ejection_time, config_.base_ejection_time);
  Duration length = config_.base_ejection_time * s.multiplier;
  if (length > cap || length < Duration(0)) length = cap;
  s.eject_until = timers_.now() + length;
  ++ejected_count_;
  mark(i, true);
  if (stats_.ejections_active) stats_.ejections_active->add();
  if (stats_.ejections_enforced) stats_.ejections_enforced->inc();
  armSweep();
  if (on_ejection_) on_ejection_((*hosts_)[i], true);
}

void OutlierDetector::armSweep() {
  if (!sweep_timer_.armed()) sweep_timer_.arm(config_.interval);
}

void OutlierDetector::sweep() {
  MonoTime now = timers_.now();
  bool pending = false;
  for (size_t i = 0; i < state_.size(); ++i) {
    HostState& s = state_[i];
    if (s.ejected) {
      if (s.eject_until <= now) {
        // Back in service; its multiplier starts decaying at the next sweep.
        s.ejected = false;
        --ejected_count_;
        mark(i, false);
        if (stats_.ejections_active) stats_.ejections_active->sub();
        if (on_ejection_) on_ejection_((*hosts_)[i], false);
      }
    } else if (s.multiplier > 0) {
      --s.multiplier;
    }
    if (s.ejected || s.multiplier > 0) pending = true;
  }
  if (pending) armSweep();
}

void OutlierDetector::update(HostSetPtr hosts) {
  WEFT_CHECK(hosts != nullptr, "OutlierDetector::update needs a HostSet (an empty one is fine)");
  if (hosts == hosts_) return;
  withdrawAll();
  board_ = nullptr;
  std::vector<HostState> next(hosts->size());
  size_t ejected = 0;
  for (size_t i = 0; i < hosts->size(); ++i) {
    size_t j = hosts_->find((*hosts)[i].address());
    if (j == HostSet::kNpos) continue;
    next[i] = state_[j];
    if (next[i].ejected) ++ejected;
  }
  if (stats_.ejections_active && ejected != ejected_count_)
    stats_.ejections_active->add(static_cast<int64_t>(ejected) - int64_t(ejected_count_));
  ejected_count_ = ejected;
  state_ = std::move(next);
  hosts_ = std::move(hosts);
}

bool OutlierDetector::ejected(const Host& host) const {
  size_t i = indexFor(host);
  return i != HostSet::kNpos && state_[i].ejected;
}

uint32_t OutlierDetector::ejectionMultiplier(const Host& host) const {
  size_t i = indexFor(host);
  return i == HostSet::kNpos ? 0 : state_[i].multiplier;
}

}  // namespace weft::upstream
