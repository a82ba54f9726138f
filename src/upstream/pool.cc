#include "upstream/pool.h"

#include <algorithm>

#include "common/log.h"

namespace weft::upstream {

PooledConnection::PooledConnection(ConnPool& pool, const Host& host,
                                   std::unique_ptr<net::Connection> conn)
    : pool_(pool),
      conn_(std::move(conn)),
      address_string_(host.addressString()),
      timer_(pool.loop_.timers(), [this] {
        if (state_ == State::kConnecting) {
          if (pool_.stats_.cx_connect_timeout) pool_.stats_.cx_connect_timeout->inc();
          conn_->close(false);
          state_ = State::kDead;
          pool_.onConnectionClosed(*this, net::CloseReason::kConnectFailed, "connect timeout",
                                   true);
        } else if (state_ == State::kIdle) {
          conn_->close(false);
          state_ = State::kDead;
          pool_.onConnectionClosed(*this, net::CloseReason::kRemoteClosed, "idle timeout", false);
        } else if (state_ == State::kFlushing) {
          conn_->close(false);  // runs the flushed-close callback, which frees it
        }
      }) {
  conn_->setCallbacks(this);
}

PooledConnection::~PooledConnection() = default;

void PooledConnection::onConnected(net::Connection&) {
  timer_.disarm();
  if (pool_.stats_.connect_ms) pool_.stats_.connect_ms->record(pool_.loop_.now() - connect_start_);
  pool_.onConnectionReady(*this);
}

void PooledConnection::onData(net::Connection&) {
  if (state_ == State::kBusy && user_) {
    user_->onUpstreamData(*this);
    return;
  }
  if (state_ == State::kFlushing) {
    conn_->input().clear();
    return;
  }
  // Bytes on an idle connection are a protocol error (HTTP/1 has no unsolicited responses).
  conn_->close(false);
  state_ = State::kDead;
  pool_.onConnectionClosed(*this, net::CloseReason::kError, "unexpected data on idle connection",
                           false);
}

void PooledConnection::onWriteDrained(net::Connection&) {
  if (state_ == State::kBusy && user_) user_->onUpstreamDrained(*this);
}

void PooledConnection::onClose(net::Connection&, net::CloseReason reason, std::string_view detail) {
  if (state_ == State::kFlushing) return;  // the flushed-close callback frees it
  bool connecting = state_ == State::kConnecting;
  state_ = State::kDead;
  pool_.onConnectionClosed(*this, reason, detail, connecting);
}

ConnPool::ConnPool(net::EventLoop& loop, PoolLimits limits, TransportFactory factory,
                   PoolStats stats)
    : loop_(loop), limits_(limits), factory_(std::move(factory)), stats_(std::move(stats)) {}

ConnPool::~ConnPool() {
  // Users are gone by now (the worker tears streams down first); just close sockets. Closing a
  // flushing connection runs its flushed-close callback: with the pool's token gone it does
  // nothing (it would release the connection into this half-destroyed pool).
  alive_.reset();
  for (auto& c : conns_) {
    c->conn_->close(false);
    if (stats_.cx_active) stats_.cx_active->sub();
    countBytes(*c);
  }
}

size_t ConnPool::idleConnections() const {
  size_t n = 0;
  for (auto& [k, v] : idle_) n += v.size();
  return n;
}

ConnPool::Acquire ConnPool::acquire(const Host& host, PoolUser& user, PooledConnection*& out,
                                    std::string& error, bool fresh) {
  out = fresh ? nullptr : takeIdle(host, user);
  if (out) return Acquire::kReady;
  if (conns_.size() < limits_.max_connections) {
    return startConnect(host.address(), host, user, error) ? Acquire::kPending : Acquire::kFailed;
  }
  // At the connection cap: an idle connection to another host can be closed to make room.
  if (evictIdle()) {
    return startConnect(host.address(), host, user, error) ? Acquire::kPending : Acquire::kFailed;
  }
  if (stats_.cx_overflow) stats_.cx_overflow->inc();
  if (pending_.size() < limits_.max_pending) {
    pending_.push_back({&user, &host, host.address(), fresh});
    return Acquire::kPending;
  }
  return Acquire::kOverflow;
}

PooledConnection* ConnPool::startConnect(const net::Address& address, const Host& host,
                                         PoolUser& user, std::string& error) {
  auto fd = net::connectTcp(address);
  if (!fd) {
    error = fd.error().message;
    return nullptr;
  }
  auto transport = factory_(*fd, host);
  auto conn = std::make_unique<net::Connection>(loop_, *fd, std::move(transport), nullptr, true);
  auto pc = std::make_unique<PooledConnection>(*this, host, std::move(conn));
  PooledConnection* raw = pc.get();
  raw->user_ = &user;
  raw->state_ = PooledConnection::State::kConnecting;
  raw->uses_ = 1;
  raw->connect_start_ = loop_.now();
  conns_.push_back(std::move(pc));
  raw->self_ = std::prev(conns_.end());
  if (stats_.cx_total) stats_.cx_total->inc();
  if (stats_.cx_active) stats_.cx_active->add();
  raw->timer_.arm(limits_.connect_timeout);
  return raw;
}

void ConnPool::onConnectionReady(PooledConnection& c) {
  c.state_ = PooledConnection::State::kBusy;
  if (c.user_) {
    c.user_->onUpstreamReady(c);
  } else {
    makeIdle(c);  // its user went away while it was connecting: someone may be waiting
    servePending();
  }
}

void ConnPool::cancel(PoolUser& user) {
  pending_.remove_if([&](const Waiter& w) { return w.user == &user; });
  for (auto& c : conns_) {
    if (c->user_ == &user && c->state_ == PooledConnection::State::kConnecting) c->user_ = nullptr;
  }
}

void ConnPool::countBytes(PooledConnection& c) {
  uint64_t rx = c.conn_->bytesRead(), tx = c.conn_->bytesWritten();
  if (stats_.rx_bytes) stats_.rx_bytes->inc(rx - c.counted_rx_);
  if (stats_.tx_bytes) stats_.tx_bytes->inc(tx - c.counted_tx_);
  c.counted_rx_ = rx;
  c.counted_tx_ = tx;
}

void ConnPool::release(PooledConnection& c, bool reuse) {
  c.user_ = nullptr;
  countBytes(c);
  if (!reuse || c.state_ == PooledConnection::State::kDead || !c.conn_->connected() ||
      c.conn_->peerClosed() || !c.input().empty()) {
    c.conn_->close(false);
    destroy(c);
    servePending();
    return;
  }
  makeIdle(c);
  servePending();
}

void ConnPool::releaseAfterFlush(PooledConnection& c) {
  c.user_ = nullptr;
  if (c.state_ == PooledConnection::State::kDead || !c.conn_->connected()) {
    release(c, false);
    return;
  }
  c.state_ = PooledConnection::State::kFlushing;
  c.timer_.arm(limits_.idle_timeout);  // an upstream that never reads is cut off
  c.conn_->closeAfterFlush([this, &c, alive = std::weak_ptr<char>(alive_)] {
    if (alive.expired()) return;  // run by ~ConnPool, which frees the connection itself
    c.timer_.disarm();
    c.state_ = PooledConnection::State::kBusy;
    release(c, false);
  });
}

// The most recently used idle connection to `host`, now held by `user`; null if none is idle.
PooledConnection* ConnPool::takeIdle(const Host& host, PoolUser& user) {
  auto it = idle_.find(host.addressString());
  if (it == idle_.end() || it->second.empty()) return nullptr;
  PooledConnection* c = it->second.back();
  it->second.pop_back();
  c->timer_.disarm();
  c->state_ = PooledConnection::State::kBusy;
  c->user_ = &user;
  ++c->uses_;
  return c;
}

// Closes the least recently used idle connection of some host. False if none is idle.
bool ConnPool::evictIdle() {
  for (auto& [addr, list] : idle_) {
    if (!list.empty()) {
      PooledConnection* victim = list.front();
      list.erase(list.begin());
      victim->conn_->close(false);
      destroy(*victim);
      return true;
    }
  }
  return false;
}

void ConnPool::makeIdle(PooledConnection& c) {
  c.state_ = PooledConnection::State::kIdle;
  c.conn_->input().shrinkIfEmpty();
  idle_[c.address_string_].push_back(&c);
  c.timer_.arm(limits_.idle_timeout);
}

void ConnPool::servePending() {
  while (!pending_.empty()) {
    Waiter w = pending_.front();
    if (PooledConnection* c = w.fresh ? nullptr : takeIdle(*w.host, *w.user)) {
      pending_.pop_front();
      w.user->onUpstreamReady(*c);
      continue;
    }
    if (conns_.size() >= limits_.max_connections) {
      if (!evictIdle()) return;  // nothing idle to make room with
    }
    pending_.pop_front();
    std::string error;
    if (!startConnect(w.address, *w.host, *w.user, error)) {
      w.user->onUpstreamFailure(net::CloseReason::kConnectFailed, error, nullptr);
    }
  }
}

void ConnPool::onConnectionClosed(PooledConnection& c, net::CloseReason reason,
                                  std::string_view detail, bool was_connecting) {
  PoolUser* user = c.user_;
  c.user_ = nullptr;
  // Remove from the idle list if it was there.
  auto it = idle_.find(c.address_string_);
  if (it != idle_.end()) {
    auto& v = it->second;
    v.erase(std::remove(v.begin(), v.end(), &c), v.end());
  }
  std::string why(detail);
  destroy(c);
  if (user) {
    if (was_connecting) {
      user->onUpstreamFailure(reason, why, c.conn_.get());
    } else {
      // Must not touch `c`: it is queued for deletion.
      user->onUpstreamClosed(c, reason, why);
    }
  }
  servePending();
}

void ConnPool::destroy(PooledConnection& c) {
  c.state_ = PooledConnection::State::kDead;
  if (stats_.cx_active) stats_.cx_active->sub();
  countBytes(c);
  c.timer_.disarm();
  auto node = std::move(*c.self_);
  conns_.erase(c.self_);
  // Deferred: we may be inside this connection's own callback.
  struct Holder : net::Deferrable {
    std::unique_ptr<PooledConnection> p;
  };
  auto h = std::make_unique<Holder>();
  h->p = std::move(node);
  loop_.deferDelete(std::move(h));
}

}  // namespace weft::upstream
