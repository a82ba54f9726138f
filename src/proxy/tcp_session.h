#pragma once
// TcpSession: one downstream connection relayed byte for byte to one upstream connection (L4,
// tcp_proxy listeners and the interception passthrough). The upstream comes from the cluster's
// pool (so connect timeouts, TLS origination, max_connections and the cluster's counters apply),
// is never reused, and goes back to the pool when the relay ends.
//
// Flow: bytes read on one side are appended to the other side's output; a side whose output
// rises above its high watermark stops the other side from reading until it drains (bounded
// memory per relay). When one side closes, what it sent is flushed to the other, which is then
// closed too (no TCP half-close: a FIN ends the relay once the bytes are delivered). No bytes
// either way for the idle timeout closes both sides.
//
// Single-threaded: lives on one Worker, owned by it.

#include <memory>
#include <optional>

#include "common/timer.h"
#include "net/connection.h"
#include "proxy/session.h"
#include "proxy/snapshot.h"
#include "upstream/host_set.h"
#include "upstream/pool.h"

namespace weft::proxy {

class Worker;
struct ClusterRuntime;

class TcpSession final : public Session,
                         public net::ConnectionCallbacks,
                         public upstream::PoolUser {
 public:
  // `listener` has tcp_cluster set. A `fixed_target` given to start() is relayed to instead of a
  // host the cluster's balancer picks (the interception passthrough).
  TcpSession(Worker& worker, std::unique_ptr<net::Connection> conn,
             std::shared_ptr<const ListenerInfo> listener);
  ~TcpSession() override;
  // Picks the upstream and starts connecting. Called once the worker has linked the session (it
  // may end at once, e.g. on pool overflow). `fixed_target`: see above.
  void start(std::optional<net::Address> fixed_target);

  // A relay has no request boundary to stop at: it runs until a side closes or the server stops.
  void drain() override {}
  bool idle() const override { return false; }

  // net::ConnectionCallbacks (downstream)
  void onConnected(net::Connection&) override;
  void onData(net::Connection&) override;
  void onWriteDrained(net::Connection&) override;
  void onClose(net::Connection&, net::CloseReason reason, std::string_view detail) override;

  // upstream::PoolUser
  void onUpstreamReady(upstream::PooledConnection& conn) override;
  void onUpstreamFailure(net::CloseReason reason, std::string_view detail,
                         const net::Connection* conn) override;
  void onUpstreamData(upstream::PooledConnection& conn) override;
  void onUpstreamDrained(upstream::PooledConnection& conn) override;
  void onUpstreamClosed(upstream::PooledConnection& conn, net::CloseReason reason,
                        std::string_view detail) override;

 private:
  // Moves bytes from `from` to `to` and applies backpressure. Stamps activity.
  void relay(net::Connection& from, net::Connection& to);
  void onIdleTimer();
  // Ends the relay; `flush_downstream`: deliver what is queued for the client first.
  void finish(bool flush_downstream);

  Worker& worker_;
  std::unique_ptr<net::Connection> conn_;
  std::shared_ptr<const ListenerInfo> listener_;
  ClusterRuntime* cluster_rt_ = nullptr;
  std::shared_ptr<const ClusterInfo> cluster_;
  upstream::HostSetPtr host_set_;  // keeps host_ alive
  const upstream::Host* host_ = nullptr;
  std::optional<upstream::Host> fixed_host_;
  upstream::PooledConnection* upstream_ = nullptr;
  bool waiting_pool_ = false;
  bool done_ = false;
  bool client_gone_ = false;  // closed (with bytes to deliver) before the upstream connected
  MonoTime last_activity_{};
  Timer idle_timer_;
  uint64_t counted_rx_ = 0, counted_tx_ = 0;
};

}  // namespace weft::proxy
