#pragma once
// DnsRefresher: keeps the addresses of a DNS-type cluster's endpoints up to date.
//
// Each endpoint name is resolved on start(), then re-resolved when its answer's TTL runs out,
// the delay clamped to [min_refresh, max_refresh]. A failed lookup keeps the endpoint's last good
// addresses and retries with exponential backoff. The callback receives the whole endpoint list
// (every name's addresses, with the configured ports) — first once every name has had its first
// answer or failure (so a cluster can stop warming, even if the list is empty), and after that
// only when the list changes.
//
// Lives on the main thread with the Resolver; time comes from the TimerQueue (so a test drives
// it with SimTimeSource and a fake Resolver). Thread-safety: none. The resolver and the timer
// queue must outlive the refresher. Callbacks must not destroy the refresher.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/timer.h"
#include "upstream/dns_resolver.h"
#include "upstream/host_set.h"

namespace weft::upstream {

// One configured endpoint of a DNS cluster: a name and the port to use with its addresses.
struct DnsEndpoint {
  std::string hostname;
  uint16_t port = 0;
};

struct ResolvedEndpoint {
  std::string hostname;  // the configured name it came from
  net::Address address;  // resolved IP with the endpoint's port
  friend bool operator==(const ResolvedEndpoint& a, const ResolvedEndpoint& b) {
    return a.hostname == b.hostname && addressEqual(a.address, b.address);
  }
};

struct DnsRefresherOptions {
  DnsFamily family = DnsFamily::kV4Preferred;
  // Only the first address of each answer becomes an endpoint (the name fronts a load balancer);
  // otherwise every address does.
  bool first_address_only = false;
  // Re-resolution after a good answer happens after the answer's TTL clamped to this range (a
  // TTL of 0 — /etc/hosts, literals — means min_refresh).
  Duration min_refresh = seconds(5);
  Duration max_refresh = seconds(300);
  // After the n-th consecutive failure of a name: retry after base * 2^(n-1), at most max.
  Duration failure_backoff_base = seconds(1);
  Duration failure_backoff_max = seconds(30);
};

class DnsRefresher {
 public:
  using UpdateCallback = std::function<void(const std::vector<ResolvedEndpoint>&)>;

  DnsRefresher(Resolver& resolver, TimerQueue& timers, std::vector<DnsEndpoint> endpoints,
               DnsRefresherOptions options, UpdateCallback on_update);
  // Cancels outstanding lookups; no callback runs afterwards.
  ~DnsRefresher();
  DnsRefresher(const DnsRefresher&) = delete;
  DnsRefresher& operator=(const DnsRefresher&) = delete;

  // Starts resolving every endpoint. Call once.
  void start();

  // The last list passed to the callback, sorted by address then hostname, without duplicates.
  const std::vector<ResolvedEndpoint>& current() const { return current_; }
  // Every name has had its first answer or failure (and the callback has run at least once).
  bool initialized() const { return published_; }

 private:
  struct Target {
    DnsEndpoint endpoint;
    std::vector<net::Address> addresses;  // last good answer with the port, sorted
    Resolver::QueryId query = 0;          // outstanding lookup, 0 if none
    bool attempted = false;               // first lookup finished (either way)
    int failures = 0;                     // consecutive
    std::unique_ptr<Timer> timer;
  };
  void resolveNow(Target& target);
  void onResolved(Target& target, Result<DnsAnswer> result);
  Duration successDelay(Duration ttl) const;
  Duration failureDelay(int failures) const;
  void publishIfChanged();

  Resolver& resolver_;
  TimerQueue& timers_;
  DnsRefresherOptions options_;
  UpdateCallback on_update_;
  std::vector<std::unique_ptr<Target>> targets_;
  std::vector<ResolvedEndpoint> current_;
  bool published_ = false;
};

// A HostSet for the endpoint list, in its order. An address that appears under two names is
// kept once (the first), so no address gets double weight.
HostSetPtr makeHostSet(const std::vector<ResolvedEndpoint>& endpoints);

}  // namespace weft::upstream
