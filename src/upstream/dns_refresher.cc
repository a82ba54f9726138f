#include "upstream/dns_refresher.h"

#include <algorithm>
#include <unordered_set>

#include "common/log.h"

namespace weft::upstream {
namespace {

std::string durationText(Duration d) {
  auto ms = std::chrono::duration_cast<milliseconds>(d).count();
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

net::Address withPort(net::Address a, uint16_t port) {
  if (a.family() == AF_INET)
    reinterpret_cast<sockaddr_in*>(&a.storage)->sin_port = htons(port);
  else if (a.family() == AF_INET6)
    reinterpret_cast<sockaddr_in6*>(&a.storage)->sin6_port = htons(port);
  return a;
}

bool endpointLess(const ResolvedEndpoint& a, const ResolvedEndpoint& b) {
  if (addressLess(a.address, b.address)) return true;
  if (addressLess(b.address, a.address)) return false;
  return a.hostname < b.hostname;
}

}  // namespace

DnsRefresher::DnsRefresher(Resolver& resolver, TimerQueue& timers,
                           std::vector<DnsEndpoint> endpoints, DnsRefresherOptions options,
                           UpdateCallback on_update)
    : resolver_(resolver), timers_(timers), options_(options), on_update_(std::move(on_update)) {
  if (options_.max_refresh < options_.min_refresh) options_.max_refresh = options_.min_refresh;
  if (options_.failure_backoff_max < options_.failure_backoff_base)
    options_.failure_backoff_max = options_.failure_backoff_base;
  for (DnsEndpoint& e : endpoints) {
    auto t = std::make_unique<Target>();
    t->endpoint = std::move(e);
    Target* raw = t.get();
    t->timer = std::make_unique<Timer>(timers_, [this, raw] { resolveNow(*raw); });
    targets_.push_back(std::move(t));
  }
}

DnsRefresher::~DnsRefresher() {
  for (auto& t : targets_) {
    if (t->query != 0) resolver_.cancel(t->query);
  }
}

void DnsRefresher::start() {
  for (auto& t : targets_) resolveNow(*t);
  publishIfChanged();  // publishes the empty list at once when there are no endpoints
}

void DnsRefresher::resolveNow(Target& target) {
  if (target.query != 0) return;  // one lookup per name at a time
  Target* t = &target;
  target.query =
      resolver_.resolve(target.endpoint.hostname, options_.family,
                        [this, t](Result<DnsAnswer> r) { onResolved(*t, std::move(r)); });
}

Duration DnsRefresher::successDelay(Duration ttl) const {
  return std::clamp(ttl, options_.min_refresh, options_.max_refresh);
}

Duration DnsRefresher::failureDelay(int failures) const {
  Duration d = options_.failure_backoff_base;
  for (int i = 1; i < failures && d < options_.failure_backoff_max; ++i) d *= 2;
  return std::min(d, options_.failure_backoff_max);
}

void DnsRefresher::onResolved(Target& target, Result<DnsAnswer> result) {
  target.query = 0;
  target.attempted = true;
  if (result) {
    target.failures = 0;
    std::vector<net::Address> addrs;
    addrs.reserve(result->addresses.size());
    for (const net::Address& a : result->addresses) {
      addrs.push_back(withPort(a, target.endpoint.port));
      if (options_.first_address_only) break;
    }
    std::sort(addrs.begin(), addrs.end(), addressLess);
    target.addresses = std::move(addrs);
    target.timer->arm(successDelay(result->ttl));
  } else {
    ++target.failures;
    Duration retry = failureDelay(target.failures);
    log::warn("dns", result.error().message + "; " +
                         (target.addresses.empty()
                              ? std::string("no previous answer")
                              : "keeping the previous " + std::to_string(target.addresses.size()) +
                                    " address(es)") +
                         ", retry in " + durationText(retry));
    target.timer->arm(retry);
  }
  publishIfChanged();
}

void DnsRefresher::publishIfChanged() {
  for (const auto& t : targets_) {
    if (!t->attempted) return;
  }
  std::vector<ResolvedEndpoint> list;
  for (const auto& t : targets_) {
    for (const net::Address& a : t->addresses) list.push_back({t->endpoint.hostname, a});
  }
  std::sort(list.begin(), list.end(), endpointLess);
  list.erase(std::unique(list.begin(), list.end()), list.end());
  if (published_ && list == current_) return;
  current_ = std::move(list);
  published_ = true;
  if (on_update_) on_update_(current_);
}

HostSetPtr makeHostSet(const std::vector<ResolvedEndpoint>& endpoints) {
  std::vector<Host> hosts;
  hosts.reserve(endpoints.size());
  std::unordered_set<net::Address, AddressHash, AddressEq> seen;
  for (const ResolvedEndpoint& e : endpoints) {
    if (seen.insert(e.address).second) hosts.emplace_back(e.address, e.hostname);
  }
  return std::make_shared<const HostSet>(std::move(hosts));
}

}  // namespace weft::upstream
