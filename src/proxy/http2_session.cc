#include "proxy/http2_session.h"

#include <string>
#include <vector>

#include "common/log.h"
#include "http/http1/body_relay.h"
#include "http/http1/chunked.h"
#include "http/http2/translate.h"
#include "proxy/exchange.h"
#include "proxy/tls_stats.h"
#include "proxy/worker.h"
#include "upstream/circuit_breaker.h"
#include "upstream/pool.h"

namespace weft::proxy {

// One HTTP/2 stream = one exchange. Lives from its request HEADERS to onStreamClose (or the
// connection's end); destroyed through the loop's deferred deletion, never inside its own call.
class Http2Session::Stream final : public upstream::PoolUser,
                                   public upstream::Http2StreamUser,
                                   public net::Deferrable {
 public:
  Stream(Http2Session& s, int32_t id)
      : session_(s),
        id_(id),
        ex_(s.worker_),
        resp_parser_(http1::ParseLimits{64 << 10, 200}),
        request_timer_(s.worker_.loop().timers(), [this] { onRequestTimeout(); }),
        stream_idle_timer_(s.worker_.loop().timers(), [this] { onStreamIdleTimeout(); }),
        per_try_timer_(s.worker_.loop().timers(), [this] { onPerTryTimeout(); }),
        backoff_timer_(s.worker_.loop().timers(), [this] { onBackoffDone(); }) {}

  ~Stream() { abort(); }

  void start(const http2::HeaderBlock& block);
  void requestData(std::string_view data);
  void requestEnd();
  // Request trailers (forwarded to HTTP/2 upstreams; dropped for HTTP/1 ones).
  void requestTrailers(const http2::HeaderBlock& block);
  void writable();
  // The codec closed the stream (the last event for it).
  void closed(http2::CloseCause cause);
  // The exchange ends now without an answer (client or connection gone): upstream cancelled,
  // logged with DC if it was still in flight.
  void abort();

  // upstream::PoolUser
  void onUpstreamReady(upstream::PooledConnection& conn) override;
  void onUpstreamFailure(net::CloseReason reason, std::string_view detail,
                         const net::Connection* conn) override;
  void onUpstreamData(upstream::PooledConnection& conn) override;
  void onUpstreamDrained(upstream::PooledConnection& conn) override;
  void onUpstreamClosed(upstream::PooledConnection& conn, net::CloseReason reason,
                        std::string_view detail) override;

  // upstream::Http2StreamUser (protocol HTTP2 clusters)
  void onH2Ready(upstream::Http2Connection& conn) override;
  void onH2Failure(net::CloseReason reason, std::string_view detail,
                   const net::Connection* conn) override;
  void onH2Headers(const http2::HeaderBlock& block) override;
  void onH2Data(std::string_view data) override;
  void onH2End() override;
  void onH2Close(http2::CloseCause cause, uint32_t error_code, std::string_view detail) override;
  void onH2Writable() override;

 private:
  http2::Codec& codec() { return *session_.codec_; }
  const ListenerInfo& li() const { return *listener_; }
  void acquireUpstream();
  // HTTP/2 upstream: request body bytes to the upstream stream (kept for a retry when `keep`).
  void h2Send(std::string_view data, bool keep);
  void h2EndRequest();
  void writeBody(std::string_view data);
  void writeLastChunk();
  void consumeForwarded();
  void processUpstream();
  void sendResponseHead(const http1::ResponseHead& h);
  void forwardResponseBody();
  void finish(bool upstream_reusable);
  void endStream();
  void localReply(int status, std::string_view body, const char* flags, bool add_newline = true);
  void logAndCount();
  void resetUpstream();
  void cancelPending();
  void disarmTimers();
  bool retryOn(const upstream::AttemptOutcome& outcome);
  void onRequestTimeout();
  void onStreamIdleTimeout();
  void onPerTryTimeout();
  void onBackoffDone();
  void touch() {
    if (stream_idle_timer_.armed()) last_activity_ = session_.worker_.loop().now();
  }

  Http2Session& session_;
  const int32_t id_;
  std::shared_ptr<const ListenerInfo> listener_;
  ExchangeCore ex_;
  bool done_ = false;           // answered (or abandoned) and logged
  bool request_ended_ = false;  // the client's END_STREAM arrived
  UpstreamBody framing_ = UpstreamBody::kNone;
  std::string upstream_head_;
  std::string pending_;     // request body received before the upstream was ready
  size_t unconsumed_ = 0;   // forwarded bytes not yet handed back to the codec
  uint64_t req_bytes_ = 0;  // request body bytes received
  uint64_t req_sent_ = 0;   // request body bytes written upstream (any attempt)
  bool last_chunk_written_ = false;
  std::string retry_body_;  // framed body as sent upstream, for a retry
  bool retry_body_ok_ = true;
  std::string scratch_;  // a formatted number of the response head
  http1::ResponseParser resp_parser_;
  http1::BodyRelay resp_body_;
  Buffer resp_out_;  // response body bytes on their way into the codec
  bool resp_head_sent_ = false;
  bool resp_keep_alive_ = true;
  bool resp_paused_ = false;  // upstream reading stopped: the stream's send buffer is full
  uint64_t resp_bytes_ = 0;   // response body bytes sent (access log)
  upstream::PooledConnection* upstream_ = nullptr;
  bool waiting_pool_ = false;
  // HTTP/2 upstream (the cluster's protocol is HTTP2): the stream, while held.
  bool h2_up_ = false;
  UpstreamH2Request h2_req_;
  upstream::Http2Connection* h2_ = nullptr;
  int32_t h2_id_ = 0;
  bool h2_req_ended_ = false;  // END_STREAM (or trailers) sent on the current attempt
  bool h2_up_paused_ = false;  // the upstream stream's send buffer is full
  size_t h2_unconsumed_ = 0;   // response bytes passed on but not yet handed back upstream
  bool resp_trailers_sent_ = false;
  std::vector<std::pair<std::string, std::string>> req_trailers_;
  Timer request_timer_;
  Timer stream_idle_timer_;
  Timer per_try_timer_;
  Timer backoff_timer_;
  MonoTime last_activity_{};
};

// ---------------------------------------------------------------------------------------------
// Stream

void Http2Session::Stream::start(const http2::HeaderBlock& block) {
  listener_ = session_.liveListener();
  request_ended_ = block.end_stream;
  std::string arena;
  auto head = http2::requestToHttp1(block, arena);
  if (!head) {
    ex_.begin(li(), nullptr, "HTTP/2");
    li().stats.protocol_error->inc();
    localReply(400, head.error().message, "DPE");
    return;
  }
  const http1::RequestHead& h = *head;
  ex_.begin(li(), &h, "HTTP/2");
  if (h.body_kind == http1::BodyKind::kContentLength) {
    framing_ = h.content_length > 0 ? UpstreamBody::kLength : UpstreamBody::kEmptyLength;
    if (li().max_body_bytes && h.content_length > li().max_body_bytes) {
      li().stats.rq_too_large->inc();
      localReply(413, "request body too large", "-");
      return;
    }
  } else if (h.body_kind == http1::BodyKind::kChunked) {
    framing_ = UpstreamBody::kChunked;
  }
  if (h.method_id == http1::Method::kConnect) {
    localReply(501, "CONNECT is not supported on this listener", "-");
    return;
  }
  if (!li().authorizes(session_.conn_->peer())) {
    localReply(403, "RBAC: access denied", "RBAC", false);
    return;
  }
  if (std::optional<LocalReply> reply = ex_.route(li(), h, session_.original_dst_)) {
    localReply(reply->status, reply->body, reply->flags, reply->add_newline);
    return;
  }
  h2_up_ = ex_.cluster->http2;
  if (h2_up_) {
    ex_.buildUpstreamH2Request(h2_req_, li(), h, ex_.cluster->config.has_tls());
  } else {
    ex_.appendUpstreamHead(upstream_head_, li(), h, framing_, h.content_length);
  }
  if (ex_.timeout.count() > 0) request_timer_.arm(ex_.timeout);
  if (ex_.stream_idle_timeout.count() > 0) {
    last_activity_ = session_.worker_.loop().now();
    stream_idle_timer_.arm(ex_.stream_idle_timeout);
  }
  acquireUpstream();
}

void Http2Session::Stream::acquireUpstream() {
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
    a = ex_.acquire(*this, ready, error);
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
                 upstream::CircuitBreaker::kOverflowFlag.data());
      return;
    case upstream::ConnPool::Acquire::kFailed:
      if (retryOn(
              upstream::AttemptOutcome::failure(upstream::AttemptOutcome::Kind::kConnectFailure)))
        return;
      localReply(503, "upstream connect error: " + error, "UF");
      return;
  }
}

