#include "proxy/tcp_session.h"

#include "common/log.h"
#include "proxy/worker.h"

namespace weft::proxy {

TcpSession::TcpSession(Worker& worker, std::unique_ptr<net::Connection> conn,
                       std::shared_ptr<const ListenerInfo> listener)
    : worker_(worker),
      conn_(std::move(conn)),
      listener_(std::move(listener)),
      idle_timer_(worker.loop().timers(), [this] { onIdleTimer(); }) {
  conn_->setCallbacks(this);
  listener_->stats.cx_total->inc();
  listener_->stats.cx_active->add();
}

TcpSession::~TcpSession() {
  if (waiting_pool_ && cluster_rt_) cluster_rt_->pool->cancel(*this);
  if (upstream_ && cluster_rt_) cluster_rt_->pool->release(*upstream_, false);
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
  if (listener_->tcp_idle_timeout.count() > 0) {
    last_activity_ = worker_.loop().now();
    idle_timer_.arm(listener_->tcp_idle_timeout);
  }
  upstream::PooledConnection* ready = nullptr;
  std::string error;
  switch (cluster_rt_->pool->acquire(*host_, *this, ready, error)) {
    case upstream::ConnPool::Acquire::kReady:  // never: relay connections are not reused
      onUpstreamReady(*ready);
      return;
    case upstream::ConnPool::Acquire::kPending:
      waiting_pool_ = true;
      cluster_->stats.rq_pending_active->add();
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
  if (c.peer().secure) listener_->stats.ssl_handshake->inc();
  if (!listener_->authorizes(c.peer())) finish(false);  // mesh authorization: not a caller
}

void TcpSession::onData(net::Connection&) {
  if (done_) return;
  if (upstream_) {
    relay(*conn_, upstream_->connection());
  } else if (conn_->input().size() > net::Connection::kHighWatermark) {
    conn_->readDisable(true);  // still connecting: hold at most this much
  }
}

void TcpSession::onUpstreamData(upstream::PooledConnection& up) {
  if (!done_) relay(up.connection(), *conn_);
}

void TcpSession::relay(net::Connection& from, net::Connection& to) {
  Buffer& in = from.input();
  if (in.empty()) return;
  last_activity_ = worker_.loop().now();
  to.output().append(in.view());
  in.clear();
  to.flush();
  if (to.aboveHighWatermark()) from.readDisable(true);
}

void TcpSession::onWriteDrained(net::Connection&) {
  if (upstream_) upstream_->connection().readDisable(false);
}

void TcpSession::onUpstreamDrained(upstream::PooledConnection&) { conn_->readDisable(false); }

void TcpSession::onUpstreamReady(upstream::PooledConnection& up) {
  if (waiting_pool_) {
    waiting_pool_ = false;
    cluster_->stats.rq_pending_active->sub();
  }
  upstream_ = &up;
  if (up.uses() == 1 && up.connection().peer().secure) cluster_->stats.ssl_handshake->inc();
  if (client_gone_) {
    // The client sent its bytes and closed while we were connecting.
    relay(*conn_, up.connection());
    cluster_rt_->pool->releaseAfterFlush(up);
    upstream_ = nullptr;
    finish(false);
    return;
  }
  conn_->readDisable(false);
  relay(*conn_, up.connection());
}

void TcpSession::onUpstreamFailure(net::CloseReason reason, std::string_view detail,
                                   const net::Connection*) {
  waiting_pool_ = false;
  cluster_->stats.rq_pending_active->sub();
  cluster_->stats.cx_connect_fail->inc();
  if (reason == net::CloseReason::kHandshakeFailed) cluster_->stats.ssl_error->inc();
  log::debug("tcp", listener_->name + ": upstream connect failed: " + std::string(detail));
  finish(false);
}

void TcpSession::onUpstreamClosed(upstream::PooledConnection& up, net::CloseReason,
                                  std::string_view) {
  // Deliver what the upstream sent before it closed, then close the client.
  relay(up.connection(), *conn_);
  upstream_ = nullptr;  // the pool frees it
  finish(true);
}

void TcpSession::onClose(net::Connection&, net::CloseReason reason, std::string_view detail) {
  if (reason == net::CloseReason::kHandshakeFailed) {
    listener_->stats.ssl_error->inc();
    log::debug("tcp", "TLS handshake failed: " + std::string(detail));
  }
  // The client closed: deliver what it sent, then close the upstream.
  if (waiting_pool_ && !conn_->input().empty()) {
    client_gone_ = true;  // onUpstreamReady delivers the bytes
    return;
  }
  if (upstream_) {
    relay(*conn_, upstream_->connection());
    cluster_rt_->pool->releaseAfterFlush(*upstream_);
    upstream_ = nullptr;
  }
  finish(false);
}

void TcpSession::onIdleTimer() {
  Duration quiet = worker_.loop().now() - last_activity_;
  if (quiet < listener_->tcp_idle_timeout) {
    idle_timer_.arm(listener_->tcp_idle_timeout - quiet);
    return;
  }
  listener_->stats.idle_timeout->inc();
  finish(false);
}

void TcpSession::finish(bool flush_downstream) {
  if (done_) return;
  done_ = true;
  idle_timer_.disarm();
  if (waiting_pool_) {
    cluster_rt_->pool->cancel(*this);
    waiting_pool_ = false;
    cluster_->stats.rq_pending_active->sub();
  }
  if (upstream_) {
    cluster_rt_->pool->release(*upstream_, false);
    upstream_ = nullptr;
  }
  conn_->close(flush_downstream);  // a flushing close outlives us (Worker::linger)
  worker_.sessionClosed(*this);
}

}  // namespace weft::proxy
