#pragma once
// TcpSession: one downstream connection relayed byte for byte to one upstream connection (L4,
// tcp_proxy listeners and the interception passthrough). The upstream is a fresh connection from
// the cluster's pool (so connect timeouts, TLS origination, max_connections and the cluster's
// counters apply), never reused, and goes back to the pool when the relay ends.
//
// The relaying itself (backpressure, no half-close, idle timeout) is ByteRelay's (proxy/relay.h),
// shared with HttpSession's upgraded connections; this class adds the connect phase: bytes a
// client sends (and even its close) while the upstream is still connecting are held, bounded by
// the high watermark, and delivered once it is connected.
//
// Single-threaded: lives on one Worker, owned by it.

#include <memory>
#include <optional>

#include "common/timer.h"
#include "net/connection.h"
#include "proxy/relay.h"
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
  void onIdleTimeout();
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
  ByteRelay relay_;  // holds the upstream connection once it is ready
  // The connect phase (waiting in the pool's queue, connecting) is bounded by the idle
  // timeout too; ByteRelay's own timer takes over once connected.
  Timer connect_timer_;
  bool waiting_pool_ = false;
  bool done_ = false;
  bool client_gone_ = false;  // closed (with bytes to deliver) before the upstream connected
  uint64_t counted_rx_ = 0, counted_tx_ = 0;
};

}  // namespace weft::proxy