void Http2Session::Stream::onUpstreamReady(upstream::PooledConnection& conn) {
  if (waiting_pool_) {
    waiting_pool_ = false;
    ex_.cluster->stats.rq_pending_active->sub();
  }
  upstream_ = &conn;
  if (conn.uses() == 1 && conn.connection().peer().secure) ex_.cluster->stats.ssl_handshake->inc();
  ex_.upstream_sent = session_.worker_.loop().now();
  Buffer& out = conn.connection().output();
  out.append(upstream_head_);
  if (ex_.retries_done > 0) out.append(retry_body_);  // a retry re-sends what was sent
  if (!pending_.empty()) {
    unconsumed_ += pending_.size();
    writeBody(pending_);
    std::string().swap(pending_);
  }
  if (request_ended_) writeLastChunk();
  conn.connection().flush();
  if (upstream_) consumeForwarded();
}

// Frames `data` for the upstream (chunks when the length is unknown) and keeps it for a retry.
void Http2Session::Stream::writeBody(std::string_view data) {
  if (data.empty()) return;
  Buffer& out = upstream_->connection().output();
  size_t before = out.size();
  if (framing_ == UpstreamBody::kChunked) {
    std::string chunk;
    http1::appendChunk(chunk, data);
    out.append(chunk);
  } else {
    out.append(data);
  }
  req_sent_ += data.size();
  if (ex_.retry_policy && retry_body_ok_) {
    std::string_view sent = out.view().substr(before);
    if (retry_body_.size() + sent.size() > upstream::kMaxRetryBodyBytes) {
      retry_body_ok_ = false;
      std::string().swap(retry_body_);
    } else {
      retry_body_.append(sent);
    }
  }
}

