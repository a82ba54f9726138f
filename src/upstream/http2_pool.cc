#include "upstream/http2_pool.h"

#include <algorithm>
#include <vector>

#include "common/log.h"

namespace weft::upstream {

// ---------------------------------------------------------------------------------------------
// Http2Connection

Http2Connection::Http2Connection(Http2Pool& pool, const Host& host)
    : pool_(pool),
      address_string_(host.addressString()),
      idle_timer_(pool.loop_.timers(), [this] { closeIdle(); }) {}

Http2Connection::~Http2Connection() = default;

bool Http2Connection::secure() const { return pc_ && pc_->connection().peer().secure; }

bool Http2Connection::hasRoom() const {
  // Streams wait for the peer's SETTINGS: its concurrent stream limit may be below the 100 a
  // client may assume until then, and streams over it would be refused.
  return state_ == State::kReady && !retiring_ && codec_ && codec_->remoteSettingsReceived() &&
         !codec_->goingAway() && load() < codec_->peerMaxConcurrentStreams();
}

Http2StreamUser* Http2Connection::userOf(int32_t stream_id) const {
  auto it = streams_.find(stream_id);
  return it == streams_.end() ? nullptr : it->second;
}

Result<int32_t> Http2Connection::submit(Http2StreamUser& user, const http2::RequestHeaders& request,
                                        bool end_stream) {
  if (reserved_ > 0) --reserved_;
  if (state_ != State::kReady || !codec_)
    return makeError("http2: upstream connection closed",
                     static_cast<int>(http2::ErrorCode::kGoingAway));
  ++depth_;
  Result<int32_t> id = codec_->submitRequest(request, end_stream);
  --depth_;
  if (id) {
    streams_[*id] = &user;
    ++uses_;
    idle_timer_.disarm();
  }
  flushOut();
  return id;
}

Result<bool> Http2Connection::sendData(int32_t stream_id, std::string_view data, bool end_stream) {
  if (!codec_) return makeError("http2: upstream connection closed");
  ++depth_;
  Result<bool> r = codec_->sendData(stream_id, data, end_stream);
  --depth_;
  flushOut();
  return r;
}

Status Http2Connection::submitTrailers(int32_t stream_id,
                                       std::span<const http::HeaderField> fields) {
  if (!codec_) return makeError("http2: upstream connection closed");
  ++depth_;
  Status s = codec_->submitTrailers(stream_id, fields);
  --depth_;
  flushOut();
  return s;
}

void Http2Connection::consume(int32_t stream_id, size_t n) {
  if (!codec_ || n == 0) return;
  ++depth_;
  codec_->consume(stream_id, n);
  --depth_;
  flushOut();
}

void Http2Connection::release(int32_t stream_id, size_t unconsumed) {
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) return;
  it->second = nullptr;  // detached: onStreamClose removes it
  if (!codec_) {
    streams_.erase(it);
    return;
  }
  ++depth_;
  if (unconsumed) codec_->consume(stream_id, unconsumed);
  (void)codec_->resetStream(stream_id, http2::kCancel);  // no-op error when already closed
  --depth_;
  flushOut();
}

void Http2Connection::onUpstreamReady(PooledConnection& conn) {
  pc_ = &conn;
  const net::PeerInfo& peer = conn.connection().peer();
  if (peer.secure && !peer.alpn.empty() && peer.alpn != "h2") {
    std::string why = "upstream selected ALPN \"" + peer.alpn + "\", not h2";
    pc_ = nullptr;
    pool_.pool_.release(conn, false);
    pool_.onConnectFailed(*this, net::CloseReason::kHandshakeFailed, why, nullptr);
    return;
  }
  http2::Options o;
  o.output_high_watermark = net::Connection::kHighWatermark + 1;
  // Streams share the connection: one slow client must not stall the others' responses.
  o.connection_window_on_arrival = true;
  auto codec = http2::Codec::create(http2::Mode::kClient, o, *this, conn.connection().output(),
                                    pool_.time_, pool_.stats_);
  if (!codec) {
    pc_ = nullptr;
    pool_.pool_.release(conn, false);
    pool_.onConnectFailed(*this, net::CloseReason::kError, codec.error().message, nullptr);
    return;
  }
  codec_ = std::move(*codec);
  state_ = State::kReady;
  conn.connection().flush();  // preface and SETTINGS; streams wait for the peer's SETTINGS
  flushOut();
}

