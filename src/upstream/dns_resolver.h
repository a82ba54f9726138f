#pragma once
// Asynchronous DNS: the Resolver seam and its c-ares implementation.
//
// DNS runs on the proxy's main thread, never on a worker: a DnsResolver is bound to one
// EventLoop and every call (and every callback) happens on that loop's thread. Workers only see
// the results, as new HostSet snapshots.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "common/time.h"
#include "common/timer.h"
#include "net/event_loop.h"
#include "net/socket.h"

// c-ares types, so that this header does not pull in <ares.h>.
struct ares_addrinfo;
struct ares_channeldata;

namespace weft::upstream {

enum class DnsFamily {
  kV4Preferred,  // A records; AAAA only if the name has no A records
  kV4Only,       // A records only
  kV6Only,       // AAAA records only
  kBoth,         // A and AAAA records
  kV6Preferred,  // AAAA records; A only if the name has no AAAA records
};

struct DnsAnswer {
  // Distinct addresses in the order the answer listed them; port 0.
  std::vector<net::Address> addresses;
  // The smallest TTL among the records used (address records and any CNAMEs on the way).
  // Zero when the answer carries no TTL (an /etc/hosts entry or an IP literal).
  Duration ttl{0};
};

// Error::code values in a failed Result<DnsAnswer>.
inline constexpr int kDnsNotFound = 1;  // NXDOMAIN, or the name has no records of the family
inline constexpr int kDnsTimeout = 2;   // no server answered in time
inline constexpr int kDnsBadName = 3;   // not a valid DNS name
inline constexpr int kDnsFailure = 4;   // anything else (SERVFAIL, refused, malformed reply, ...)

// The DNS seam (the real one is DnsResolver; tests use a fake).
// Contract for every implementation: the callback runs exactly once, on the resolver's thread,
// never from inside resolve() — unless the query is cancelled or the resolver destroyed first, in
// which case it never runs. Callbacks must not destroy the resolver.
class Resolver {
 public:
  using QueryId = uint64_t;
  using Callback = std::function<void(Result<DnsAnswer>)>;
  virtual ~Resolver() = default;
  virtual QueryId resolve(const std::string& hostname, DnsFamily family, Callback callback) = 0;
  // Drops the callback of a query still outstanding; unknown or finished ids are ignored.
  virtual void cancel(QueryId id) = 0;
};

struct DnsResolverOptions {
  // Nameservers as "ip", "ip:port", "[v6]" or "[v6]:port" (port 53 if omitted). Empty: the
  // servers of /etc/resolv.conf. Either way /etc/hosts is consulted first, and resolv.conf's
  // search domains, ndots, timeout and attempts apply unless overridden below.
  std::vector<std::string> nameservers;
  // Per-try timeout; 0 keeps resolv.conf's (or c-ares's default, 5 s).
  Duration query_timeout{0};
  // Tries per server; 0 keeps resolv.conf's (or c-ares's default, 4).
  int tries = 0;
};

// c-ares on a weft EventLoop: c-ares's sockets are registered with the loop (level-triggered,
// through ARES_OPT_SOCK_STATE_CB) and its retransmit/timeout schedule is driven by one Timer on
// the loop's TimerQueue. Note that c-ares measures its timeouts with the real clock, so the loop
// must run on RealTimeSource.
//
// Thread-safety: none; construct, use and destroy on the loop's thread. The loop must outlive
// the resolver. Destroying the resolver cancels all outstanding queries: their callbacks are
// NOT called.
class DnsResolver final : public Resolver {
 public:
  static Result<std::unique_ptr<DnsResolver>> create(net::EventLoop& loop,
                                                     DnsResolverOptions options = {});
  ~DnsResolver() override;
  DnsResolver(const DnsResolver&) = delete;
  DnsResolver& operator=(const DnsResolver&) = delete;

  QueryId resolve(const std::string& hostname, DnsFamily family, Callback callback) override;
  void cancel(QueryId id) override;
  size_t outstanding() const { return queries_.size(); }

 private:
  struct Query;
  class Socket;
  struct Ready {
    QueryId id;
    Callback callback;
    Result<DnsAnswer> result;
  };

  explicit DnsResolver(net::EventLoop& loop);
  // c-ares callbacks (C function pointers; `arg`/`data` is the Query or the resolver).
  static void addrInfoThunk(void* arg, int status, int timeouts, ::ares_addrinfo* result);
  static void socketStateThunk(void* data, int fd, int readable, int writable);

  void start(Query& query, int family);
  void onAddrInfo(Query& query, int status, ::ares_addrinfo* result);
  void onSocketState(int fd, bool readable, bool writable);
  void processFd(int fd, uint32_t events);
  void onTimeout();
  void updateTimer();
  void deliverReady();
  void finish(Query& query, Result<DnsAnswer> result);

  net::EventLoop& loop_;
  ::ares_channeldata* channel_ = nullptr;
  std::unordered_map<QueryId, std::unique_ptr<Query>> queries_;
  // c-ares's open sockets, registered with loop_. A closed Socket goes to loop_.deferDelete(),
  // because an event for it may still be queued in the loop's current dispatch round.
  std::unordered_map<int, std::unique_ptr<Socket>> sockets_;
  Timer timeout_timer_;
  // Results that completed inside resolve() (IP literals, /etc/hosts), delivered from a
  // zero-delay timer so that callbacks never run inside resolve().
  std::vector<Ready> ready_;
  std::vector<Ready>* delivering_ = nullptr;  // the batch deliverReady() is running, if any
  Timer ready_timer_;
  QueryId next_id_ = 1;
  bool in_resolve_ = false;
  bool destroying_ = false;
};

// Parses a nameserver as accepted by DnsResolverOptions::nameservers.
Result<net::Address> parseNameserver(std::string_view spec);

}  // namespace weft::upstream
