#include "upstream/load_balancer.h"

#include <chrono>
#include <random>
#include <thread>

#include "common/log.h"

namespace weft::upstream {

uint64_t Random::uniform(uint64_t bound) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * bound) >> 64);
}

uint64_t FastRandom::next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t FastRandom::seedFromEntropy() {
  try {
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd();
  } catch (...) {
    // No entropy device: time and thread id are good enough to decorrelate workers.
    uint64_t t = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    return t ^ (std::hash<std::thread::id>{}(std::this_thread::get_id()) << 1);
  }
}

LoadBalancer::LoadBalancer(LbPolicy policy, HostSetPtr hosts, Random& random,
                           uint32_t panic_threshold_percent)
    : policy_(policy),
      random_(random),
      hosts_(std::move(hosts)),
      panic_threshold_percent_(panic_threshold_percent) {
  WEFT_CHECK(hosts_ != nullptr, "LoadBalancer needs a HostSet (an empty one is fine)");
  active_.assign(hosts_->size(), 0);
  excluded_.assign(hosts_->size(), 0);
  rebuildCandidates();
  if (policy_ == LbPolicy::kRoundRobin && !candidates_.empty())
    rr_cursor_ = random_.uniform(candidates_.size());
}

void LoadBalancer::rebuildCandidates() {
  candidates_.clear();
  const HostSet& set = *hosts_;
  for (size_t i = 0; i < set.size(); ++i) {
    if (set[i].healthy() && !excluded_[i]) candidates_.push_back(static_cast<uint32_t>(i));
  }
  panicking_ = shouldPanic(candidates_.size(), set.size(), panic_threshold_percent_);
  if (panicking_) {
    // Panic mode: too few hosts are eligible, so balance over everything.
    candidates_.clear();
    for (size_t i = 0; i < set.size(); ++i) candidates_.push_back(static_cast<uint32_t>(i));
  }
}

const Host* LoadBalancer::pick() {
  return policy_ == LbPolicy::kRoundRobin ? pickRoundRobin() : pickLeastRequest();
}

const Host* LoadBalancer::pickRoundRobin() {
  size_t n = candidates_.size();
  if (n == 0) return nullptr;
  if (rr_cursor_ >= n) rr_cursor_ = 0;
  uint32_t i = candidates_[rr_cursor_++];
  return &(*hosts_)[i];
}

const Host* LoadBalancer::pickLeastRequest() {
  size_t n = candidates_.size();
  if (n == 0) return nullptr;
  if (n == 1) return &(*hosts_)[candidates_[0]];
  // Two distinct draws: the second is uniform over the n-1 others.
  uint64_t a = random_.uniform(n);
  uint64_t b = random_.uniform(n - 1);
  if (b >= a) ++b;
  uint32_t ia = candidates_[a], ib = candidates_[b];
  return &(*hosts_)[active_[ib] < active_[ia] ? ib : ia];
}

void LoadBalancer::onRequestStart(const Host& host) {
  size_t i = hosts_->indexOf(host);
  if (i != HostSet::kNpos) {
    ++active_[i];
    ++in_flight_;
    return;
  }
  // A host picked from a snapshot that has since been replaced but is still alive.
  for (Retired& r : retired_) {
    if (r.hosts->indexOf(host) == HostSet::kNpos) continue;
    ++r.in_flight;
    size_t cur = hosts_->find(host.address());
    if (cur != HostSet::kNpos) ++active_[cur];
    return;
  }
  WEFT_DCHECK(false, "onRequestStart: host is from a snapshot this balancer no longer holds");
}

void LoadBalancer::onRequestEnd(const Host& host) {
  size_t i = hosts_->indexOf(host);
  if (i != HostSet::kNpos) {
    WEFT_DCHECK(active_[i] > 0 && in_flight_ > 0, "onRequestEnd without onRequestStart");
    if (active_[i] > 0) --active_[i];
    if (in_flight_ > 0) --in_flight_;
    return;
  }
  for (size_t r = 0; r < retired_.size(); ++r) {
    if (retired_[r].hosts->indexOf(host) == HostSet::kNpos) continue;
    // The count was carried to the current snapshot's host with the same address, if any.
    size_t cur = hosts_->find(host.address());
    if (cur != HostSet::kNpos && active_[cur] > 0) --active_[cur];
    if (--retired_[r].in_flight == 0) {
      // `host` belongs to this snapshot: nothing may touch it after the erase.
      retired_.erase(retired_.begin() + static_cast<ptrdiff_t>(r));
    }
    return;
  }
  WEFT_DCHECK(false, "onRequestEnd: host is from a snapshot this balancer no longer holds");
}

void LoadBalancer::update(HostSetPtr hosts) {
  WEFT_CHECK(hosts != nullptr, "LoadBalancer::update needs a HostSet (an empty one is fine)");
  if (hosts == hosts_) return;
  const HostSet& old_set = *hosts_;
  const HostSet& new_set = *hosts;
  std::vector<uint32_t> active(new_set.size(), 0);
  std::vector<uint8_t> excluded(new_set.size(), 0);
  for (size_t i = 0; i < new_set.size(); ++i) {
    size_t j = old_set.find(new_set[i].address());
    if (j == HostSet::kNpos) continue;
    active[i] = active_[j];
    excluded[i] = excluded_[j];
  }
  if (in_flight_ > 0) retired_.push_back(Retired{hosts_, in_flight_});
  in_flight_ = 0;
  hosts_ = std::move(hosts);
  active_ = std::move(active);
  excluded_ = std::move(excluded);
  rebuildCandidates();
}

void LoadBalancer::setExcluded(const Host& host, bool excluded) {
  size_t i = hosts_->indexOf(host);
  if (i == HostSet::kNpos || static_cast<bool>(excluded_[i]) == excluded) return;
  excluded_[i] = excluded ? 1 : 0;
  rebuildCandidates();
}

void LoadBalancer::setPanicThreshold(uint32_t percent) {
  if (percent == panic_threshold_percent_) return;
  panic_threshold_percent_ = percent;
  rebuildCandidates();
}

uint32_t LoadBalancer::activeRequests(const Host& host) const {
  size_t i = hosts_->indexOf(host);
  if (i == HostSet::kNpos) i = hosts_->find(host.address());
  return i == HostSet::kNpos ? 0 : active_[i];
}

}  // namespace weft::upstream
