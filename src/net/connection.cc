#include "net/connection.h"

#include <unistd.h>

#include <cstring>

namespace weft::net {

namespace {
constexpr uint32_t kEvents = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
constexpr size_t kReadChunk = 16 << 10;
constexpr size_t kMaxReadPerEvent = 256 << 10;  // fairness between connections on one worker
}  // namespace

Connection::Connection(EventLoop& loop, int fd, std::unique_ptr<Transport> transport,
                       ConnectionCallbacks* callbacks, bool connecting)
    : loop_(loop),
      fd_(fd),
      transport_(std::move(transport)),
      callbacks_(callbacks),
      state_(connecting ? State::kConnecting : State::kHandshaking) {
  if (!connecting) {
    remote_ = peerAddress(fd_);
    local_ = localAddress(fd_);
  }
  loop_.add(fd_, kEvents, this);
}

Connection::~Connection() {
  if (fd_ >= 0) {
    loop_.remove(fd_);
    ::close(fd_);
  }
}

void Connection::onIoEvents(uint32_t events) {
  if (state_ == State::kClosed) return;
  if (state_ == State::kConnecting) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    int err = socketError(fd_);
    if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
      fail(CloseReason::kConnectFailed, std::strerror(err ? err : ECONNREFUSED));
      return;
    }
    remote_ = peerAddress(fd_);
    local_ = localAddress(fd_);
    state_ = State::kHandshaking;
  }
  if (state_ == State::kHandshaking) {
    doHandshake();
    if (state_ != State::kOpen) return;
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) read_pending_ = true;
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) peer_hup_ = true;
  doWrite(false);
  if (state_ == State::kOpen || state_ == State::kClosing) doRead();
}

void Connection::doHandshake() {
  IoResult r = transport_->handshake();
  if (r.status == IoStatus::kOk) {
    state_ = State::kOpen;
    read_pending_ = true;
    if (callbacks_) callbacks_->onConnected(*this);
    if (state_ == State::kOpen) {
      doWrite(false);
      doRead();
    }
    return;
  }
  if (r.status == IoStatus::kWantRead || r.status == IoStatus::kWantWrite) return;
  fail(CloseReason::kHandshakeFailed, r.error.empty() ? "peer closed during handshake" : r.error);
}

void Connection::doRead() {
  if (state_ != State::kOpen || read_disabled_ || !read_pending_) return;
  size_t total = 0;
  while (total < kMaxReadPerEvent) {
    char* p = in_.prepare(kReadChunk);
    size_t room = in_.tailroom();
    IoResult r = transport_->read(p, room);
    if (r.status == IoStatus::kOk) {
      in_.commit(r.bytes);
      bytes_read_ += r.bytes;
      total += r.bytes;
      // A short read that drained the socket (and TLS's buffers): skip the read that would only
      // say EAGAIN; data arriving later raises a new edge.
      if (r.bytes < room && !peer_hup_ && transport_->drained())
        r.status = IoStatus::kWantRead;
      else
        continue;
    }
    // Known before the data is handed over, so a pool never reuses a connection whose peer has
    // already closed.
    if (r.status == IoStatus::kEof || r.status == IoStatus::kError) peer_eof_ = true;
    if (total > 0) {
      callbacks_->onData(*this);
      if (state_ != State::kOpen) return;
    }
    if (r.status == IoStatus::kWantRead || r.status == IoStatus::kWantWrite) {
      // TLS may need the socket writable before it can read: look again on the next event.
      read_pending_ = r.status == IoStatus::kWantWrite;
      in_.shrinkIfEmpty();
      return;
    }
    if (r.status == IoStatus::kEof) {
      fail(CloseReason::kRemoteClosed, "peer closed");
    } else {
      fail(CloseReason::kError, r.error);
    }
    return;
  }
  // Read budget used: deliver, then come back on the next loop round (edge-triggered, so post).
  callbacks_->onData(*this);
  if (state_ == State::kOpen && !read_disabled_) {
    loop_.post([this, alive = std::weak_ptr<char>(alive_)]() {
      if (!alive.expired() && state_ == State::kOpen) doRead();
    });
  }
}

void Connection::write(std::string_view data) {
  if (state_ == State::kClosed || state_ == State::kClosing) return;
  if (out_.empty() && state_ == State::kOpen) {
    // Fast path: write straight from the caller's bytes; queue only what the socket refused.
    size_t off = 0;
    while (off < data.size()) {
      IoResult r = transport_->write(data.data() + off, data.size() - off);
      if (r.status == IoStatus::kOk) {
        off += r.bytes;
        bytes_written_ += r.bytes;
        continue;
      }
      if (r.status == IoStatus::kError) {
        failLater(CloseReason::kError, r.error);
        return;
      }
      break;
    }
    out_.append(data.substr(off));
  } else {
    out_.append(data);
  }
  if (out_.size() > kHighWatermark) above_high_ = true;
}

