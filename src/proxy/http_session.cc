#include "proxy/http_session.h"

#include <charconv>
#include <cstdio>
#include <cstring>

#include "common/log.h"
#include "net/tls/tls_transport.h"
#include "proxy/access_log.h"
#include "proxy/worker.h"

namespace weft::proxy {

using AccessLogHeaders = HeaderSource;

namespace {

constexpr size_t kMaxPipelinedInput = 64 << 10;  // stop reading ahead of the current exchange

const char* reasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 417:
      return "Expectation Failed";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

void appendUint(std::string& out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

int statusClass(int status) { return status >= 100 && status < 600 ? status / 100 - 1 : -1; }

// Writes a version-4 UUID from the worker's generator into `out` (x-request-id). No formatting
// library on the request path: 36 characters from two random words.
void makeRequestId(upstream::Random& r, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  uint64_t a = r.next(), b = r.next();
  a = (a & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // variant 10
  char s[36];
  int k = 0;
  for (int i = 15; i >= 0; --i) {
    s[k++] = kHex[(a >> (i * 4)) & 0xf];
    if (k == 8 || k == 13) s[k++] = '-';
  }
  s[k++] = '-';
  for (int i = 15; i >= 0; --i) {
    s[k++] = kHex[(b >> (i * 4)) & 0xf];
    if (k == 23) s[k++] = '-';
  }
  out.assign(s, 36);
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
      per_try_timer_(worker.loop().timers(), [this] { onPerTryTimeout(); }),
      backoff_timer_(worker.loop().timers(), [this] { onBackoffDone(); }) {
  conn_->setCallbacks(this);
  listener_->stats.cx_total->inc();
  listener_->stats.cx_active->add();
  armIdle();
}

HttpSession::~HttpSession() {
  if (waiting_pool_ && cluster_rt_) cluster_rt_->pool->cancel(*this);
  if (upstream_ && cluster_rt_) cluster_rt_->pool->release(*upstream_, false);
  if (host_ && cluster_rt_ && cluster_rt_->lb) cluster_rt_->lb->onRequestEnd(*host_);
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
    cluster_rt_->pool->cancel(*this);
    waiting_pool_ = false;
    cluster_->stats.rq_pending_active->sub();
  }
  resetUpstream();
  if (has_request_) {
    // The client went away mid-exchange: logged as Envoy does (DC, status so far or 0).
    flags_ = "DC";
    logAndCount(status_);
  }
  cluster_rt_ = nullptr;
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
    http1::ParseResult r = req_parser_.parse(in.view());
    if (r.needMore()) return;
    if (r.failed()) {
      listener_->stats.protocol_error->inc();
      if (r.error.status == 431) listener_->stats.rq_too_large->inc();
      has_request_ = true;
      start_ = worker_.loop().now();
      start_wall_ = worker_.loop().time().systemNow();
      listener_->stats.rq_total->inc();
      listener_->stats.rq_active->add();
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
  // which the session then holds until its next request, so route_ stays valid whatever
  // snapshot comes meanwhile. Metrics are the same objects across versions (same names).
  const ListenerInfo* live = worker_.snapshot().listener(listener_->name);
  if (live && live != listener_.get()) listener_ = worker_.snapshot().listenerPtr(listener_->name);
  idle_timer_.disarm();
  has_request_ = true;
  start_ = worker_.loop().now();
  start_wall_ = worker_.loop().time().systemNow();
  listener_->stats.rq_total->inc();
  listener_->stats.rq_active->add();
  method_.assign(h.method);
  method_id_ = h.method_id;
  path_.assign(h.target);
  authority_.assign(h.host);
  version_ = h.version;
  client_keep_alive_ = h.keep_alive && !draining_;
  if (auto* f = h.find(http::HeaderToken::kXRequestId)) request_id_.assign(f->value);
  for (const std::string& name : listener_->log_request_headers) {
    if (auto* f = h.find(name)) logged_request_headers_.emplace_back(name, std::string(f->value));
  }
  if (request_id_.empty()) makeRequestId(worker_.random(), request_id_);

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

  // Route.
  const ListenerInfo& li = *listener_;
  http::RequestView view;
  view.method = h.method;
  view.path = h.path;
  view.query = h.query;
  view.host = h.host;
  std::span<const http::HeaderField> fields(h.headers.data(), h.headers.size());
  view.headers = http::HeaderLookup(fields);
  route_ = li.router ? li.router->route(view) : nullptr;
  if (!route_) {
    conn_->input().consume(head_len);
    li.stats.no_route->inc();
    localReply(404, "no route matched this request", "NR", has_body);
    return;
  }
  if (route_->kind() == http::RouteEntry::Kind::kDirectResponse) {
    conn_->input().consume(head_len);
    localReply(static_cast<int>(route_->directStatus()), route_->directBody(), "-", has_body,
               /*add_newline=*/false);
    return;
  }
  std::string_view cluster_name = route_->pickCluster(worker_.random().next());
  cluster_rt_ = worker_.cluster(cluster_name);
  if (!cluster_rt_) {
    conn_->input().consume(head_len);
    localReply(503, "no cluster named " + std::string(cluster_name), "NC", has_body);
    return;
  }
  cluster_ = cluster_rt_->info;
  host_set_ = cluster_->hosts;
  cluster_->stats.rq_total->inc();
  cluster_->stats.rq_active->add();
  rq_guard_ = cluster_rt_->breaker->acquire(upstream::Resource::kRequests);
  if (!rq_guard_) {
    conn_->input().consume(head_len);
    localReply(503, upstream::CircuitBreaker::overflowMessage(upstream::Resource::kRequests),
               upstream::CircuitBreaker::kOverflowFlag.data(), has_body);
    return;
  }
  if (route_->index() < li.retry_policies.size() && li.retry_policies[route_->index()].enabled())
    retry_policy_ = &li.retry_policies[route_->index()];
  host_ = cluster_rt_->lb->pick();
  if (!host_) {
    conn_->input().consume(head_len);
    localReply(503, "no healthy upstream", "UH", has_body);
    return;
  }
  cluster_rt_->lb->onRequestStart(*host_);
  upstream_host_ = host_->addressString();

  // Serialize the upstream request head now: the views into the input buffer die with it.
  std::string& out = upstream_head_;
  out.clear();
  out.append(h.method).push_back(' ');
  std::string_view pq = h.pathAndQuery();
  std::string rewritten;
  if (!route_->prefixRewrite().empty()) {
    rewritten = route_->rewritePath(pq);
    pq = rewritten;
  }
  if (pq.empty() || pq[0] == '?') out.push_back('/');
  out.append(pq).append(" HTTP/1.1\r\n");
  bool have_request_id = false;
  for (const http::HeaderField& f : h.headers) {
    if (h.isHopByHop(f)) continue;
    switch (f.token) {
      case http::HeaderToken::kHost:
      case http::HeaderToken::kContentLength:
      case http::HeaderToken::kExpect:
      case http::HeaderToken::kXForwardedProto:
        continue;
      case http::HeaderToken::kXRequestId:
        have_request_id = true;
        break;
      default:
        break;
    }
    out.append(f.name).append(": ").append(f.value).append("\r\n");
  }
  out.append("host: ");
  out.append(route_->hostRewrite().empty() ? std::string_view(h.host)
                                           : std::string_view(route_->hostRewrite()));
  out.append("\r\n");
  if (!have_request_id) out.append("x-request-id: ").append(request_id_).append("\r\n");
  out.append(listener_->secure ? "x-forwarded-proto: https\r\n" : "x-forwarded-proto: http\r\n");
  if (req_body_.state() == http1::BodyRelay::State::kLength) {
    out.append("content-length: ");
    appendUint(out, req_body_.remaining());
    out.append("\r\n");
  } else if (req_body_.state() == http1::BodyRelay::State::kChunked) {
    out.append("transfer-encoding: chunked\r\n");
  } else if (h.body_kind == http1::BodyKind::kContentLength) {
    out.append("content-length: 0\r\n");
  }
  out.append("\r\n");
  bool expect_continue = h.expect_100_continue && has_body;
  conn_->input().consume(head_len);

  state_ = State::kProxying;
  Duration timeout = route_->timeout().value_or(listener_->request_timeout);
  stream_idle_timeout_ = route_->idleTimeout().value_or(Duration(0));
  if (timeout.count() > 0) request_timer_.arm(timeout);
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
  if (retry_policy_ && retry_policy_->perTryTimeout().count() > 0)
    per_try_timer_.arm(retry_policy_->perTryTimeout());
  switch (cluster_rt_->pool->acquire(*host_, *this, ready, error)) {
    case upstream::ConnPool::Acquire::kReady:
      onUpstreamReady(*ready);
      return;
    case upstream::ConnPool::Acquire::kPending:
      waiting_pool_ = true;
      cluster_->stats.rq_pending_active->add();
      return;
    case upstream::ConnPool::Acquire::kOverflow:
      cluster_->stats.rq_pending_overflow->inc();
      localReply(503,
                 upstream::CircuitBreaker::overflowMessage(upstream::Resource::kPendingRequests),
                 upstream::CircuitBreaker::kOverflowFlag.data(), !req_body_.finished());
      return;
    case upstream::ConnPool::Acquire::kFailed:
      cluster_->stats.cx_connect_fail->inc();
      noteLocalFailure();
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
    cluster_->stats.rq_pending_active->sub();
  }
  upstream_ = &conn;
  if (conn.uses() == 1 && conn.connection().peer().secure) cluster_->stats.ssl_handshake->inc();
  upstream_sent_ = worker_.loop().now();
  conn.connection().output().append(upstream_head_);
  if (!req_body_.finished()) {
    if (!forwardRequestBody()) return;
  } else if (retries_done_ > 0) {
    conn.connection().output().append(retry_body_);  // a retry re-sends the whole body
  }
  if (upstream_) upstream_->connection().flush();
}

void HttpSession::onUpstreamFailure(net::CloseReason reason, std::string_view detail,
                                    const net::Connection* conn) {
  waiting_pool_ = false;
  cluster_->stats.rq_pending_active->sub();
  cluster_->stats.cx_connect_fail->inc();
  if (reason == net::CloseReason::kHandshakeFailed) {
    if (conn) {
      // An upstream without a certificate is a verification error like any other.
      const ClusterStats& st = cluster_->stats;
      countTlsFailure(conn->transport(), *st.ssl_error, *st.ssl_verify_error, *st.ssl_verify_error,
                      *st.ssl_san);
    } else {
      cluster_->stats.ssl_error->inc();
    }
  }
  noteLocalFailure();
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
  if (retry_policy_ && retry_body_ok_) {
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
      flags_ = "DPE";
      logAndCount(status_);
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
    http1::ParseResult r = resp_parser_.parse(in.view(), method_id_);
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
    if (cluster_rt_->outlier) cluster_rt_->outlier->onResponse(*host_, h.status);
    if (retry_policy_) {
      int grpc_status = -1;
      if (const http::HeaderField* g = h.find(http::HeaderToken::kGrpcStatus)) {
        int v = 0;
        auto [p, ec] = std::from_chars(g->value.data(), g->value.data() + g->value.size(), v);
        if (ec == std::errc() && p == g->value.data() + g->value.size()) grpc_status = v;
      }
      if (retryOn(upstream::AttemptOutcome::response(h.status, grpc_status))) return;
    }
    if (retries_done_ > 0 && h.status < 500) cluster_->stats.rq_retry_success->inc();
    per_try_timer_.disarm();  // from here the request timeout bounds the response
    if (!sendResponseHead(h)) return;
    in.consume(r.consumed);
  }
  if (upstream_ && resp_head_sent_) forwardResponseBody();
}

bool HttpSession::sendResponseHead(const http1::ResponseHead& h) {
  status_ = h.status;
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
  head.append(h.reason.empty() ? std::string_view(reasonPhrase(h.status)) : h.reason);
  head.append("\r\n");
  bool keep_cl = h.body_kind == http1::BodyKind::kNone;  // HEAD / 304 keep their Content-Length
  for (const http::HeaderField& f : h.headers) {
    if (h.isHopByHop(f)) continue;
    if (f.token == http::HeaderToken::kContentLength && !keep_cl) continue;
    if (f.token == http::HeaderToken::kServer && !listener_->preserve_upstream_server) continue;
    if (f.name.size() == 28 && http::equalsIgnoreCase(f.name, "x-weft-upstream-service-time"))
      continue;
    head.append(f.name).append(": ").append(f.value).append("\r\n");
  }
  if (!listener_->preserve_upstream_server || !h.find(http::HeaderToken::kServer)) {
    head.append("server: ").append(listener_->server_name).append("\r\n");
  }
  auto service_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(worker_.loop().now() - upstream_sent_);
  head.append("x-weft-upstream-service-time: ");
  appendUint(head, static_cast<uint64_t>(service_ms.count()));
  head.append("\r\n");
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
  for (const std::string& name : listener_->log_response_headers) {
    if (auto* f = h.find(name)) logged_response_headers_.emplace_back(name, std::string(f->value));
  }
  return true;
}

bool HttpSession::forwardResponseBody() {
  Buffer& in = upstream_->input();
  http1::BodyRelay::Step step = resp_body_.relay(in, conn_->output());
  if (step.failed()) {
    // Mid-body: the client has the head already; all we can do is cut the connection.
    flags_ = "UPE";
    resetUpstream();
    conn_->flush();
    logAndCount(status_);
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
    flags_ = "UR";
    conn_->flush();
    logAndCount(status_);
    closeDownstream(true);
    return;
  }
  if (reason == net::CloseReason::kHandshakeFailed) cluster_->stats.ssl_error->inc();
  noteLocalFailure();
  if (retryOn(upstream::AttemptOutcome::failure(upstream::AttemptOutcome::Kind::kReset))) return;
  localReply(502, "upstream reset before response: " + std::string(detail), "UR",
             !req_body_.finished());
}

void HttpSession::noteLocalFailure() {
  if (cluster_rt_ && cluster_rt_->outlier && host_) cluster_rt_->outlier->onLocalFailure(*host_);
}

bool HttpSession::retryOn(const upstream::AttemptOutcome& outcome) {
  if (!retry_policy_ || resp_head_sent_ || state_ != State::kProxying) return false;
  // The body must be replayable: nothing of it sent yet (a connect failure), or all of it sent
  // and kept.
  bool nothing_sent =
      outcome.kind == upstream::AttemptOutcome::Kind::kConnectFailure && req_body_.bytes() == 0;
  if (!nothing_sent && !(req_body_.finished() && retry_body_ok_)) return false;
  if (retry_policy_->decide(outcome, retries_done_) != upstream::RetryDecision::kRetry)
    return false;
  if (!retry_guard_) {
    retry_guard_ = cluster_rt_->breaker->acquire(upstream::Resource::kRetries);
    if (!retry_guard_) return false;  // the retry budget is spent (counted)
  }
  resetUpstream();
  per_try_timer_.disarm();
  if (host_) {
    cluster_rt_->lb->onRequestEnd(*host_);
    tried_.push_back(host_->address());
    host_ = nullptr;
  }
  ++retries_done_;
  cluster_->stats.rq_retry->inc();
  resp_parser_.reset();
  backoff_timer_.arm(retry_policy_->backoff(retries_done_, worker_.random()));
  return true;
}

void HttpSession::onBackoffDone() {
  if (state_ != State::kProxying) return;
  host_set_ = cluster_rt_->info->hosts;
  host_ = upstream::pickForRetry(*cluster_rt_->lb, tried_);
  if (!host_) {
    localReply(503, "no healthy upstream", "UH", !req_body_.finished());
    return;
  }
  cluster_rt_->lb->onRequestStart(*host_);
  upstream_host_ = host_->addressString();
  routeRequest();
}

void HttpSession::onPerTryTimeout() {
  if (state_ != State::kProxying || resp_head_sent_) return;
  if (cluster_) cluster_->stats.rq_timeout->inc();
  if (waiting_pool_) {
    cluster_rt_->pool->cancel(*this);
    waiting_pool_ = false;
    cluster_->stats.rq_pending_active->sub();
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
    cluster_rt_->pool->release(*up, upstream_reusable);
  }
  logAndCount(status_);
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
    cluster_rt_->pool->release(*up, false);
  }
}

void HttpSession::localReply(int status, std::string_view body, const char* flags, bool close,
                             bool add_newline) {
  request_timer_.disarm();
  stream_idle_timer_.disarm();
  per_try_timer_.disarm();
  backoff_timer_.disarm();
  if (waiting_pool_) {
    cluster_rt_->pool->cancel(*this);
    waiting_pool_ = false;
    cluster_->stats.rq_pending_active->sub();
  }
  resetUpstream();
  status_ = status;
  flags_ = flags;
  bool keep = !close && client_keep_alive_ && !draining_;
  std::string out;
  out.reserve(160 + body.size());
  out.append(version_ == http1::Version::kHttp10 ? "HTTP/1.0 " : "HTTP/1.1 ");
  appendUint(out, static_cast<uint64_t>(status));
  out.push_back(' ');
  out.append(reasonPhrase(status));
  out.append("\r\ncontent-type: text/plain\r\nserver: ");
  out.append(listener_->server_name);
  out.append("\r\ncontent-length: ");
  appendUint(out, body.size() + (add_newline ? 1 : 0));
  out.append(keep ? "\r\n\r\n" : "\r\nconnection: close\r\n\r\n");
  if (method_id_ != http1::Method::kHead) {
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
  if (cluster_) cluster_->stats.rq_timeout->inc();
  if (route_ && route_->index() < listener_->route_stats.size())
    listener_->route_stats[route_->index()].rq_timeout->inc();
  if (resp_head_sent_) {
    flags_ = "UT";
    resetUpstream();
    logAndCount(status_);
    closeDownstream(true);
    return;
  }
  localReply(504, "upstream request timeout", "UT", !req_body_.finished());
}

void HttpSession::onIdleTimeout() {
  if (state_ != State::kReadHead || has_request_) return;
  listener_->stats.idle_timeout->inc();
  closeDownstream(true);
}

void HttpSession::logAndCount(int status) {
  if (!has_request_) return;
  countBytes();
  MonoTime now = worker_.loop().now();
  Duration elapsed = now - start_;
  int cls = statusClass(status);
  listener_->stats.rq_active->sub();
  if (cls >= 0) listener_->stats.rq_xx[cls]->inc();
  listener_->stats.rq_time->record(elapsed);
  if (cluster_ && (upstream_sent_ >= start_)) {
    if (cls >= 0) cluster_->stats.rq_xx[cls]->inc();
    cluster_->stats.rq_time->record(now - upstream_sent_);
  }
  if (cluster_) cluster_->stats.rq_active->sub();
  if (route_ && route_->index() < listener_->route_stats.size()) {
    const RouteStats& rs = listener_->route_stats[route_->index()];
    rs.rq_total->inc();
    if (cls >= 0) rs.rq_xx[cls]->inc();
    rs.rq_time->record(elapsed);
  }
  if (host_ && cluster_rt_) {
    cluster_rt_->lb->onRequestEnd(*host_);
    host_ = nullptr;
  }
  if (!listener_->access_logs.empty()) {
    // The headers an access log may ask for, from the copies kept for it.
    struct Kept final : AccessLogHeaders {
      const std::vector<std::pair<std::string_view, std::string>>& list;
      const std::string* request_id;  // the id we generated counts as a request header
      Kept(const std::vector<std::pair<std::string_view, std::string>>& l, const std::string* id)
          : list(l), request_id(id) {}
      std::optional<std::string_view> get(std::string_view name) const override {
        for (const auto& [n, v] : list)
          if (n == name) return std::string_view(v);
        if (request_id && name == "x-request-id" && !request_id->empty())
          return std::string_view(*request_id);
        return std::nullopt;
      }
    } kept_request(logged_request_headers_, &request_id_),
        kept_response(logged_response_headers_, nullptr);
    std::string remote = conn_->remoteAddress().toString();
    std::string local = conn_->localAddr().toString();
    AccessLogEntry e;
    e.start_time = start_wall_;
    e.duration = elapsed;
    e.method = method_;
    e.path = path_;
    e.authority = authority_;
    e.scheme = listener_->secure ? "https" : "http";
    e.protocol = version_ == http1::Version::kHttp10 ? "HTTP/1.0" : "HTTP/1.1";
    e.response_code = status;
    e.response_flags = std::string_view(flags_) == "-" ? std::string_view() : flags_;
    e.bytes_received = req_body_.bytes();
    e.bytes_sent = resp_head_sent_ ? resp_body_.bytes() : local_body_bytes_;
    e.upstream_host = upstream_host_;
    if (cluster_) e.upstream_cluster = cluster_->name;
    if (route_) e.route_name = route_->name();
    e.downstream_remote_address = remote;
    e.downstream_local_address = local;
    e.requested_server_name = conn_->peer().sni;
    if (upstream_sent_ >= start_ && upstream_sent_ != MonoTime{})
      e.upstream_service_time = now - upstream_sent_;
    e.request_headers = &kept_request;
    e.response_headers = &kept_response;
    for (auto& sink : listener_->access_logs) sink->log(e);
  }
  has_request_ = false;
}

void HttpSession::resetRequest() {
  has_request_ = false;
  route_ = nullptr;
  cluster_.reset();
  cluster_rt_ = nullptr;
  host_set_.reset();
  host_ = nullptr;
  req_body_.reset();
  resp_body_.reset();
  local_body_bytes_ = 0;
  resp_head_sent_ = false;
  status_ = 0;
  flags_ = "-";
  request_id_.clear();
  logged_request_headers_.clear();
  logged_response_headers_.clear();
  upstream_host_.clear();
  upstream_sent_ = MonoTime{};
  req_parser_.reset();
  resp_parser_.reset();
  rq_guard_.reset();
  retry_guard_.reset();
  retry_policy_ = nullptr;
  retries_done_ = 0;
  retry_body_.clear();
  retry_body_ok_ = true;
  tried_.clear();
}

}  // namespace weft::proxy