void Http2Connection::onUpstreamFailure(net::CloseReason reason, std::string_view detail,
                                        const net::Connection* conn) {
  pool_.onConnectFailed(*this, reason, detail, conn);
}

void Http2Connection::onUpstreamData(PooledConnection& conn) {
  if (state_ != State::kReady) return;
  Buffer& in = conn.input();
  std::string_view bytes = in.view();
  ++depth_;
  Status s = codec_->feed(bytes);
  --depth_;
  if (state_ != State::kReady) return;
  in.consume(bytes.size());
  if (!s) {
    log::debug("http2", address_string_ + ": " + s.error().message);
    fail("upstream HTTP/2 error: " + s.error().message);
    return;
  }
  if (!settled_ && codec_->remoteSettingsReceived()) {
    settled_ = true;
    pool_.servePending(address_string_);  // the waiters it was opened for
  }
  flushOut();
}

void Http2Connection::onUpstreamDrained(PooledConnection&) {
  if (state_ != State::kReady) return;
  ++depth_;
  codec_->flush();
  --depth_;
  flushOut();
}

void Http2Connection::onUpstreamClosed(PooledConnection&, net::CloseReason,
                                       std::string_view detail) {
  pc_ = nullptr;  // the ConnPool frees it
  fail("upstream connection closed: " + std::string(detail));
}

void Http2Connection::flushOut() {
  if (depth_ > 0 || state_ != State::kReady) return;
  pc_->connection().flushSoon();
  bool empty = streams_.empty() && reserved_ == 0;
  if (empty && (retiring_ || codec_->goingAway())) {
    // Retired (GOAWAY) and its last stream is done.
    fail("retired");
    return;
  }
  if (empty) {
    if (!idle_timer_.armed() && pool_.limits_.idle_timeout.count() > 0)
      idle_timer_.arm(pool_.limits_.idle_timeout);
  } else {
    idle_timer_.disarm();
  }
}

void Http2Connection::closeIdle() {
  if (state_ != State::kReady || !streams_.empty() || reserved_ > 0) return;
  fail("idle timeout");
}

void Http2Connection::fail(std::string_view detail) {
  if (state_ == State::kDead) return;
  log::debug("http2",
             address_string_ + ": closing the upstream connection (" + std::string(detail) + ")");
  // Dying before the peer's SETTINGS (it closed, or does not speak HTTP/2): no stream was put
  // on it, and the waiters it was opened for fail as on a connect failure (retry, outlier
  // signal, 503) instead of waiting for a connection that will not come.
  bool unsettled = !settled_;
  state_ = State::kDead;
  idle_timer_.disarm();
  if (codec_) {
    codec_->terminate(http2::kNoError);  // GOAWAY, when the connection is still there
  }
  auto streams = std::move(streams_);
  streams_.clear();
  std::string why(detail);
  for (auto& [id, user] : streams) {
    if (user) user->onH2Close(http2::CloseCause::kError, http2::kInternalError, why);
  }
  codec_.reset();
  if (pc_) {
    PooledConnection* pc = pc_;
    pc_ = nullptr;
    pc->connection().flush();  // the GOAWAY; the close waits for the output to be written
    pool_.pool_.releaseAfterFlush(*pc);
  }
  if (unsettled) {
    pool_.onConnectFailed(*this, net::CloseReason::kConnectFailed, why, nullptr);
    return;
  }
  pool_.destroy(*this);
  // Waiters counting on this connection's free slots get another connection (after the
  // caller's stack unwinds: we may be inside a codec or pool callback).
  if (!pool_.pending_.empty()) {
    pool_.loop_.post(
        [alive = std::weak_ptr<char>(pool_.alive_), &pool = pool_, key = address_string_] {
          if (!alive.expired()) pool.servePending(key);
        });
  }
}