void Http2Session::Stream::writeLastChunk() {
  if (framing_ != UpstreamBody::kChunked || last_chunk_written_ || !upstream_) return;
  last_chunk_written_ = true;
  std::string last;
  http1::appendLastChunk(last);  // request trailers are not forwarded to HTTP/1 upstreams
  upstream_->connection().output().append(last);
  if (ex_.retry_policy && retry_body_ok_) retry_body_.append(last);
}

// Hands forwarded bytes back to the client's flow-control windows once the upstream takes more.
void Http2Session::Stream::consumeForwarded() {
  if (unconsumed_ == 0) return;
  if (h2_up_) {
    if (!h2_ || h2_up_paused_) return;
  } else if (!upstream_ || upstream_->connection().aboveHighWatermark()) {
    return;
  }
  codec().consume(id_, unconsumed_);
  unconsumed_ = 0;
  session_.flushOut();
}

void Http2Session::Stream::requestData(std::string_view data) {
  if (done_) {
    codec().consume(id_, data.size());  // the exchange is over: discard, but reopen the window
    return;
  }
  touch();
  req_bytes_ += data.size();
  if (li().max_body_bytes && req_bytes_ > li().max_body_bytes) {
    li().stats.rq_too_large->inc();
    codec().consume(id_, data.size());
    if (resp_head_sent_) {
      ex_.flags = "DPE";
      resetUpstream();
      logAndCount();
      done_ = true;
      (void)codec().resetStream(id_, http2::kCancel);
    } else {
      localReply(413, "request body too large", "-");
    }
    return;
  }
  if (h2_up_) {
    if (!h2_) {
      pending_.append(data);  // bounded by the stream's receive window: not consumed yet
      return;
    }
    unconsumed_ += data.size();
    h2Send(data, true);
    consumeForwarded();
    return;
  }
  if (!upstream_) {
    pending_.append(data);  // bounded by the stream's receive window: not consumed yet
    return;
  }
  unconsumed_ += data.size();
  writeBody(data);
  upstream_->connection().flush();
  if (upstream_) consumeForwarded();
}

void Http2Session::Stream::requestEnd() {
  request_ended_ = true;
  if (done_) return;
  if (h2_up_) {
    if (h2_) h2EndRequest();
    return;
  }
  if (!upstream_) return;
  writeLastChunk();
  upstream_->connection().flush();
}

void Http2Session::Stream::onUpstreamDrained(upstream::PooledConnection&) { consumeForwarded(); }

void Http2Session::Stream::onUpstreamData(upstream::PooledConnection&) {
  touch();
  processUpstream();
}

void Http2Session::Stream::processUpstream() {
  while (upstream_ && !done_ && !resp_head_sent_) {
    Buffer& in = upstream_->input();
    if (in.empty()) return;
    http1::ParseResult r = resp_parser_.parse(in.view(), ex_.method_id);
    if (r.needMore()) return;
    if (r.failed()) {
      resetUpstream();
      localReply(502,
                 std::string("upstream sent an invalid response: ") + std::string(r.error.reason),
                 "UPE");
      return;
    }
    const http1::ResponseHead& h = resp_parser_.head();
    if (h.interim) {
      in.consume(r.consumed);
      resp_parser_.reset();
      continue;
    }
    if (h.tunnel) {
      resetUpstream();
      localReply(502, "upstream switched protocols, which HTTP/2 streams do not support", "UPE");
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
    sendResponseHead(h);      // copies what it needs: the head's bytes may go now
    in.consume(r.consumed);
  }
  if (upstream_ && resp_head_sent_ && !done_) forwardResponseBody();
}

void Http2Session::Stream::sendResponseHead(const http1::ResponseHead& h) {
  ex_.status = h.status;
  resp_keep_alive_ = h.keep_alive;
  resp_body_.start(h.body_kind, h.content_length, /*chunk_output=*/false);
  // Content-Length stays when it frames the body (or HEAD / 304): HTTP/2 allows it.
  bool keep_cl =
      h.body_kind == http1::BodyKind::kContentLength || h.body_kind == http1::BodyKind::kNone;
  auto service_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
      session_.worker_.loop().now() - ex_.upstream_sent);
  std::vector<http::HeaderField> fields;
  fields.reserve(h.headers.size() + 2);
  forEachResponseField(h, li(), keep_cl, static_cast<uint64_t>(service_ms.count()), scratch_,
                       [&](std::string_view name, std::string_view value) {
                         fields.push_back({name, value, http::HeaderToken::kOther});
                       });
  ex_.keepResponseHeaders(li(), h);
  resp_head_sent_ = true;
  (void)codec().submitResponse(id_, h.status, fields, resp_body_.finished());
}

