#include "proxy/http_session.h"

#include <charconv>
#include <cstdio>
#include <cstring>

#include "common/log.h"
#include "http/http1/chunked.h"
#include "http/http2/codec.h"
#include "http/http2/translate.h"
#include "http/status.h"
#include "net/tls/tls_transport.h"
#include "proxy/access_log.h"
#include "proxy/http2_session.h"
#include "proxy/tls_stats.h"
#include "proxy/worker.h"

namespace weft::proxy {

using AccessLogHeaders = HeaderSource;

namespace {

constexpr size_t kMaxPipelinedInput = 64 << 10;  // stop reading ahead of the current exchange

void appendUint(std::string& out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

}  // namespace

HttpSession::HttpSession(Worker& worker, std::unique_ptr<net::Connection> conn,
                         std::shared_ptr<const ListenerInfo> listener,
                         std::optional<net::Address> original_dst)
    : worker_(worker),
      conn_(std::move(conn)),
      listener_(std::move(listener)),
      original_dst_(original_dst),
      req_parser_(http1::ParseLimits{listener_->max_head_bytes, 100}),
      resp_parser_(http1::ParseLimits{64 << 10, 200}),
      request_timer_(worker.loop().timers(), [this] { onRequestTimeout(); }),
      idle_timer_(worker.loop().timers(), [this] { onIdleTimeout(); }),
      stream_idle_timer_(worker.loop().timers(), [this] { onStreamIdleTimeout(); }),
      ex_(worker),
      per_try_timer_(worker.loop().timers(), [this] { onPerTryTimeout(); }),
      backoff_timer_(worker.loop().timers(), [this] { onBackoffDone(); }),
      relay_(worker.loop().timers(), [this] { onUpgradeIdle(); }) {
  conn_->setCallbacks(this);
  listener_->stats.cx_total->inc();
  listener_->stats.cx_active->add();
  armIdle();
}

HttpSession::~HttpSession() {
  if (handed_over_) return;  // the connection and its counts belong to the Http2Session now
  relay_.stop();
  if (upgrade_counted_) listener_->stats.upgrades_active->sub();
  if (waiting_pool_ && ex_.cluster_rt) {
    ex_.cluster_rt->pool->cancel(*this);
    if (ex_.cluster_rt->h2pool) ex_.cluster_rt->h2pool->cancel(*this);
  }
  if (upstream_ && ex_.cluster_rt) ex_.cluster_rt->pool->release(*upstream_, false);
  ex_.releaseHost();
  listener_->stats.cx_active->sub();
  countBytes();
  // A response still being written ("connection: close" after it) outlives the session.
  if (!conn_->closed()) worker_.linger(std::move(conn_));
}

// Adds the bytes moved since the last call to the listener's counters (per exchange, so
// long-lived keep-alive connections show up while they live).
void HttpSession::countBytes() {
  uint64_t rx = conn_->bytesRead(), tx = conn_->bytesWritten();
  listener_->stats.rx_bytes->inc(rx - counted_rx_);
  listener_->stats.tx_bytes->inc(tx - counted_tx_);
  counted_rx_ = rx;
  counted_tx_ = tx;
}

void HttpSession::armIdle() {
  if (listener_->idle_timeout.count() > 0) idle_timer_.arm(listener_->idle_timeout);
}

void HttpSession::onConnected(net::Connection& c) {
  if (c.peer().secure) {
    listener_->stats.ssl_handshake->inc();
    if (!c.peer().peer_certificate) listener_->stats.ssl_no_certificate->inc();
  }
  if (c.peer().alpn == "h2") switchToHttp2();
}

void HttpSession::switchToHttp2() {
  handed_over_ = true;
  state_ = State::kClosed;
  request_timer_.disarm();
  idle_timer_.disarm();
  auto next = std::make_unique<Http2Session>(worker_, std::move(conn_), listener_, counted_rx_,
                                             counted_tx_, original_dst_);
  Http2Session* h2 = next.get();
  worker_.replaceSession(*this, std::move(next));  // this session is deleted later
  h2->start();
  if (draining_ || worker_.draining()) h2->drain();
}

void HttpSession::drain() {
  draining_ = true;
  if (idle()) closeDownstream(true);
}

void HttpSession::closeDownstream(bool flush) {
  if (state_ == State::kClosed) return;
  conn_->close(flush);  // flushing continues after the session is gone (Worker::linger)
  teardown();
}

// The one way a session ends: whatever request is in flight is finished (logged, counted, its
// upstream and balancer slot given back), so nothing outlives the session but its connection.
void HttpSession::teardown() {
  state_ = State::kClosed;
  request_timer_.disarm();
  stream_idle_timer_.disarm();
  idle_timer_.disarm();
  per_try_timer_.disarm();
  backoff_timer_.disarm();
  if (waiting_pool_) {
    ex_.cluster_rt->pool->cancel(*this);
    if (ex_.cluster_rt->h2pool) ex_.cluster_rt->h2pool->cancel(*this);
    waiting_pool_ = false;
    ex_.cluster->stats.rq_pending_active->sub();
  }
  resetUpstream();
  relay_.stop();
  if (upgrade_counted_) {
    upgrade_counted_ = false;
    listener_->stats.upgrades_active->sub();
  }
  if (ex_.active) {
    // The client went away mid-exchange: logged as Envoy does (DC, status so far or 0).
    ex_.flags = "DC";
    logAndCount(ex_.status);
  }
  ex_.cluster_rt = nullptr;
  worker_.sessionClosed(*this);
}

void HttpSession::onClose(net::Connection&, net::CloseReason reason, std::string_view detail) {
  if (state_ == State::kClosed) return;
  if (state_ == State::kUpgraded) {
    // The client closed: what it sent reaches the upstream, which is closed after it.
    relay_.downstreamClosed();
    endUpgrade("-", false);
    return;
  }
  if (reason == net::CloseReason::kHandshakeFailed) {
    countTlsFailure(conn_->transport(), *listener_->stats.ssl_error, *listener_->stats.ssl_no_cert,
                    *listener_->stats.ssl_verify_error, *listener_->stats.ssl_san);
    log::debug("listener", "TLS handshake failed: " + std::string(detail));
  }
  teardown();
}

void HttpSession::onData(net::Connection&) {
  if (state_ == State::kUpgraded) {
    relay_.downstreamData();
    return;
  }
  processInput();
}

void HttpSession::processInput() {
  in_process_input_ = true;
  processInputLoop();
  in_process_input_ = false;
}

void HttpSession::processInputLoop() {
  while (state_ == State::kReadHead) {
    Buffer& in = conn_->input();
    if (in.empty()) return;
    // A client that pipelines requests without reading the answers: stop reading until it does.
    if (conn_->aboveHighWatermark()) {
      conn_->readDisable(true);
      return;
    }
    if (!preface_checked_) {
      // h2c by prior knowledge: the first bytes of the connection are the HTTP/2 preface.
      switch (http2::matchPreface(in.view())) {
        case http2::PrefaceMatch::kPartial:
          return;
        case http2::PrefaceMatch::kYes:
          switchToHttp2();
          return;
        case http2::PrefaceMatch::kNo:
          preface_checked_ = true;
          break;
      }
    }
    http1::ParseResult r = req_parser_.parse(in.view());
    if (r.needMore()) return;
    if (r.failed()) {
      listener_->stats.protocol_error->inc();
      if (r.error.status == 431) listener_->stats.rq_too_large->inc();
      ex_.begin(*listener_, nullptr, "HTTP/1.1");
      localReply(r.error.status, r.error.reason, "DPE", true);
      return;
    }
    startRequest(r.consumed);
  }
  if (state_ == State::kProxying) {
    if (!req_body_.finished()) {
      forwardRequestBody();
    } else if (conn_->input().size() > kMaxPipelinedInput) {
      conn_->readDisable(true);  // resumed when the next request starts
    }
  }
}

void HttpSession::startRequest(size_t head_len) {
  const http1::RequestHead& h = req_parser_.head();
  // Reloads apply to open connections: each request takes the live listener (routes, options),
  // which the session then holds until its next request, so the route stays valid whatever
  // snapshot comes meanwhile. Metrics are the same objects across versions (same names).
  const ListenerInfo* live = worker_.snapshot().listener(listener_->name);
  if (live && live != listener_.get()) listener_ = worker_.snapshot().listenerPtr(listener_->name);
  idle_timer_.disarm();
  ex_.begin(*listener_, &h, h.version == http1::Version::kHttp10 ? "HTTP/1.0" : "HTTP/1.1");
  version_ = h.version;
  client_keep_alive_ = h.keep_alive && !draining_;

  // Request body framing: upstreams are HTTP/1.1, so a chunked body stays chunked.
  req_body_.start(h.body_kind, h.content_length, /*chunk_output=*/true);
  bool has_body = !req_body_.finished();
  if (listener_->max_body_bytes && req_body_.state() == http1::BodyRelay::State::kLength &&
      h.content_length > listener_->max_body_bytes) {
    conn_->input().consume(head_len);
    listener_->stats.rq_too_large->inc();
    localReply(413, "request body too large", "-", true);
    return;
  }
  if (h.method_id == http1::Method::kConnect) {
    conn_->input().consume(head_len);
    localReply(501, "CONNECT is not supported on this listener", "-", true);
    return;
  }
  if (!listener_->authorizes(conn_->peer())) {
    conn_->input().consume(head_len);
    localReply(403, "RBAC: access denied", "RBAC", has_body, false);
    return;
  }
  // Upgrade passthrough (WebSocket ...); otherwise the Upgrade fields are dropped as hop-by-hop.
  upgrade_.assign(upgradeToForward(h));
  if (std::optional<LocalReply> reply = ex_.route(*listener_, h, original_dst_)) {
    conn_->input().consume(head_len);
    localReply(reply->status, reply->body, reply->flags, has_body, reply->add_newline);
    return;
  }
  h2_up_ = ex_.cluster->http2;
  if (h2_up_) {
    if (!upgrade_.empty()) {
      conn_->input().consume(head_len);
      localReply(501, "Upgrade to an HTTP/2 cluster is not supported", "-", true);
      return;
    }
    // The body goes up as DATA: decoded, not re-chunked.
    req_body_.start(h.body_kind, h.content_length, /*chunk_output=*/false);
    ex_.buildUpstreamH2Request(h2_req_, *listener_, h, ex_.cluster->config.has_tls());
    bool expect_continue = h.expect_100_continue && has_body;
    conn_->input().consume(head_len);
    state_ = State::kProxying;
    stream_idle_timeout_ = ex_.stream_idle_timeout;
    if (ex_.timeout.count() > 0) request_timer_.arm(ex_.timeout);
    if (stream_idle_timeout_.count() > 0) {
      last_activity_ = worker_.loop().now();
      stream_idle_timer_.arm(stream_idle_timeout_);
    }
    if (expect_continue) conn_->write("HTTP/1.1 100 Continue\r\n\r\n");
    routeRequest();
    return;
  }

  // Serialize the upstream request head now: the views into the input buffer die with it.
  UpstreamBody framing = UpstreamBody::kNone;
  if (req_body_.state() == http1::BodyRelay::State::kLength) {
    framing = UpstreamBody::kLength;
  } else if (req_body_.state() == http1::BodyRelay::State::kChunked) {
    framing = UpstreamBody::kChunked;
  } else if (h.body_kind == http1::BodyKind::kContentLength) {
    framing = UpstreamBody::kEmptyLength;
  }
  upstream_head_.clear();
  ex_.appendUpstreamHead(upstream_head_, *listener_, h, framing, req_body_.remaining(), upgrade_);
  bool expect_continue = h.expect_100_continue && has_body;
  conn_->input().consume(head_len);

  state_ = State::kProxying;
  stream_idle_timeout_ = ex_.stream_idle_timeout;
  if (ex_.timeout.count() > 0) request_timer_.arm(ex_.timeout);
  if (stream_idle_timeout_.count() > 0) {
    last_activity_ = worker_.loop().now();
    stream_idle_timer_.arm(stream_idle_timeout_);
  }
  if (expect_continue) conn_->write("HTTP/1.1 100 Continue\r\n\r\n");
  routeRequest();
}

void HttpSession::routeRequest() {
  upstream::PooledConnection* ready = nullptr;
  std::string error;
  if (ex_.retry_policy && ex_.retry_policy->perTryTimeout().count() > 0)
    per_try_timer_.arm(ex_.retry_policy->perTryTimeout());
  upstream::ConnPool::Acquire a;
  if (h2_up_) {
    upstream::Http2Connection* h2 = nullptr;
    a = ex_.acquireH2(*this, h2, error);
    if (a == upstream::ConnPool::Acquire::kReady) {
      onH2Ready(*h2);
      return;
    }
  } else {
    // An upgrade takes a connection of its own: it will never be handed back for reuse.
    a = ex_.acquire(*this, ready, error, /*fresh=*/!upgrade_.empty());
  }
  switch (a) {
    case upstream::ConnPool::Acquire::kReady:
      onUpstreamReady(*ready);
      return;
    case upstream::ConnPool::Acquire::kPending:
      waiting_pool_ = true;
      return;
    case upstream::ConnPool::Acquire::kOverflow:
      localReply(503,
                 upstream::CircuitBreaker::overflowMessage(upstream::Resource::kPendingRequests),
                 upstream::CircuitBreaker::kOverflowFlag.data(), !req_body_.finished());
      return;
    case upstream::ConnPool::Acquire::kFailed:
      if (retryOn(
              upstream::AttemptOutcome::failure(upstream::AttemptOutcome::Kind::kConnectFailure)))
        return;
      localReply(503, "upstream connect error: " + error, "UF", !req_body_.finished());
      return;
  }
}

void HttpSession::onUpstreamReady(upstream::PooledConnection& conn) {
  if (waiting_pool_) {
    waiting_pool_ = false;
    ex_.cluster->stats.rq_pending_active->sub();
  }
  upstream_ = &conn;
  if (conn.uses() == 1 && conn.connection().peer().secure) ex_.cluster->stats.ssl_handshake->inc();
  ex_.upstream_sent = worker_.loop().now();
  conn.connection().output().append(upstream_head_);
  if (!req_body_.finished()) {
    if (!forwardRequestBody()) return;
  } else if (ex_.retries_done > 0) {
    conn.connection().output().append(retry_body_);  // a retry re-sends the whole body
  }
  if (upstream_) upstream_->connection().flush();
}

void HttpSession::onUpstreamFailure(net::CloseReason reason, std::string_view detail,
                                    const net::Connection* conn) {
  waiting_pool_ = false;
  ex_.cluster->stats.rq_pending_active->sub();
  ex_.cluster->stats.cx_connect_fail->inc();
  if (reason == net::CloseReason::kHandshakeFailed) {
    if (conn) {
      // An upstream without a certificate is a verification error like any other.
      const ClusterStats& st = ex_.cluster->stats;
      countTlsFailure(conn->transport(), *st.ssl_error, *st.ssl_verify_error, *st.ssl_verify_error,
                      *st.ssl_san);
    } else {
      ex_.cluster->stats.ssl_error->inc();
    }
  }
  ex_.noteLocalFailure();
  if (retryOn(upstream::AttemptOutcome::failure(upstream::AttemptOutcome::Kind::kConnectFailure)))
    return;
  localReply(503, "upstream connect error: " + std::string(detail), "UF", !req_body_.finished());
}

// Moves request body bytes from the client to the upstream. Returns false if the exchange ended.
bool HttpSession::forwardRequestBody() {
  if (h2_up_) return forwardRequestBodyH2();
  Buffer& in = conn_->input();
  if (stream_idle_timer_.armed() && !in.empty()) last_activity_ = worker_.loop().now();
  if (!upstream_) {
    // Not connected yet: keep the bytes, but bound what we hold.
    if (in.size() > kMaxPipelinedInput) conn_->readDisable(true);
    return true;
  }
  net::Connection& up = upstream_->connection();
  size_t before = up.output().size();
  http1::BodyRelay::Step step = req_body_.relay(in, up.output());
  if (ex_.retry_policy && retry_body_ok_) {
    // Keep what was sent, for a retry, up to the bound; past it the request is not retried.
    std::string_view sent = up.output().view().substr(before);
    if (retry_body_.size() + sent.size() > upstream::kMaxRetryBodyBytes) {
      retry_body_ok_ = false;
      std::string().swap(retry_body_);
    } else {
      retry_body_.append(sent);
    }
  }
  bool too_large = listener_->max_body_bytes && req_body_.bytes() > listener_->max_body_bytes;
  if (step.failed() || too_large) {
    (too_large ? listener_->stats.rq_too_large : listener_->stats.protocol_error)->inc();
    resetUpstream();
    if (resp_head_sent_) {
      // The response is already on its way: no second status line, just end the connection.
      ex_.flags = "DPE";
      logAndCount(ex_.status);
      closeDownstream(true);
    } else if (too_large) {
      localReply(413, "request body too large", "-", true);
    } else {
      localReply(step.error.status, step.error.reason, "DPE", true);
    }
    return false;
  }
  up.flush();
  if (!upstream_) return false;
  // Backpressure: stop reading the client while the upstream socket is saturated; otherwise
  // (e.g. reading was paused while the upstream connected) read on.
  if (!req_body_.finished()) conn_->readDisable(up.aboveHighWatermark());
  if (req_body_.finished() && in.size() > kMaxPipelinedInput) conn_->readDisable(true);
  return true;
}

void HttpSession::onH2Writable() {
  h2_up_paused_ = false;
  if (!req_body_.finished() && state_ == State::kProxying) {
    conn_->readDisable(false);
    forwardRequestBody();
  }
}

void HttpSession::onUpstreamDrained(upstream::PooledConnection&) {
  if (state_ == State::kUpgraded) {
    relay_.upstreamDrained();
    return;
  }
  if (!req_body_.finished() && state_ == State::kProxying) {
    conn_->readDisable(false);
  }
}

void HttpSession::onWriteDrained(net::Connection&) {
  if (state_ == State::kUpgraded) {
    relay_.downstreamDrained();
    return;
  }
  if (upstream_ && state_ == State::kProxying) upstream_->connection().readDisable(false);
  if (h2_ && state_ == State::kProxying) consumeH2();
  if (state_ == State::kReadHead) {
    conn_->readDisable(false);
    if (!in_process_input_) processInput();
  }
}

void HttpSession::onUpstreamData(upstream::PooledConnection&) {
  if (state_ == State::kUpgraded) {
    relay_.upstreamData();
    return;
  }
  if (stream_idle_timer_.armed()) last_activity_ = worker_.loop().now();
  processUpstream();
}

void HttpSession::onStreamIdleTimeout() {
  if (state_ != State::kProxying) return;
  Duration quiet = worker_.loop().now() - last_activity_;
  if (quiet < stream_idle_timeout_) {
    stream_idle_timer_.arm(stream_idle_timeout_ - quiet);
    return;
  }
  onRequestTimeout();
}

void HttpSession::processUpstream() {
  while (upstream_ && state_ == State::kProxying && !resp_head_sent_) {
    Buffer& in = upstream_->input();
    if (in.empty()) return;
    http1::ParseResult r = resp_parser_.parse(in.view(), ex_.method_id);
    if (r.needMore()) return;
    if (r.failed()) {
      resetUpstream();
      localReply(502,
                 std::string("upstream sent an invalid response: ") + std::string(r.error.reason),
                 "UPE", !req_body_.finished());
      return;
    }
    const http1::ResponseHead& h = resp_parser_.head();
    if (h.interim) {
      in.consume(r.consumed);
      resp_parser_.reset();
      continue;  // 1xx: the client was answered 100 by us already
    }
    if (h.tunnel) {
      if (h.status == 101 && !upgrade_.empty()) {
        switchProtocols(h, r.consumed);
        return;
      }
      resetUpstream();
      localReply(502, "upstream switched protocols without being asked to", "UPE", true);
      return;
    }
    ex_.noteResponse(h.status);
    if (ex_.retry_policy) {
      const http::HeaderField* g = h.find(http::HeaderToken::kGrpcStatus);
      int grpc_status = g ? parseGrpcStatus(g->value) : -1;
      if (retryOn(upstream::AttemptOutcome::response(h.status, grpc_status))) return;
    }
    if (ex_.retries_done > 0 && h.status < 500) ex_.cluster->stats.rq_retry_success->inc();
    per_try_timer_.disarm();  // from here the request timeout bounds the response
    if (!sendResponseHead(h)) return;
    in.consume(r.consumed);
  }
  if (upstream_ && resp_head_sent_) forwardResponseBody();
}

bool HttpSession::sendResponseHead(const http1::ResponseHead& h) {
  ex_.status = h.status;
  resp_keep_alive_ = h.keep_alive;
  bool client_11 = version_ == http1::Version::kHttp11;
  // An HTTP/1.1 client gets chunked and close-delimited bodies chunked; an HTTP/1.0 client gets
  // them bare and the connection ends with the body.
  resp_body_.start(h.body_kind, h.content_length, /*chunk_output=*/client_11);
  if (h.body_kind == http1::BodyKind::kUntilClose) resp_keep_alive_ = false;
  if (!client_11 &&
      (h.body_kind == http1::BodyKind::kChunked || h.body_kind == http1::BodyKind::kUntilClose))
    client_keep_alive_ = false;

  Buffer& o = conn_->output();
  std::string& head = scratch_;  // reused: no allocation once warm
  head.clear();
  head.append(client_11 ? "HTTP/1.1 " : "HTTP/1.0 ");
  appendUint(head, static_cast<uint64_t>(h.status));
  head.push_back(' ');
  head.append(h.reason.empty() ? http::reasonPhrase(h.status) : h.reason);
  head.append("\r\n");
  bool keep_cl = h.body_kind == http1::BodyKind::kNone;  // HEAD / 304 keep their Content-Length
  auto service_ms = std::chrono::duration_cast<std::chrono::milliseconds>(worker_.loop().now() -
                                                                          ex_.upstream_sent);
  forEachResponseField(h, *listener_, keep_cl, static_cast<uint64_t>(service_ms.count()),
                       number_scratch_, [&](std::string_view name, std::string_view value) {
                         head.append(name).append(": ").append(value).append("\r\n");
                       });
  if (resp_body_.state() == http1::BodyRelay::State::kLength) {
    head.append("content-length: ");
    appendUint(head, resp_body_.remaining());
    head.append("\r\n");
  } else if (resp_body_.chunkedOutput()) {
    head.append("transfer-encoding: chunked\r\n");
  } else if (resp_body_.finished() && !keep_cl) {
    if (h.status >= 200 && h.status != 204 && h.status != 304) head.append("content-length: 0\r\n");
  }
  // A response that starts before the request body has fully arrived ends the connection: the
  // rest of that body must never be read as a next request.
  bool keep = client_keep_alive_ && !draining_ && req_body_.finished();
  if (!keep) client_keep_alive_ = false;
  if (!keep) {
    head.append("connection: close\r\n");
  } else if (!client_11) {
    head.append("connection: keep-alive\r\n");
  }
  head.append("\r\n");
  o.append(head);
  resp_head_sent_ = true;
  ex_.keepResponseHeaders(*listener_, h);
  return true;
}

bool HttpSession::forwardResponseBody() {
  Buffer& in = upstream_->input();
  http1::BodyRelay::Step step = resp_body_.relay(in, conn_->output());
  if (step.failed()) {
    // Mid-body: the client has the head already; all we can do is cut the connection.
    ex_.flags = "UPE";
    resetUpstream();
    conn_->flush();
    logAndCount(ex_.status);
    closeDownstream(true);
    return false;
  }
  conn_->flush();
  if (state_ != State::kProxying) return false;
  if (resp_body_.finished()) {
    finishExchange(resp_keep_alive_ && req_body_.finished() && in.empty());
    return false;
  }
  if (upstream_ && conn_->aboveHighWatermark()) upstream_->connection().readDisable(true);
  return true;
}

void HttpSession::onUpstreamClosed(upstream::PooledConnection& conn, net::CloseReason reason,
                                   std::string_view detail) {
  if (state_ == State::kUpgraded) {
    // Deliver what the upstream sent before it closed, then close the client.
    relay_.upstreamClosed(conn);
    endUpgrade("-", true);
    return;
  }
  upstream_ = nullptr;
  if (state_ != State::kProxying) return;
  if (resp_head_sent_ && resp_body_.state() == http1::BodyRelay::State::kUntilClose &&
      reason == net::CloseReason::kRemoteClosed) {
    resp_body_.endAtClose(conn_->output());
    conn_->flush();
    finishExchange(false);
    return;
  }
  if (resp_head_sent_) {
    ex_.flags = "UR";
    conn_->flush();
    logAndCount(ex_.status);
    closeDownstream(true);
    return;
  }
  if (reason == net::CloseReason::kHandshakeFailed) ex_.cluster->stats.ssl_error->inc();
  ex_.noteLocalFailure();
  if (retryOn(upstream::AttemptOutcome::failure(upstream::AttemptOutcome::Kind::kReset))) return;
  localReply(502, "upstream reset before response: " + std::string(detail), "UR",
             !req_body_.finished());
}

bool HttpSession::retryOn(const upstream::AttemptOutcome& outcome) {
  if (!ex_.retry_policy || resp_head_sent_ || state_ != State::kProxying) return false;
  // The body must be replayable: nothing of it sent yet (a connect failure), or all of it sent
  // and kept.
  bool nothing_sent =
      outcome.kind == upstream::AttemptOutcome::Kind::kConnectFailure && req_body_.bytes() == 0;
  if (!ex_.startRetry(outcome, nothing_sent || (req_body_.finished() && retry_body_ok_)))
    return false;
  resetUpstream();
  per_try_timer_.disarm();
  resp_parser_.reset();
  backoff_timer_.arm(ex_.backoff());
  return true;
}

void HttpSession::onBackoffDone() {
  if (state_ != State::kProxying) return;
  if (!ex_.pickRetryHost()) {
    localReply(503, "no healthy upstream", "UH", !req_body_.finished());
    return;
  }
  routeRequest();
}

void HttpSession::onPerTryTimeout() {
  if (state_ != State::kProxying || resp_head_sent_) return;
  if (ex_.cluster) ex_.cluster->stats.rq_timeout->inc();
  if (waiting_pool_) {
    ex_.cluster_rt->pool->cancel(*this);
    if (ex_.cluster_rt->h2pool) ex_.cluster_rt->h2pool->cancel(*this);
    waiting_pool_ = false;
    ex_.cluster->stats.rq_pending_active->sub();
  }
  if (retryOn(upstream::AttemptOutcome::failure(upstream::AttemptOutcome::Kind::kPerTryTimeout)))
    return;
  localReply(504, "upstream per-try timeout", "UT", !req_body_.finished());
}

void HttpSession::finishExchange(bool upstream_reusable) {
  if (h2_) {
    upstream::Http2Connection* h2 = h2_;
    h2_ = nullptr;
    h2->release(h2_id_, h2_unconsumed_);
    h2_unconsumed_ = 0;
  }
  // An Upgrade request that was not switched leaves the upstream in an unknown state (RFC 9110
  // §7.8 lets the server switch later): its connection is not reused.
  if (!upgrade_.empty()) upstream_reusable = false;
  request_timer_.disarm();
  stream_idle_timer_.disarm();
  per_try_timer_.disarm();
  if (upstream_) {
    upstream::PooledConnection* up = upstream_;
    upstream_ = nullptr;
    up->connection().readDisable(false);
    ex_.cluster_rt->pool->release(*up, upstream_reusable);
  }
  logAndCount(ex_.status);
  // A request body not read to its end leaves the connection mid-message: the next bytes are not
  // a request head, so the connection ends here.
  endExchange(client_keep_alive_ && !draining_ && req_body_.finished());
}

// After a response: close, or wait for (or parse an already pipelined) next request.
void HttpSession::endExchange(bool keep) {
  resetRequest();
  if (!keep) {
    closeDownstream(true);
    return;
  }
  state_ = State::kReadHead;
  armIdle();
  conn_->readDisable(false);
  if (!in_process_input_) processInput();  // else the caller's loop goes on
}

void HttpSession::resetUpstream() {
  if (h2_) {
    upstream::Http2Connection* h2 = h2_;
    h2_ = nullptr;
    h2->release(h2_id_, h2_unconsumed_);
    h2_unconsumed_ = 0;
  }
  h2_up_paused_ = false;
  if (upstream_) {
    upstream::PooledConnection* up = upstream_;
    upstream_ = nullptr;
    ex_.cluster_rt->pool->release(*up, false);
  }
}

void HttpSession::localReply(int status, std::string_view body, const char* flags, bool close,
                             bool add_newline) {
  request_timer_.disarm();
  stream_idle_timer_.disarm();
  per_try_timer_.disarm();
  backoff_timer_.disarm();
  if (waiting_pool_) {
    ex_.cluster_rt->pool->cancel(*this);
    if (ex_.cluster_rt->h2pool) ex_.cluster_rt->h2pool->cancel(*this);
    waiting_pool_ = false;
    ex_.cluster->stats.rq_pending_active->sub();
  }
  resetUpstream();
  ex_.status = status;
  ex_.flags = flags;
  bool keep = !close && client_keep_alive_ && !draining_;
  std::string out;
  out.reserve(160 + body.size());
  out.append(version_ == http1::Version::kHttp10 ? "HTTP/1.0 " : "HTTP/1.1 ");
  appendUint(out, static_cast<uint64_t>(status));
  out.push_back(' ');
  out.append(http::reasonPhrase(status));
  out.append("\r\ncontent-type: text/plain\r\nserver: ");
  out.append(listener_->server_name);
  out.append("\r\ncontent-length: ");
  appendUint(out, body.size() + (add_newline ? 1 : 0));
  out.append(keep ? "\r\n\r\n" : "\r\nconnection: close\r\n\r\n");
  if (ex_.method_id != http1::Method::kHead) {
    out.append(body);
    if (add_newline) out.push_back('\n');
    local_body_bytes_ = body.size() + (add_newline ? 1 : 0);
  }
  conn_->write(out);
  logAndCount(status);
  endExchange(keep);
}

void HttpSession::onRequestTimeout() {
  listener_->stats.rq_timeout->inc();
  if (ex_.cluster) ex_.cluster->stats.rq_timeout->inc();
  if (ex_.route_entry && ex_.route_entry->index() < listener_->route_stats.size())
    listener_->route_stats[ex_.route_entry->index()].rq_timeout->inc();
  if (resp_head_sent_) {
    ex_.flags = "UT";
    resetUpstream();
    logAndCount(ex_.status);
    closeDownstream(true);
    return;
  }
  localReply(504, "upstream request timeout", "UT", !req_body_.finished());
}

void HttpSession::onIdleTimeout() {
  if (state_ != State::kReadHead || ex_.active) return;
  listener_->stats.idle_timeout->inc();
  closeDownstream(true);
}

void HttpSession::logAndCount(int status) {
  if (!ex_.active) return;
  countBytes();
  ex_.status = status;
  // An upgraded connection counts what it relayed after the 101 as the exchange's body bytes.
  ex_.logAndCount(*listener_, *conn_, req_body_.bytes() + relay_.bytesUp(),
                  (resp_head_sent_ ? resp_body_.bytes() + h2_resp_bytes_ : local_body_bytes_) +
                      relay_.bytesDown());
}

void HttpSession::resetRequest() {
  ex_.reset();
  req_body_.reset();
  resp_body_.reset();
  local_body_bytes_ = 0;
  resp_head_sent_ = false;
  req_parser_.reset();
  resp_parser_.reset();
  retry_body_.clear();
  retry_body_ok_ = true;
  upgrade_.clear();
  h2_up_ = false;
  h2_req_ended_ = false;
  h2_resp_bytes_ = 0;
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 upstreams (protocol HTTP2): the request head was translated once (h2_req_), the body is
// decoded (chunked or not) and sent as DATA, the response head becomes an HTTP/1.1 head (chunked
// when the upstream gave no content-length), DATA is written to the client (chunk-encoded when
// chunked) and handed back to the upstream window once the client's output is below its high
// watermark. Response trailers are not passed to HTTP/1 clients.

void HttpSession::onH2Ready(upstream::Http2Connection& conn) {
  if (waiting_pool_) {
    waiting_pool_ = false;
    ex_.cluster->stats.rq_pending_active->sub();
  }
  if (conn.uses() == 0 && conn.secure()) ex_.cluster->stats.ssl_handshake->inc();
  ex_.upstream_sent = worker_.loop().now();
  bool replay = ex_.retries_done > 0 && !retry_body_.empty();
  bool end_now = req_body_.finished() && !replay;
  auto id = conn.submit(*this, h2_req_.view(), end_now);
  if (!id) {
    if (retryOn(upstream::AttemptOutcome::failure(upstream::AttemptOutcome::Kind::kRefusedStream)))
      return;
    localReply(503, "upstream refused the stream: " + id.error().message, "UR",
               !req_body_.finished());
    return;
  }
  h2_ = &conn;
  h2_id_ = *id;
  h2_req_ended_ = end_now;
  h2_up_paused_ = false;
  if (replay) {
    auto r = h2_->sendData(h2_id_, retry_body_, req_body_.finished());
    if (req_body_.finished()) h2_req_ended_ = true;
    if (r && !*r) h2_up_paused_ = true;
  }
  if (h2_ && !req_body_.finished()) forwardRequestBodyH2();
}

bool HttpSession::forwardRequestBodyH2() {
  Buffer& in = conn_->input();
  if (stream_idle_timer_.armed() && !in.empty()) last_activity_ = worker_.loop().now();
  if (!h2_) {
    if (in.size() > kMaxPipelinedInput) conn_->readDisable(true);
    return true;
  }
  if (h2_up_paused_) {
    if (!req_body_.finished()) conn_->readDisable(true);  // onH2Writable resumes
    return true;
  }
  h2_scratch_.clear();
  http1::BodyRelay::Step step = req_body_.relay(in, h2_scratch_);
  bool too_large = listener_->max_body_bytes && req_body_.bytes() > listener_->max_body_bytes;
  if (step.failed() || too_large) {
    (too_large ? listener_->stats.rq_too_large : listener_->stats.protocol_error)->inc();
    resetUpstream();
    if (resp_head_sent_) {
      ex_.flags = "DPE";
      logAndCount(ex_.status);
      closeDownstream(true);
    } else if (too_large) {
      localReply(413, "request body too large", "-", true);
    } else {
      localReply(step.error.status, step.error.reason, "DPE", true);
    }
    return false;
  }
  std::string_view data = h2_scratch_.view();
  if (ex_.retry_policy && retry_body_ok_ && !data.empty()) {
    if (retry_body_.size() + data.size() > upstream::kMaxRetryBodyBytes) {
      retry_body_ok_ = false;
      std::string().swap(retry_body_);
    } else {
      retry_body_.append(data);
    }
  }
  bool fin = req_body_.finished();
  if (!data.empty() || (fin && !h2_req_ended_)) {
    auto r = h2_->sendData(h2_id_, data, fin);
    if (fin) h2_req_ended_ = true;
    if (r && !*r) h2_up_paused_ = true;
  }
  h2_scratch_.clear();
  if (!h2_) return false;
  if (!fin) conn_->readDisable(h2_up_paused_);
  if (fin && in.size() > kMaxPipelinedInput) conn_->readDisable(true);
  return true;
}

void HttpSession::onH2Failure(net::CloseReason reason, std::string_view detail,
                              const net::Connection* conn) {
  onUpstreamFailure(reason, detail, conn);
}

void HttpSession::onH2Headers(const http2::HeaderBlock& block) {
  if (state_ != State::kProxying || !h2_) return;
  if (stream_idle_timer_.armed()) last_activity_ = worker_.loop().now();
  if (block.kind != http2::HeadersKind::kResponse) return;  // 1xx; trailers are dropped
  ex_.noteResponse(block.status);
  if (ex_.retry_policy) {
    int grpc_status = -1;
    for (const http::HeaderField& f : block.fields)
      if (f.token == http::HeaderToken::kGrpcStatus) grpc_status = parseGrpcStatus(f.value);
    if (retryOn(upstream::AttemptOutcome::response(block.status, grpc_status))) return;
  }
  if (ex_.retries_done > 0 && block.status < 500) ex_.cluster->stats.rq_retry_success->inc();
  per_try_timer_.disarm();
  http1::ResponseHead h = http2::responseToHttp1(block);
  if (ex_.method_id == http1::Method::kHead || block.status == 204 || block.status == 304)
    h.body_kind = http1::BodyKind::kNone;
  sendResponseHead(h);
  conn_->flush();
}

void HttpSession::onH2Data(std::string_view data) {
  if (state_ != State::kProxying || !resp_head_sent_ || !h2_) {
    if (h2_) h2_->consume(h2_id_, data.size());
    return;
  }
  if (stream_idle_timer_.armed()) last_activity_ = worker_.loop().now();
  if (resp_body_.state() == http1::BodyRelay::State::kNone) {
    h2_->consume(h2_id_, data.size());  // HEAD / 204 / 304: no body goes to the client
    return;
  }
  Buffer& out = conn_->output();
  if (resp_body_.chunkedOutput()) {
    std::string chunk;
    http1::appendChunk(chunk, data);
    out.append(chunk);
  } else {
    out.append(data);
  }
  h2_resp_bytes_ += data.size();
  h2_unconsumed_ += data.size();
  conn_->flush();
  consumeH2();
}

void HttpSession::consumeH2() {
  if (!h2_ || h2_unconsumed_ == 0 || conn_->aboveHighWatermark()) return;
  size_t n = h2_unconsumed_;
  h2_unconsumed_ = 0;
  h2_->consume(h2_id_, n);
}

void HttpSession::onH2End() {
  if (state_ != State::kProxying || !resp_head_sent_) return;
  if (resp_body_.chunkedOutput()) {
    std::string last;
    http1::appendLastChunk(last);
    conn_->output().append(last);
  }
  conn_->flush();
  finishExchange(true);
}

void HttpSession::onH2Close(http2::CloseCause cause, uint32_t, std::string_view detail) {
  h2_ = nullptr;  // the stream is gone; nothing to release
  h2_unconsumed_ = 0;
  if (state_ != State::kProxying) return;
  if (resp_head_sent_) {
    ex_.flags = "UR";
    conn_->flush();
    logAndCount(ex_.status);
    closeDownstream(true);
    return;
  }
  ex_.noteLocalFailure();
  bool refused = cause == http2::CloseCause::kRefused;
  if (retryOn(upstream::AttemptOutcome::failure(refused
                                                    ? upstream::AttemptOutcome::Kind::kRefusedStream
                                                    : upstream::AttemptOutcome::Kind::kReset)))
    return;
  if (cause == http2::CloseCause::kHeadersTooLarge) {
    localReply(502, "upstream response headers too large", "UPE", !req_body_.finished());
  } else {
    localReply(refused ? 503 : 502, "upstream reset before response: " + std::string(detail), "UR",
               !req_body_.finished());
  }
}

void HttpSession::switchProtocols(const http1::ResponseHead& h, size_t head_len) {
  ex_.noteResponse(h.status);
  if (ex_.retries_done > 0) ex_.cluster->stats.rq_retry_success->inc();
  // From here the connection is a relay: no request timeouts, only the relay's idle timeout.
  request_timer_.disarm();
  stream_idle_timer_.disarm();
  per_try_timer_.disarm();
  ex_.status = h.status;
  std::string& head = scratch_;
  head.clear();
  head.append("HTTP/1.1 101 ");
  head.append(h.reason.empty() ? http::reasonPhrase(101) : h.reason);
  head.append("\r\n");
  auto service_ms = std::chrono::duration_cast<std::chrono::milliseconds>(worker_.loop().now() -
                                                                          ex_.upstream_sent);
  forEachResponseField(h, *listener_, false, static_cast<uint64_t>(service_ms.count()),
                       number_scratch_, [&](std::string_view name, std::string_view value) {
                         head.append(name).append(": ").append(value).append("\r\n");
                       });
  // Connection and Upgrade are hop-by-hop: the proxy states the switch itself.
  head.append("connection: upgrade\r\n");
  if (const http::HeaderField* u = h.find(http::HeaderToken::kUpgrade))
    head.append("upgrade: ").append(u->value).append("\r\n");
  head.append("\r\n");
  ex_.keepResponseHeaders(*listener_, h);
  resp_head_sent_ = true;
  upstream::PooledConnection* up = upstream_;
  upstream_ = nullptr;  // the relay holds it now
  up->input().consume(head_len);
  conn_->output().append(head);
  state_ = State::kUpgraded;
  listener_->stats.upgrades_total->inc();
  listener_->stats.upgrades_active->add();
  upgrade_counted_ = true;
  Duration idle = stream_idle_timeout_.count() > 0 ? stream_idle_timeout_ : listener_->idle_timeout;
  conn_->flush();
  // Bytes either side sent early (the client right after its request, the server right after
  // its 101) are relayed at once.
  relay_.start(*conn_, *ex_.cluster_rt->pool, *up, idle);
}

void HttpSession::endUpgrade(const char* flags, bool flush) {
  relay_.stop();
  if (upgrade_counted_) {
    upgrade_counted_ = false;
    listener_->stats.upgrades_active->sub();
  }
  ex_.flags = flags;
  logAndCount(ex_.status);
  closeDownstream(flush);
}

void HttpSession::onUpgradeIdle() {
  if (state_ != State::kUpgraded) return;
  listener_->stats.idle_timeout->inc();
  endUpgrade("SI", false);
}

}  // namespace weft::proxy