void Http2Connection::onHeaders(int32_t stream_id, const http2::HeaderBlock& block) {
  if (Http2StreamUser* u = userOf(stream_id)) u->onH2Headers(block);
}

void Http2Connection::onData(int32_t stream_id, std::string_view data) {
  if (Http2StreamUser* u = userOf(stream_id)) {
    u->onH2Data(data);
  } else {
    codec_->consume(stream_id, data.size());  // released: discard, keep the window open
  }
}

void Http2Connection::onStreamEnd(int32_t stream_id) {
  if (Http2StreamUser* u = userOf(stream_id)) u->onH2End();
}

void Http2Connection::onStreamClose(int32_t stream_id, http2::CloseCause cause,
                                    uint32_t error_code) {
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) return;
  Http2StreamUser* u = it->second;
  streams_.erase(it);
  if (u) {
    const char* why = cause == http2::CloseCause::kRefused           ? "stream refused by upstream"
                      : cause == http2::CloseCause::kPeerReset       ? "stream reset by upstream"
                      : cause == http2::CloseCause::kComplete        ? "stream complete"
                      : cause == http2::CloseCause::kHeadersTooLarge ? "response headers too large"
                                                                     : "stream error";
    u->onH2Close(cause, error_code, why);
  }
  // A stream slot is free: waiters may take it (after the codec call returns).
  if (!pool_.pending_.empty()) {
    pool_.loop_.post(
        [alive = std::weak_ptr<char>(pool_.alive_), &pool = pool_, key = address_string_] {
          if (!alive.expired()) pool.servePending(key);
        });
  }
}

void Http2Connection::onGoaway(int32_t, uint32_t error_code) {
  retiring_ = true;
  log::debug("http2", address_string_ + ": upstream sent GOAWAY (error " +
                          std::to_string(error_code) + "); retiring the connection");
}

void Http2Connection::onStreamWritable(int32_t stream_id) {
  if (Http2StreamUser* u = userOf(stream_id)) u->onH2Writable();
}

// ---------------------------------------------------------------------------------------------
// Http2Pool

Http2Pool::Http2Pool(net::EventLoop& loop, ConnPool& pool, PoolLimits limits,
                     const TimeSource& time, http2::Stats stats)
    : loop_(loop), pool_(pool), limits_(limits), time_(time), stats_(std::move(stats)) {}

Http2Pool::~Http2Pool() {
  // Users are gone by now (sessions end before pools). The ConnPool closes the sockets.
  for (auto& c : conns_) {
    c->state_ = Http2Connection::State::kDead;
    c->codec_.reset();
    c->streams_.clear();
  }
}

Http2Connection* Http2Pool::withRoom(const std::string& key) {
  for (auto& c : conns_) {
    if (c->address_string_ == key && c->hasRoom()) return c.get();
  }
  return nullptr;
}

Http2Pool::Acquire Http2Pool::acquire(const Host& host, Http2StreamUser& user,
                                      Http2Connection*& out, std::string& error) {
  const std::string& key = host.addressString();
  out = withRoom(key);
  if (out) {
    ++out->reserved_;
    out->idle_timer_.disarm();
    return Acquire::kReady;
  }
  if (pending_.size() >= limits_.max_pending) return Acquire::kOverflow;
  size_t connecting = 0, waiting = 0;
  for (auto& c : conns_)
    if (c->address_string_ == key && c->onItsWay()) ++connecting;
  for (auto& w : pending_)
    if (w.key == key) ++waiting;
  if (waiting >= connecting * kAssumedStreams) {
    Acquire a = Acquire::kPending;
    if (!connect(host, a, error)) return a;
  }
  pending_.push_back({&user, &host, key});
  return Acquire::kPending;
}