void Http2Session::Stream::forwardResponseBody() {
  Buffer& in = upstream_->input();
  http1::BodyRelay::Step step = resp_body_.relay(in, resp_out_);
  if (step.failed()) {
    // Mid-body: the client has the head already; all we can do is reset the stream.
    ex_.flags = "UPE";
    resetUpstream();
    logAndCount();
    done_ = true;
    (void)codec().resetStream(id_, http2::kInternalError);
    session_.flushOut();
    return;
  }
  bool finished = resp_body_.finished();
  if (finished && resp_out_.empty() && resp_body_.state() == http1::BodyRelay::State::kNone) {
    finish(resp_keep_alive_ && request_ended_ && in.empty());  // the head ended the stream
    return;
  }
  bool more = true;
  if (!resp_out_.empty() || finished) {
    resp_bytes_ += resp_out_.size();
    auto r = codec().sendData(id_, resp_out_.view(), finished);
    resp_out_.clear();
    more = r && *r;
  }
  if (finished) {
    finish(resp_keep_alive_ && request_ended_ && in.empty());
    return;
  }
  if (!more && upstream_) {
    resp_paused_ = true;
    upstream_->connection().readDisable(true);
  }
  session_.flushOut();
}

void Http2Session::Stream::writable() {
  if (!resp_paused_) return;
  resp_paused_ = false;
  if (h2_up_) {
    // The client took what we gave it: reopen the upstream's window for that much.
    if (h2_ && h2_unconsumed_) {
      size_t n = h2_unconsumed_;
      h2_unconsumed_ = 0;
      h2_->consume(h2_id_, n);
    }
    return;
  }
  if (upstream_) {
    upstream_->connection().readDisable(false);
    processUpstream();
  }
}

void Http2Session::Stream::onUpstreamClosed(upstream::PooledConnection&, net::CloseReason reason,
                                            std::string_view detail) {
  upstream_ = nullptr;
  if (done_) return;
  if (resp_head_sent_ && resp_body_.state() == http1::BodyRelay::State::kUntilClose &&
      reason == net::CloseReason::kRemoteClosed) {
    (void)codec().sendData(id_, {}, true);
    finish(false);
    return;
  }
  if (resp_head_sent_) {
    ex_.flags = "UR";
    logAndCount();
    done_ = true;
    (void)codec().resetStream(id_, http2::kInternalError);
    session_.flushOut();
    return;
  }
  if (reason == net::CloseReason::kHandshakeFailed) ex_.cluster->stats.ssl_error->inc();
  ex_.noteLocalFailure();
  if (retryOn(upstream::AttemptOutcome::failure(upstream::AttemptOutcome::Kind::kReset))) return;
  localReply(502, "upstream reset before response: " + std::string(detail), "UR");
}

void Http2Session::Stream::onUpstreamFailure(net::CloseReason reason, std::string_view detail,
                                             const net::Connection* conn) {
  waiting_pool_ = false;
  ex_.cluster->stats.rq_pending_active->sub();
  ex_.cluster->stats.cx_connect_fail->inc();
  if (reason == net::CloseReason::kHandshakeFailed) {
    const ClusterStats& st = ex_.cluster->stats;
    if (conn != nullptr)
      countTlsFailure(conn->transport(), *st.ssl_error, *st.ssl_verify_error, *st.ssl_verify_error,
                      *st.ssl_san);
    else
      st.ssl_error->inc();
  }
  ex_.noteLocalFailure();
  if (retryOn(upstream::AttemptOutcome::failure(upstream::AttemptOutcome::Kind::kConnectFailure)))
    return;
  localReply(503, "upstream connect error: " + std::string(detail), "UF");
}

bool Http2Session::Stream::retryOn(const upstream::AttemptOutcome& outcome) {
  if (done_ || resp_head_sent_) return false;
  bool nothing_sent =
      outcome.kind == upstream::AttemptOutcome::Kind::kConnectFailure && req_sent_ == 0;
  if (!ex_.startRetry(outcome, nothing_sent || (request_ended_ && retry_body_ok_))) return false;
  resetUpstream();
  per_try_timer_.disarm();
  resp_parser_.reset();
  resp_paused_ = false;
  backoff_timer_.arm(ex_.backoff());
  return true;
}

void Http2Session::Stream::onBackoffDone() {
  if (done_) return;
  if (!ex_.pickRetryHost()) {
    localReply(503, "no healthy upstream", "UH");
    return;
  }
  acquireUpstream();
}

