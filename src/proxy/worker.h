#pragma once
// Worker: one thread, one EventLoop, its share of downstream connections and its own upstream
// connection pools and load balancers. A connection stays on the worker that accepted it. The
// worker's only inputs from other threads are post()ed closures: a new Snapshot, drain, stop.

#include <list>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>

#include "net/event_loop.h"
#include "proxy/snapshot.h"
#include "upstream/http2_pool.h"
#include "upstream/load_balancer.h"
#include "upstream/pool.h"

namespace weft::proxy {

class Session;

// A cluster's per-worker runtime: its balancer and pool. Rebuilt when the cluster's config
// changes; the balancer follows host set changes.
struct ClusterRuntime {
  std::shared_ptr<const ClusterInfo> info;
  std::unique_ptr<upstream::LoadBalancer> lb;
  std::unique_ptr<upstream::ConnPool> pool;
  // Protocol HTTP2 clusters: streams multiplexed on connections made by `pool` (destroyed
  // before it).
  std::unique_ptr<upstream::Http2Pool> h2pool;
  std::unique_ptr<upstream::CircuitBreaker> breaker;
  std::unique_ptr<upstream::OutlierDetector> outlier;  // after lb: it excludes hosts in lb
};

class Worker {
 public:
  Worker(uint32_t index, uint64_t seed);
  ~Worker();

  // Starts the thread; `initial` is applied before the first event.
  void start(SnapshotPtr initial);
  // Thread-safe: swap in a new snapshot.
  void post(SnapshotPtr snapshot);
  // Thread-safe: stop accepting; idle connections close now, busy ones after their response.
  // `done` runs on the worker thread once it has no connection left.
  void drain(std::function<void()> done);
  // Thread-safe: stop the loop and join (closes whatever is left).
  void stopAndJoin();

  // Worker-thread only.
  net::EventLoop& loop() { return loop_; }
  uint32_t index() const { return index_; }
  const Snapshot& snapshot() const { return *snapshot_; }
  const SnapshotPtr& snapshotPtr() const { return snapshot_; }
  ClusterRuntime* cluster(std::string_view name);
  upstream::Random& random() { return random_; }
  bool draining() const { return draining_; }
  void sessionClosed(Session& s);
  // `next` takes the place of `old` (which is deleted after the current event): a connection
  // changing hands, e.g. HTTP/1 to HTTP/2.
  void replaceSession(Session& old, std::unique_ptr<Session> next);
  // `target`: for a relay (TCP) listener, the address to relay to instead of a balanced host;
  // for an HTTP listener, the connection's original destination (ListenerInfo::
  // passthrough_unrouted).
  void addSession(int fd, std::unique_ptr<net::Transport> transport,
                  std::shared_ptr<const ListenerInfo> listener,
                  std::optional<net::Address> target = std::nullopt);
  // Keeps a closing connection whose owner is gone until its last bytes are written (bounded by
  // kLingerTime), so "close after this response" never truncates the response.
  void linger(std::unique_ptr<net::Connection> conn);
  void pruneRetired();

 private:
  class Acceptor;
  void apply(SnapshotPtr snapshot);
  void checkDrained();

  uint32_t index_;
  upstream::FastRandom random_;
  net::EventLoop loop_;
  std::thread thread_;
  SnapshotPtr snapshot_;
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  using ClusterMap =
      std::unordered_map<std::string, std::unique_ptr<ClusterRuntime>, NameHash, std::equal_to<>>;
  ClusterMap clusters_;
  std::list<std::unique_ptr<Acceptor>> acceptors_;
  std::list<std::unique_ptr<Session>> sessions_;
  std::vector<std::unique_ptr<net::Deferrable>> retired_;  // see pruneRetired()
  struct Lingering {
    std::unique_ptr<net::Connection> conn;
    std::unique_ptr<Timer> timer;
  };
  std::list<Lingering> lingering_;
  static constexpr auto kLingerTime = seconds(30);
  bool draining_ = false;
  std::function<void()> drained_;
};

}  // namespace weft::proxy