Http2Connection* Http2Pool::connect(const Host& host, Acquire& a, std::string& error) {
  auto conn = std::make_unique<Http2Connection>(*this, host);
  Http2Connection* raw = conn.get();
  conns_.push_back(std::move(conn));
  raw->self_ = std::prev(conns_.end());
  PooledConnection* ready = nullptr;
  a = pool_.acquire(host, *raw, ready, error, /*fresh=*/true);
  if (a == Acquire::kPending) return raw;
  // kFailed / kOverflow (kReady cannot happen for a fresh acquire).
  conns_.erase(raw->self_);
  return nullptr;
}

void Http2Pool::cancel(Http2StreamUser& user) {
  pending_.remove_if([&](const Waiter& w) { return w.user == &user; });
}

void Http2Pool::servePending(const std::string& key) {
  if (serving_) return;
  serving_ = true;
  for (;;) {
    auto it = std::find_if(pending_.begin(), pending_.end(),
                           [&](const Waiter& w) { return w.key == key; });
    if (it == pending_.end()) break;
    Http2Connection* c = withRoom(key);
    if (!c) {
      // Every connection is full (or none is ready): make sure enough are on their way.
      size_t connecting = 0, waiting = 0;
      for (auto& cc : conns_)
        if (cc->address_string_ == key && cc->onItsWay()) ++connecting;
      for (auto& w : pending_)
        if (w.key == key) ++waiting;
      if (waiting > connecting * kAssumedStreams) {
        Acquire a;
        std::string error;
        if (!connect(*it->host, a, error)) {
          Waiter w = *it;
          pending_.erase(it);
          w.user->onH2Failure(net::CloseReason::kConnectFailed,
                              a == Acquire::kOverflow ? "connection limit reached" : error,
                              nullptr);
          continue;
        }
      }
      break;
    }
    Waiter w = *it;
    pending_.erase(it);
    ++c->reserved_;
    c->idle_timer_.disarm();
    w.user->onH2Ready(*c);
    if (c->reserved_ > 0 && c->state_ == Http2Connection::State::kReady) {
      // The user did not submit (it ended meanwhile): give the slot back.
      --c->reserved_;
    }
  }
  serving_ = false;
}

void Http2Pool::onConnectFailed(Http2Connection& c, net::CloseReason reason,
                                std::string_view detail, const net::Connection* conn) {
  std::string key = c.address_string_;
  c.state_ = Http2Connection::State::kDead;
  // The waiters this connection was expected to serve fail with it (the oldest first), those
  // other connections on their way can take stay.
  size_t connecting = 0;
  for (auto& cc : conns_)
    if (cc.get() != &c && cc->address_string_ == key && cc->onItsWay()) ++connecting;
  size_t waiting = 0;
  for (auto& w : pending_)
    if (w.key == key) ++waiting;
  size_t keep = connecting * kAssumedStreams;
  std::vector<Http2StreamUser*> failed;
  for (auto it = pending_.begin(); it != pending_.end() && waiting > keep;) {
    if (it->key == key) {
      failed.push_back(it->user);
      it = pending_.erase(it);
      --waiting;
    } else {
      ++it;
    }
  }
  std::string why(detail);
  destroy(c);
  for (Http2StreamUser* u : failed) u->onH2Failure(reason, why, conn);
  servePending(key);  // a ready connection may have room for the others
}

void Http2Pool::destroy(Http2Connection& c) {
  c.state_ = Http2Connection::State::kDead;
  c.idle_timer_.disarm();
  auto node = std::move(*c.self_);
  conns_.erase(c.self_);
  // Deferred: we may be inside this connection's own callback.
  struct Holder : net::Deferrable {
    std::unique_ptr<Http2Connection> p;
  };
  auto h = std::make_unique<Holder>();
  h->p = std::move(node);
  loop_.deferDelete(std::move(h));
}

}  // namespace weft::upstream