void Http2Session::Stream::onPerTryTimeout() {
  if (done_ || resp_head_sent_) return;
  if (ex_.cluster) ex_.cluster->stats.rq_timeout->inc();
  cancelPending();
  if (retryOn(upstream::AttemptOutcome::failure(upstream::AttemptOutcome::Kind::kPerTryTimeout)))
    return;
  localReply(504, "upstream per-try timeout", "UT");
}

void Http2Session::Stream::onRequestTimeout() {
  if (done_) return;
  li().stats.rq_timeout->inc();
  if (ex_.cluster) ex_.cluster->stats.rq_timeout->inc();
  if (ex_.route_entry && ex_.route_entry->index() < li().route_stats.size())
    li().route_stats[ex_.route_entry->index()].rq_timeout->inc();
  if (resp_head_sent_) {
    ex_.flags = "UT";
    resetUpstream();
    disarmTimers();
    logAndCount();
    done_ = true;
    (void)codec().resetStream(id_, http2::kCancel);
    session_.flushOut();
    return;
  }
  localReply(504, ex_.grpc ? "deadline exceeded" : "upstream request timeout", "UT");
}

void Http2Session::Stream::onStreamIdleTimeout() {
  if (done_) return;
  Duration quiet = session_.worker_.loop().now() - last_activity_;
  if (quiet < ex_.stream_idle_timeout) {
    stream_idle_timer_.arm(ex_.stream_idle_timeout - quiet);
    return;
  }
  onRequestTimeout();
}

void Http2Session::Stream::finish(bool upstream_reusable) {
  disarmTimers();
  if (h2_) {
    upstream::Http2Connection* h2 = h2_;
    h2_ = nullptr;
    h2->release(h2_id_, h2_unconsumed_);
    h2_unconsumed_ = 0;
  }
  if (upstream_) {
    upstream::PooledConnection* up = upstream_;
    upstream_ = nullptr;
    up->connection().readDisable(false);
    ex_.cluster_rt->pool->release(*up, upstream_reusable);
  }
  logAndCount();
  endStream();
}

// The answer is complete: give back what the client sent and we will not forward, and end the
// client's half if it is still sending (RFC 9113 §8.1: RST_STREAM(NO_ERROR)).
void Http2Session::Stream::endStream() {
  done_ = true;
  size_t held = unconsumed_ + pending_.size();
  unconsumed_ = 0;
  std::string().swap(pending_);
  if (held) codec().consume(id_, held);
  // RST_STREAM would overtake DATA still queued for the stream: sent once that is written.
  if (!request_ended_) session_.resets_.push_back(id_);
  session_.flushOut();
}

void Http2Session::Stream::localReply(int status, std::string_view body, const char* flags,
                                      bool add_newline) {
  disarmTimers();
  cancelPending();
  resetUpstream();
  ex_.flags = flags;
  std::vector<http::HeaderField> fields;
  std::string text(body);
  if (ex_.grpc && status >= 300) {
    // A gRPC caller gets a trailers-only response: HTTP 200 and the status as grpc-status.
    for (char& c : text)
      if (c < 0x20 || c > 0x7e) c = ' ';
    std::string code = std::to_string(grpcStatusForHttp(status));
    fields.push_back({"content-type", "application/grpc", http::HeaderToken::kContentType});
    fields.push_back({"grpc-status", code, http::HeaderToken::kGrpcStatus});
    fields.push_back({"grpc-message", text, http::HeaderToken::kGrpcMessage});
    fields.push_back({"server", li().server_name, http::HeaderToken::kServer});
    ex_.status = 200;
    (void)codec().submitResponse(id_, 200, fields, true);
  } else {
    if (add_newline) text.push_back('\n');
    bool head = ex_.method_id == http1::Method::kHead;
    std::string length = std::to_string(text.size());
    fields.push_back({"content-type", "text/plain", http::HeaderToken::kContentType});
    fields.push_back({"server", li().server_name, http::HeaderToken::kServer});
    fields.push_back({"content-length", length, http::HeaderToken::kContentLength});
    ex_.status = status;
    bool empty = head || text.empty();
    (void)codec().submitResponse(id_, status, fields, empty);
    if (!empty) {
      (void)codec().sendData(id_, text, true);
      resp_bytes_ = text.size();
    }
  }
  logAndCount();
  endStream();
}

void Http2Session::Stream::logAndCount() {
  if (!ex_.active) return;
  session_.countBytes();
  ex_.logAndCount(li(), *session_.conn_, req_bytes_, resp_bytes_);
}

void Http2Session::Stream::resetUpstream() {
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
  // req_sent_ and last_chunk_written_ stay: a retry re-sends retry_body_, which holds both.
}

void Http2Session::Stream::cancelPending() {
  if (!waiting_pool_) return;
  if (h2_up_) {
    ex_.cluster_rt->h2pool->cancel(*this);
  } else {
    ex_.cluster_rt->pool->cancel(*this);
  }
  waiting_pool_ = false;
  ex_.cluster->stats.rq_pending_active->sub();
}

