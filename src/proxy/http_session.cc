#include "proxy/http_session.h"

#include <charconv>
#include <cstdio>
#include <cstring>

#include "common/log.h"
#include "http/http2/codec.h"
#include "http/status.h"
#include "net/tls/tls_transport.h"
#include "proxy/access_log.h"
#include "proxy/http2_session.h"
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

// Counts a failed TLS handshake and, by the transport's verification failure, its kind.
void countTlsFailure(const net::Transport& t, stats::Counter& error, stats::Counter& no_cert,
                     stats::Counter& verify_error, stats::Counter& san) {
  error.inc();
  switch (net::tls::verifyFailureOf(t)) {
    case net::tls::VerifyFailure::kNoPeerCertificate:
      no_cert.inc();
      break;
    case net::tls::VerifyFailure::kSanMismatch:
      san.inc();
      break;
    case net::tls::VerifyFailure::kUntrusted:
    case net::tls::VerifyFailure::kExpired:
      verify_error.inc();
      break;
    default:
      break;
  }
}

}  // namespace

HttpSession::HttpSession(Worker& worker, std::unique_ptr<net::Connection> conn,
                         std::shared_ptr<const ListenerInfo> listener)
    : worker_(worker),
      conn_(std::move(conn)),
      listener_(std::move(listener)),
      req_parser_(http1::ParseLimits{listener_->max_head_bytes, 100}),
      resp_parser_(http1::ParseLimits{64 << 10, 200}),
      request_timer_(worker.loop().timers(), [this] { onRequestTimeout(); }),
      idle_timer_(worker.loop().timers(), [this] { onIdleTimeout(); }),
      stream_idle_timer_(worker.loop().timers(), [this] { onStreamIdleTimeout(); }),
      ex_(worker),
      per_try_timer_(worker.loop().timers(), [this] { onPerTryTimeout(); }),
      backoff_timer_(worker.loop().timers(), [this] { onBackoffDone(); }) {
  conn_->setCallbacks(this);
  listener_->stats.cx_total->inc();
  listener_->stats.cx_active->add();
  armIdle();
}

HttpSession::~HttpSession() {
  if (handed_over_) return;  // the connection and its counts belong to the Http2Session now
  if (waiting_pool_ && ex_.cluster_rt) ex_.cluster_rt->pool->cancel(*this);
  if (upstream_ && ex_.cluster_rt) ex_.cluster_rt->pool->release(*upstream_, false);
  if (ex_.host && ex_.cluster_rt && ex_.cluster_rt->lb) ex_.cluster_rt->lb->onRequestEnd(*ex_.host);
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
  if (c.peer().secure) listener_->stats.ssl_handshake->inc();
  if (c.peer().alpn == "h2") switchToHttp2();
}

void HttpSession::switchToHttp2() {
  handed_over_ = true;
  state_ = State::kClosed;
  request_timer_.disarm();
  idle_timer_.disarm();
  auto next = std::make_unique<Http2Session>(worker_, std::move(conn_), listener_, counted_rx_,
                                             counted_tx_);
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
    waiting_pool_ = false;
    ex_.cluster->stats.rq_pending_active->sub();
  }
  resetUpstream();
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
  if (reason == net::CloseReason::kHandshakeFailed) {
    countTlsFailure(conn_->transport(), *listener_->stats.ssl_error, *listener_->stats.ssl_no_cert,
                    *listener_->stats.ssl_verify_error, *listener_->stats.ssl_san);
    log::debug("listener", "TLS handshake failed: " + std::string(detail));
  }
  teardown();
}

void HttpSession::onData(net::Connection&) { processInput(); }

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
  if (h.upgrade || h.method_id == http1::Method::kConnect) {
    conn_->input().consume(head_len);
    localReply(501, "upgrade and CONNECT are not supported on this listener", "-", true);
    return;
  }
  if (!listener_->authorizes(conn_->peer())) {
    conn_->input().consume(head_len);
    localReply(403, "RBAC: access denied", "RBAC", has_body, false);
    return;
  }
  if (std::optional<LocalReply> reply = ex_.route(*listener_, h)) {
    conn_->input().consume(head_len);
    localReply(reply->status, reply->body, reply->flags, has_body, reply->add_newline);
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
  ex_.appendUpstreamHead(upstream_head_, *listener_, h, framing, req_body_.remaining());
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
  switch (ex_.acquire(*this, ready, error)) {
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

void HttpSession::onUpstreamDrained(upstream::PooledConnection&) {
  if (!req_body_.finished() && state_ == State::kProxying) {
    conn_->readDisable(false);
  }
}

void HttpSession::onWriteDrained(net::Connection&) {
  if (upstream_ && state_ == State::kProxying) upstream_->connection().readDisable(false);
  if (state_ == State::kReadHead) {
    conn_->readDisable(false);
    if (!in_process_input_) processInput();
  }
}

void HttpSession::onUpstreamData(upstream::PooledConnection&) {
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
      resetUpstream();
      localReply(502, "upstream switched protocols, which this listener does not support", "UPE",
                 true);
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

void HttpSession::onUpstreamClosed(upstream::PooledConnection&, net::CloseReason reason,
                                   std::string_view detail) {
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
    waiting_pool_ = false;
    ex_.cluster->stats.rq_pending_active->sub();
  }
  if (retryOn(upstream::AttemptOutcome::failure(upstream::AttemptOutcome::Kind::kPerTryTimeout)))
    return;
  localReply(504, "upstream per-try timeout", "UT", !req_body_.finished());
}

void HttpSession::finishExchange(bool upstream_reusable) {
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
  ex_.logAndCount(*listener_, *conn_, req_body_.bytes(),
                  resp_head_sent_ ? resp_body_.bytes() : local_body_bytes_);
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
}

}  // namespace weft::proxy
