#include "proxy/tcp_session.h"

#include "common/log.h"
#include "proxy/tls_stats.h"
#include "proxy/worker.h"

namespace weft::proxy {

TcpSession::TcpSession(Worker& worker, std::unique_ptr<net::Connection> conn,
                       std::shared_ptr<const ListenerInfo> listener)
    : worker_(worker),
      conn_(std::move(conn)),
      listener_(std::move(listener)),
      relay_(worker.loop().timers(), [this] { onIdleTimeout(); }),
      connect_timer_(worker.loop().timers(), [this] { onIdleTimeout(); }) {
  conn_->setCallbacks(this);
  listener_->stats.cx_total->inc();
  listener_->stats.cx_active->add();
}

TcpSession::~TcpSession() {
  if (waiting_pool_ && cluster_rt_) cluster_rt_->pool->cancel(*this);
  relay_.stop();
  if (host_ && !fixed_host_ && cluster_rt_ && cluster_rt_->lb)
    cluster_rt_->lb->onRequestEnd(*host_);
  listener_->stats.cx_active->sub();
  listener_->stats.rx_bytes->inc(conn_->bytesRead() - counted_rx_);
  listener_->stats.tx_bytes->inc(conn_->bytesWritten() - counted_tx_);
  if (!conn_->closed()) worker_.linger(std::move(conn_));
}

void TcpSession::start(std::optional<net::Address> fixed_target) {
  cluster_rt_ = worker_.cluster(listener_->tcp_cluster);
  if (!cluster_rt_) {
    log::warn("tcp", listener_->name + ": no cluster named " + listener_->tcp_cluster);
    finish(false);
    return;
  }
  cluster_ = cluster_rt_->info;
  cluster_->stats.rq_total->inc();
  if (fixed_target) {
    fixed_host_.emplace(*fixed_target);
    host_ = &*fixed_host_;
  } else {
    host_set_ = cluster_->hosts;
    host_ = cluster_rt_->lb->pick();
    if (!host_) {
      log::debug("tcp", listener_->name + ": no healthy host in cluster " + cluster_->name);
      finish(false);
      return;
    }
    cluster_rt_->lb->onRequestStart(*host_);
  }
  upstream::PooledConnection* ready = nullptr;
  std::string error;
  switch (cluster_rt_->pool->acquire(*host_, *this, ready, error, /*fresh=*/true)) {
    case upstream::ConnPool::Acquire::kReady:  // never: relay connections are not reused
      onUpstreamReady(*ready);
      return;
    case upstream::ConnPool::Acquire::kPending:
      waiting_pool_ = true;
      cluster_->stats.rq_pending_active->add();
      if (listener_->tcp_idle_timeout.count() > 0) connect_timer_.arm(listener_->tcp_idle_timeout);
      return;
    case upstream::ConnPool::Acquire::kOverflow:
      cluster_->stats.rq_pending_overflow->inc();
      log::debug("tcp", listener_->name + ": cluster " + cluster_->name + " pool overflow");
      finish(false);
      return;
    case upstream::ConnPool::Acquire::kFailed:
      cluster_->stats.cx_connect_fail->inc();
      log::debug("tcp", listener_->name + ": connect failed: " + error);
      finish(false);
      return;
  }
}

void TcpSession::onConnected(net::Connection& c) {
  if (c.peer().secure) {
    listener_->stats.ssl_handshake->inc();
    if (!c.peer().peer_certificate) listener_->stats.ssl_no_certificate->inc();
  }
  if (!listener_->authorizes(c.peer())) finish(false);  // mesh authorization: not a caller
}

void TcpSession::onData(net::Connection&) {
  if (done_) return;
  if (relay_.active()) {
    relay_.downstreamData();
  } else if (conn_->input().size() > net::Connection::kHighWatermark) {
    conn_->readDisable(true);  // still connecting: hold at most this much
  }
}

void TcpSession::onUpstreamData(upstream::PooledConnection&) {
  if (!done_) relay_.upstreamData();
}

void TcpSession::onWriteDrained(net::Connection&) { relay_.downstreamDrained(); }

void TcpSession::onUpstreamDrained(upstream::PooledConnection&) { relay_.upstreamDrained(); }

void TcpSession::onUpstreamReady(upstream::PooledConnection& up) {
  if (waiting_pool_) {
    waiting_pool_ = false;
    cluster_->stats.rq_pending_active->sub();
  }
  connect_timer_.disarm();
  if (up.uses() == 1 && up.connection().peer().secure) cluster_->stats.ssl_handshake->inc();
  relay_.start(*conn_, *cluster_rt_->pool, up, listener_->tcp_idle_timeout);
  if (client_gone_) {
    // The client sent its bytes and closed while we were connecting: start() queued them.
    relay_.downstreamClosed();
    finish(false);
  }
}

void TcpSession::onUpstreamFailure(net::CloseReason reason, std::string_view detail,
                                   const net::Connection* conn) {
  waiting_pool_ = false;
  cluster_->stats.rq_pending_active->sub();
  cluster_->stats.cx_connect_fail->inc();
  if (reason == net::CloseReason::kHandshakeFailed) {
    const ClusterStats& st = cluster_->stats;
    if (conn != nullptr)
      countTlsFailure(conn->transport(), *st.ssl_error, *st.ssl_verify_error, *st.ssl_verify_error,
                      *st.ssl_san);
    else
      st.ssl_error->inc();
  }
  log::debug("tcp", listener_->name + ": upstream connect failed: " + std::string(detail));
  finish(false);
}

void TcpSession::onUpstreamClosed(upstream::PooledConnection& up, net::CloseReason,
                                  std::string_view) {
  // Deliver what the upstream sent before it closed, then close the client.
  relay_.upstreamClosed(up);
  finish(true);
}

void TcpSession::onClose(net::Connection&, net::CloseReason reason, std::string_view detail) {
  if (reason == net::CloseReason::kHandshakeFailed) {
    const ListenerStats& st = listener_->stats;
    countTlsFailure(conn_->transport(), *st.ssl_error, *st.ssl_no_cert, *st.ssl_verify_error,
                    *st.ssl_san);
    log::debug("tcp", "TLS handshake failed: " + std::string(detail));
  }
  // The client closed: deliver what it sent, then close the upstream.
  if (waiting_pool_ && !conn_->input().empty()) {
    client_gone_ = true;  // onUpstreamReady delivers the bytes
    return;
  }
  relay_.downstreamClosed();
  finish(false);
}

void TcpSession::onIdleTimeout() {
  listener_->stats.idle_timeout->inc();
  finish(false);
}

void TcpSession::finish(bool flush_downstream) {
  if (done_) return;
  done_ = true;
  connect_timer_.disarm();
  if (waiting_pool_) {
    cluster_rt_->pool->cancel(*this);
    waiting_pool_ = false;
    cluster_->stats.rq_pending_active->sub();
  }
  relay_.stop();
  conn_->close(flush_downstream);  // a flushing close outlives us (Worker::linger)
  worker_.sessionClosed(*this);
}

}  // namespace weft::proxy