void Http2Session::Stream::disarmTimers() {
  request_timer_.disarm();
  stream_idle_timer_.disarm();
  per_try_timer_.disarm();
  backoff_timer_.disarm();
}

void Http2Session::Stream::closed(http2::CloseCause) { abort(); }

void Http2Session::Stream::abort() {
  if (done_) return;
  done_ = true;
  disarmTimers();
  cancelPending();
  resetUpstream();
  if (ex_.active) {
    // The client reset the stream or went away mid-exchange: logged as Envoy does (DC).
    ex_.flags = "DC";
    if (listener_) logAndCount();
  }
}

// ---------------------------------------------------------------------------------------------
// Stream: HTTP/2 upstreams (protocol HTTP2). The stream's events map one to one: request HEADERS,
// DATA and trailers go up; response HEADERS, DATA and trailers come back. Flow control: request
// bytes are consumed from the client once the upstream stream's send buffer took them (else on
// onH2Writable); response bytes are consumed upstream once the client stream's send buffer took
// them (else on writable()).

void Http2Session::Stream::onH2Ready(upstream::Http2Connection& conn) {
  if (waiting_pool_) {
    waiting_pool_ = false;
    ex_.cluster->stats.rq_pending_active->sub();
  }
  if (conn.uses() == 0 && conn.secure()) ex_.cluster->stats.ssl_handshake->inc();
  ex_.upstream_sent = session_.worker_.loop().now();
  bool replay = ex_.retries_done > 0 && !retry_body_.empty();
  bool end_now = request_ended_ && pending_.empty() && !replay && req_trailers_.empty();
  auto id = conn.submit(*this, h2_req_.view(), end_now);
  if (!id) {
    // The peer refused more streams right now (GOAWAY or its limit): a refused stream.
    if (retryOn(upstream::AttemptOutcome::failure(upstream::AttemptOutcome::Kind::kRefusedStream)))
      return;
    localReply(503, "upstream refused the stream: " + id.error().message, "UR");
    return;
  }
  h2_ = &conn;
  h2_id_ = *id;
  h2_req_ended_ = end_now;
  h2_up_paused_ = false;
  if (replay) h2Send(retry_body_, false);  // a retry re-sends what was sent
  if (h2_ && !pending_.empty()) {
    std::string held = std::move(pending_);
    pending_.clear();
    unconsumed_ += held.size();
    h2Send(held, true);
  }
  if (h2_ && request_ended_ && !h2_req_ended_) h2EndRequest();
  if (h2_) consumeForwarded();
  session_.flushOut();
}

void Http2Session::Stream::h2Send(std::string_view data, bool keep) {
  if (data.empty() || !h2_) return;
  auto r = h2_->sendData(h2_id_, data, false);
  req_sent_ += data.size();
  if (keep && ex_.retry_policy && retry_body_ok_) {
    if (retry_body_.size() + data.size() > upstream::kMaxRetryBodyBytes) {
      retry_body_ok_ = false;
      std::string().swap(retry_body_);
    } else {
      retry_body_.append(data);
    }
  }
  if (r && !*r) h2_up_paused_ = true;
}

void Http2Session::Stream::h2EndRequest() {
  if (!h2_ || h2_req_ended_) return;
  h2_req_ended_ = true;
  if (!req_trailers_.empty()) {
    std::vector<http::HeaderField> fields;
    fields.reserve(req_trailers_.size());
    for (const auto& [n, v] : req_trailers_) fields.push_back({n, v, http::HeaderToken::kOther});
    (void)h2_->submitTrailers(h2_id_, fields);
  } else {
    (void)h2_->sendData(h2_id_, {}, true);
  }
}

void Http2Session::Stream::requestTrailers(const http2::HeaderBlock& block) {
  if (done_ || !h2_up_) return;  // HTTP/1 upstreams: request trailers are not forwarded
  req_trailers_.clear();
  for (const http::HeaderField& f : block.fields)
    req_trailers_.emplace_back(std::string(f.name), std::string(f.value));
  // onStreamEnd follows (trailers carry END_STREAM) and sends them.
}

void Http2Session::Stream::onH2Writable() {
  h2_up_paused_ = false;
  consumeForwarded();
  session_.flushOut();
}

void Http2Session::Stream::onH2Failure(net::CloseReason reason, std::string_view detail,
                                       const net::Connection* conn) {
  onUpstreamFailure(reason, detail, conn);
  session_.flushOut();
}