void Connection::flush() { doWrite(/*owner_call=*/true); }

void Connection::flushSoon() {
  if (loop_.dispatching() && state_ == State::kOpen) {
    if (out_.size() > kHighWatermark) above_high_ = true;
    if (!flush_queued_) {
      flush_queued_ = true;
      loop_.atEndOfRound(this, alive_);
    }
    return;
  }
  doWrite(/*owner_call=*/true);
}

void Connection::onEndOfRound() {
  flush_queued_ = false;
  doWrite(/*owner_call=*/false);
}

void Connection::doWrite(bool owner_call) {
  if (state_ != State::kOpen && state_ != State::kClosing) return;
  while (!out_.empty()) {
    IoResult r = transport_->write(out_.data(), out_.size());
    if (r.status == IoStatus::kOk) {
      out_.consume(r.bytes);
      bytes_written_ += r.bytes;
      continue;
    }
    if (r.status == IoStatus::kError) {
      if (owner_call) {
        failLater(CloseReason::kError, r.error);
      } else {
        fail(CloseReason::kError, r.error);
      }
      return;
    }
    break;
  }
  if (out_.empty()) out_.shrinkIfEmpty();
  if (state_ == State::kClosing && out_.empty()) {
    closeNow();
    return;
  }
  if (out_.size() > kHighWatermark) above_high_ = true;
  if (above_high_ && out_.size() < kLowWatermark) {
    above_high_ = false;
    if (callbacks_ && state_ == State::kOpen) callbacks_->onWriteDrained(*this);
  }
}

void Connection::readDisable(bool disable) {
  if (read_disabled_ == disable) return;
  read_disabled_ = disable;
  if (!disable && state_ == State::kOpen) {
    // Data that arrived while disabled produced no new edge: look now, outside the caller's stack.
    read_pending_ = true;
    loop_.post([this, alive = std::weak_ptr<char>(alive_)]() {
      if (!alive.expired() && state_ == State::kOpen) doRead();
    });
  }
}

void Connection::close(bool flush) {
  if (state_ == State::kClosed) return;
  if (flush && state_ == State::kClosing) return;  // already flushing towards the close
  if (flush && state_ == State::kOpen && !out_.empty()) {
    state_ = State::kClosing;
    return;
  }
  closeNow();
}

void Connection::closeNow() {
  if (state_ == State::kClosed) return;
  bool was_closing = state_ == State::kClosing;
  if (state_ == State::kOpen || state_ == State::kClosing) transport_->shutdown();
  state_ = State::kClosed;
  loop_.remove(fd_);
  ::close(fd_);
  fd_ = -1;
  if (was_closing) runOnFlushed();
}

void Connection::fail(CloseReason reason, std::string detail) {
  if (state_ == State::kClosed) return;
  bool was_closing = state_ == State::kClosing;
  state_ = State::kClosed;
  loop_.remove(fd_);
  ::close(fd_);
  fd_ = -1;
  if (was_closing) {
    runOnFlushed();
    return;
  }
  if (callbacks_) callbacks_->onClose(*this, reason, detail);
}

// A failure found inside the owner's own call (write/flush): the owner is mid-operation, so the
// socket is closed now and onClose is delivered from the loop, after the owner's call returned.
void Connection::failLater(CloseReason reason, std::string detail) {
  if (state_ == State::kClosed) return;
  bool was_closing = state_ == State::kClosing;
  state_ = State::kClosed;
  peer_eof_ = true;
  loop_.remove(fd_);
  ::close(fd_);
  fd_ = -1;
  if (was_closing) return;
  loop_.post([this, alive = std::weak_ptr<char>(alive_), reason, detail = std::move(detail)] {
    if (!alive.expired() && callbacks_) callbacks_->onClose(*this, reason, detail);
  });
}

// Runs (once) what closeAfterFlush() asked for; it may destroy this connection.
void Connection::runOnFlushed() {
  if (!on_flushed_) return;
  auto done = std::move(on_flushed_);
  on_flushed_ = nullptr;
  done();
}

void Connection::closeAfterFlush(std::function<void()> on_closed) {
  if (state_ == State::kClosed) {
    on_closed();
    return;
  }
  on_flushed_ = std::move(on_closed);
  close(true);
  if (state_ == State::kClosed) runOnFlushed();
}

}  // namespace weft::net
