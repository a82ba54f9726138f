#include "proxy/relay.h"

namespace weft::proxy {

ByteRelay::ByteRelay(TimerQueue& timers, std::function<void()> on_idle)
    : on_idle_(std::move(on_idle)),
      idle_timer_(timers, [this] { onIdleTimer(); }),
      timers_(timers) {}

ByteRelay::~ByteRelay() { stop(); }

void ByteRelay::start(net::Connection& down, upstream::ConnPool& pool,
                      upstream::PooledConnection& up, Duration idle_timeout) {
  idle_timeout_ = idle_timeout;
  down_ = &down;
  pool_ = &pool;
  up_ = &up;
  last_activity_ = timers_.now();
  if (idle_timeout_.count() > 0) idle_timer_.arm(idle_timeout_);
  down.readDisable(false);
  up.connection().readDisable(false);
  if (!down.closed()) move(up.connection(), down);
  move(down, up.connection());
}

size_t ByteRelay::move(net::Connection& from, net::Connection& to) {
  Buffer& in = from.input();
  size_t n = in.size();
  if (n == 0) return 0;
  last_activity_ = timers_.now();
  to.output().append(in.view());
  in.clear();
  to.flush();
  if (to.aboveHighWatermark()) from.readDisable(true);
  return n;
}

void ByteRelay::downstreamData() {
  if (up_) bytes_up_ += move(*down_, up_->connection());
}

void ByteRelay::upstreamData() {
  if (up_) bytes_down_ += move(up_->connection(), *down_);
}

void ByteRelay::downstreamDrained() {
  if (up_) up_->connection().readDisable(false);
}

void ByteRelay::upstreamDrained() {
  if (up_) down_->readDisable(false);
}

void ByteRelay::downstreamClosed() {
  if (!up_) return;
  bytes_up_ += move(*down_, up_->connection());
  upstream::PooledConnection* up = up_;
  end();
  pool_->releaseAfterFlush(*up);
}

void ByteRelay::upstreamClosed(upstream::PooledConnection& up) {
  if (!up_) return;
  if (!down_->closed()) bytes_down_ += move(up.connection(), *down_);
  end();  // the pool frees the connection itself
}

void ByteRelay::stop() {
  if (!up_) return;
  upstream::PooledConnection* up = up_;
  end();
  pool_->release(*up, false);
}

void ByteRelay::end() {
  up_ = nullptr;
  idle_timer_.disarm();
}

void ByteRelay::onIdleTimer() {
  if (!up_) return;
  Duration quiet = timers_.now() - last_activity_;
  if (quiet < idle_timeout_) {
    idle_timer_.arm(idle_timeout_ - quiet);
    return;
  }
  on_idle_();
}

}  // namespace weft::proxy