void Http2Session::Stream::onH2Headers(const http2::HeaderBlock& block) {
  if (done_) return;
  touch();
  if (block.kind == http2::HeadersKind::kInformational) return;
  if (block.kind == http2::HeadersKind::kTrailers) {
    if (!resp_head_sent_) return;
    std::vector<http::HeaderField> fields;
    forEachH2ResponseField(block.fields, li(), -1, scratch_,
                           [&](std::string_view name, std::string_view value) {
                             fields.push_back({name, value, http::HeaderToken::kOther});
                           });
    resp_trailers_sent_ = true;
    (void)codec().submitTrailers(id_, fields);
    session_.flushOut();
    return;
  }
  ex_.noteResponse(block.status);
  if (ex_.retry_policy) {
    int grpc_status = -1;
    for (const http::HeaderField& f : block.fields)
      if (f.token == http::HeaderToken::kGrpcStatus) grpc_status = parseGrpcStatus(f.value);
    if (retryOn(upstream::AttemptOutcome::response(block.status, grpc_status))) {
      session_.flushOut();
      return;
    }
  }
  if (ex_.retries_done > 0 && block.status < 500) ex_.cluster->stats.rq_retry_success->inc();
  per_try_timer_.disarm();
  ex_.status = block.status;
  auto service_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
      session_.worker_.loop().now() - ex_.upstream_sent);
  std::vector<http::HeaderField> fields;
  fields.reserve(block.fields.size() + 2);
  forEachH2ResponseField(block.fields, li(), service_ms.count(), scratch_,
                         [&](std::string_view name, std::string_view value) {
                           fields.push_back({name, value, http::HeaderToken::kOther});
                         });
  ex_.keepResponseHeaders(li(), block.fields);
  resp_head_sent_ = true;
  (void)codec().submitResponse(id_, block.status, fields, block.end_stream);
  if (block.end_stream) resp_trailers_sent_ = true;  // nothing more goes to the client
  session_.flushOut();
}

void Http2Session::Stream::onH2Data(std::string_view data) {
  if (done_ || !resp_head_sent_) {
    if (h2_) h2_->consume(h2_id_, data.size());
    return;
  }
  touch();
  resp_bytes_ += data.size();
  auto r = codec().sendData(id_, data, false);
  h2_unconsumed_ += data.size();
  if (r && *r && !resp_paused_) {
    size_t n = h2_unconsumed_;
    h2_unconsumed_ = 0;
    h2_->consume(h2_id_, n);
  } else {
    resp_paused_ = true;  // writable() hands the bytes back upstream
  }
  session_.flushOut();
}

void Http2Session::Stream::onH2End() {
  if (done_ || !resp_head_sent_) return;
  if (!resp_trailers_sent_) (void)codec().sendData(id_, {}, true);
  finish(true);
}

void Http2Session::Stream::onH2Close(http2::CloseCause cause, uint32_t, std::string_view detail) {
  h2_ = nullptr;  // the stream is gone; nothing to release
  h2_unconsumed_ = 0;
  if (done_) return;
  if (resp_head_sent_) {
    ex_.flags = "UR";
    logAndCount();
    done_ = true;
    disarmTimers();
    (void)codec().resetStream(id_, http2::kInternalError);
    session_.flushOut();
    return;
  }
  ex_.noteLocalFailure();
  bool refused = cause == http2::CloseCause::kRefused;
  if (retryOn(upstream::AttemptOutcome::failure(refused
                                                    ? upstream::AttemptOutcome::Kind::kRefusedStream
                                                    : upstream::AttemptOutcome::Kind::kReset))) {
    session_.flushOut();
    return;
  }
  if (cause == http2::CloseCause::kHeadersTooLarge) {
    localReply(502, "upstream response headers too large", "UPE");
  } else {
    localReply(refused ? 503 : 502, "upstream reset before response: " + std::string(detail), "UR");
  }
}

// ---------------------------------------------------------------------------------------------
// Session

Http2Session::Http2Session(Worker& worker, std::unique_ptr<net::Connection> conn,
                           std::shared_ptr<const ListenerInfo> listener, uint64_t counted_rx,
                           uint64_t counted_tx, std::optional<net::Address> original_dst)
    : worker_(worker),
      conn_(std::move(conn)),
      listener_(std::move(listener)),
      original_dst_(original_dst),
      idle_timer_(worker.loop().timers(), [this] { onIdleTimeout(); }),
      counted_rx_(counted_rx),
      counted_tx_(counted_tx) {
  conn_->setCallbacks(this);
}

Http2Session::~Http2Session() {
  streams_.clear();  // streams log through the connection
  listener_->stats.cx_active->sub();
  countBytes();
  if (!conn_->closed()) worker_.linger(std::move(conn_));
}

void Http2Session::start() {
  http2::Options o;
  o.max_header_list_bytes = static_cast<uint32_t>(listener_->max_head_bytes);
  // The codec stops pulling frames where the connection starts reporting onWriteDrained.
  o.output_high_watermark = net::Connection::kHighWatermark + 1;
  auto codec = http2::Codec::create(http2::Mode::kServer, o, *this, conn_->output(),
                                    worker_.loop().time(), listener_->http2_stats);
  if (!codec) {
    log::warn("http2", listener_->name + ": " + codec.error().message);
    conn_->close(false);
    teardown();
    return;
  }
  codec_ = std::move(*codec);
  if (listener_->idle_timeout.count() > 0) idle_timer_.arm(listener_->idle_timeout);
  if (!conn_->input().empty()) {
    onData(*conn_);
  } else {
    flushOut();
  }
}

