#include "upstream/health_checker.h"

#include "common/log.h"

namespace weft::upstream {

Status validateHealthCheck(const HealthCheckConfig& c, std::string_view where) {
  auto in = [](Duration d, Duration lo, Duration hi) { return d >= lo && d <= hi; };
  std::string w(where);
  if (!in(c.interval, seconds(5), seconds(300)))
    return makeError(w + ".interval must be between 5s and 300s");
  if (!in(c.timeout, seconds(2), seconds(60)))
    return makeError(w + ".timeout must be between 2s and 60s");
  if (c.healthy_threshold < 2 || c.healthy_threshold > 10)
    return makeError(w + ".healthy_threshold must be between 2 and 10");
  if (c.unhealthy_threshold < 2 || c.unhealthy_threshold > 10)
    return makeError(w + ".unhealthy_threshold must be between 2 and 10");
  return {};
}

struct HealthChecker::HostState {
  HostState(HealthChecker& checker, const Host& host)
      : host(host), timer(checker.timers_, [&checker, this] {
          if (probing) {
            probing = false;
            probe->cancel();
            checker.onResult(*this, false, "timeout");
          } else {
            checker.startProbe(*this);
          }
        }) {}
  Host host;
  std::unique_ptr<HealthProbe> probe;
  bool healthy = false;
  bool pending = true;  // no result yet
  bool probing = false;
  uint32_t successes = 0;  // in a row
  uint32_t failures = 0;   // in a row
  // While probing: the timeout; otherwise: the next probe.
  Timer timer;
};

HealthChecker::HealthChecker(HealthCheckConfig config, ProbeFactory& factory, TimerQueue& timers,
                             HealthCheckCallbacks callbacks, HealthCheckStats stats)
    : config_(config),
      factory_(factory),
      timers_(timers),
      callbacks_(std::move(callbacks)),
      stats_(std::move(stats)),
      notify_(timers, [this] {
        if (callbacks_.on_set_changed) callbacks_.on_set_changed();
      }) {
  if (config_.interval.count() <= 0) config_.interval = seconds(10);
  if (config_.timeout.count() <= 0) config_.timeout = seconds(5);
  if (config_.healthy_threshold == 0) config_.healthy_threshold = 1;
  if (config_.unhealthy_threshold == 0) config_.unhealthy_threshold = 1;
}

HealthChecker::~HealthChecker() {
  for (auto& [addr, h] : hosts_) h->probe->cancel();
}

void HealthChecker::update(const HostSet& hosts) {
  bool set_changed = false;
  // Drop departed hosts.
  for (auto it = hosts_.begin(); it != hosts_.end();) {
    if (hosts.find(it->first) == HostSet::kNpos) {
      it->second->probe->cancel();
      if (!it->second->healthy) set_changed = true;
      it = hosts_.erase(it);
    } else {
      ++it;
    }
  }
  // Add new ones: pending (unhealthy), probed at once.
  for (const Host& host : hosts.hosts()) {
    if (hosts_.count(host.address())) continue;
    auto h = std::make_unique<HostState>(*this, host);
    HostState& ref = *h;
    h->probe = factory_.create(host, [this, &ref](bool ok, std::string_view detail) {
      if (!ref.probing) return;
      ref.probing = false;
      ref.timer.disarm();
      onResult(ref, ok, detail);
    });
    hosts_.emplace(host.address(), std::move(h));
    set_changed = true;
    startProbe(ref);
  }
  if (stats_.healthy) stats_.healthy->set(int64_t(healthyCount()));
  if (set_changed) changed();
}

void HealthChecker::startProbe(HostState& h) {
  h.probing = true;
  h.timer.arm(config_.timeout);
  if (stats_.attempt) stats_.attempt->inc();
  h.probe->start();
}

void HealthChecker::onResult(HostState& h, bool ok, std::string_view detail) {
  h.timer.arm(config_.interval);
  if (ok) {
    h.failures = 0;
    ++h.successes;
    if (!h.healthy && (h.pending || h.successes >= config_.healthy_threshold))
      setHealthy(h, true, detail);
  } else {
    if (stats_.failure) stats_.failure->inc();
    h.successes = 0;
    ++h.failures;
    if (h.pending) {
      // First result: it stays unhealthy, now for a reason.
      h.pending = false;
      if (callbacks_.on_host_changed) callbacks_.on_host_changed(h.host.address(), false, detail);
    } else if (h.healthy && h.failures >= config_.unhealthy_threshold) {
      setHealthy(h, false, detail);
    }
  }
  h.pending = false;
}

void HealthChecker::setHealthy(HostState& h, bool healthy, std::string_view detail) {
  h.healthy = healthy;
  h.pending = false;
  if (stats_.healthy) stats_.healthy->set(int64_t(healthyCount()));
  if (callbacks_.on_host_changed) callbacks_.on_host_changed(h.host.address(), healthy, detail);
  changed();
}

void HealthChecker::changed() {
  ++version_;
  if (!notify_.armed()) notify_.arm(Duration(0));
}

bool HealthChecker::healthy(const net::Address& address) const {
  auto it = hosts_.find(address);
  return it == hosts_.end() || it->second->healthy;
}

bool HealthChecker::pending(const net::Address& address) const {
  auto it = hosts_.find(address);
  return it != hosts_.end() && it->second->pending;
}

size_t HealthChecker::healthyCount() const {
  size_t n = 0;
  for (auto& [addr, h] : hosts_) n += h->healthy ? 1 : 0;
  return n;
}

HostSetPtr HealthChecker::withHealth(const HostSet& base) const {
  std::vector<Host> hosts;
  hosts.reserve(base.size());
  for (const Host& h : base.hosts())
    hosts.emplace_back(h.address(), h.hostname(), healthy(h.address()));
  return std::make_shared<const HostSet>(std::move(hosts));
}

}  // namespace weft::upstream