const std::shared_ptr<const ListenerInfo>& Http2Session::liveListener() {
  const ListenerInfo* live = worker_.snapshot().listener(listener_->name);
  if (live && live != listener_.get()) listener_ = worker_.snapshot().listenerPtr(listener_->name);
  return listener_;
}

void Http2Session::countBytes() {
  if (!conn_) return;
  uint64_t rx = conn_->bytesRead(), tx = conn_->bytesWritten();
  listener_->stats.rx_bytes->inc(rx - counted_rx_);
  listener_->stats.tx_bytes->inc(tx - counted_tx_);
  counted_rx_ = rx;
  counted_tx_ = tx;
}

void Http2Session::onData(net::Connection&) {
  if (closed_) return;
  Buffer& in = conn_->input();
  std::string_view bytes = in.view();
  ++depth_;
  Status s = codec_->feed(bytes);
  --depth_;
  if (closed_) return;
  in.consume(bytes.size());
  if (!s) {
    listener_->stats.protocol_error->inc();
    log::debug("http2", listener_->name + ": " + s.error().message);
    conn_->close(true);  // the GOAWAY is in the output
    teardown();
    return;
  }
  flushOut();
}

void Http2Session::onWriteDrained(net::Connection&) {
  if (closed_) return;
  codec_->flush();
  flushOut();
}

void Http2Session::onClose(net::Connection&, net::CloseReason, std::string_view) {
  if (closed_) return;
  teardown();
}

void Http2Session::flushOut() {
  if (closed_ || depth_ > 0) return;
  if (!resets_.empty()) {
    ++depth_;
    size_t kept = 0;
    for (int32_t id : resets_) {
      if (codec_->sendBuffered(id) > 0) {
        resets_[kept++] = id;  // the answer's last DATA is still waiting for the peer's window
      } else {
        (void)codec_->resetStream(id, http2::kNoError);
      }
    }
    resets_.resize(kept);
    --depth_;
    codec_->flush();
  }
  conn_->flushSoon();
  if (closed_) return;
  if (codec_->done()) {
    conn_->close(true);
    teardown();
    return;
  }
  if (streams_.empty()) {
    if (!idle_timer_.armed() && listener_->idle_timeout.count() > 0)
      idle_timer_.arm(listener_->idle_timeout);
  } else {
    idle_timer_.disarm();
  }
}

void Http2Session::drain() {
  if (closed_ || !codec_) return;
  (void)codec_->drain();
  flushOut();
}

void Http2Session::onIdleTimeout() {
  if (closed_ || !streams_.empty()) return;
  listener_->stats.idle_timeout->inc();
  codec_->terminate(http2::kNoError);
  flushOut();
}

// The one way the session ends: every stream still open is abandoned (upstreams cancelled,
// logged as DC), then the worker frees the session.
void Http2Session::teardown() {
  closed_ = true;
  idle_timer_.disarm();
  auto streams = std::move(streams_);
  streams_.clear();
  for (auto& [id, s] : streams) {
    s->abort();
    worker_.loop().deferDelete(std::move(s));
  }
  worker_.sessionClosed(*this);
}

void Http2Session::onHeaders(int32_t stream_id, const http2::HeaderBlock& block) {
  if (block.kind == http2::HeadersKind::kTrailers) {
    auto it = streams_.find(stream_id);
    if (it != streams_.end()) it->second->requestTrailers(block);
    return;
  }
  if (block.kind != http2::HeadersKind::kRequest) return;
  auto [it, fresh] = streams_.try_emplace(stream_id, nullptr);
  if (!fresh) return;
  it->second = std::make_unique<Stream>(*this, stream_id);
  idle_timer_.disarm();
  it->second->start(block);
}

void Http2Session::onData(int32_t stream_id, std::string_view data) {
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) {
    codec_->consume(stream_id, data.size());
    return;
  }
  it->second->requestData(data);
}

void Http2Session::onStreamEnd(int32_t stream_id) {
  auto it = streams_.find(stream_id);
  if (it != streams_.end()) it->second->requestEnd();
}

void Http2Session::onStreamClose(int32_t stream_id, http2::CloseCause cause, uint32_t) {
  auto it = streams_.find(stream_id);
  if (it == streams_.end()) return;
  std::unique_ptr<Stream> s = std::move(it->second);
  streams_.erase(it);
  s->closed(cause);
  worker_.loop().deferDelete(std::move(s));
}

void Http2Session::onStreamWritable(int32_t stream_id) {
  auto it = streams_.find(stream_id);
  if (it != streams_.end()) it->second->writable();
}

}  // namespace weft::proxy
