#pragma once
// HttpSession: one downstream HTTP/1.1 connection and the request currently on it. It parses a
// request head, routes it, takes an upstream connection from the cluster's pool, streams the
// request body up and the response back (both directions bounded by the connections' watermarks),
// then logs and counts the exchange and moves on to the next (possibly pipelined) request.
// Requests on one connection are served strictly in order, one at a time (HTTP/1.1 pipelining is
// answered in order because the next head is not read before the previous response ends).
//
// HTTP/1.1 Upgrade (WebSocket and others, not h2c): the request goes upstream on a fresh
// connection with its Upgrade header; a 101 answer turns both connections into a byte relay
// (ByteRelay, as TcpSession's) until either side closes or nothing moves for the idle timeout;
// any other answer is an ordinary response after which the upstream connection is closed.
//
// Single-threaded: lives on one Worker, owned by it (Worker::sessions_).

#include <list>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/timer.h"
#include "http/http1/body_relay.h"
#include "http/http1/parser.h"
#include "net/connection.h"
#include "proxy/exchange.h"
#include "proxy/relay.h"
#include "proxy/session.h"
#include "proxy/snapshot.h"
#include "upstream/circuit_breaker.h"
#include "upstream/pool.h"
#include "upstream/retry.h"

namespace weft::proxy {

class Worker;
struct ClusterRuntime;

class HttpSession final : public Session,
                          public net::ConnectionCallbacks,
                          public upstream::PoolUser,
                          public upstream::Http2StreamUser {
 public:
  // `original_dst`: where an intercepted connection was going (ListenerInfo::
  // passthrough_unrouted); requests matching no virtual host are forwarded there.
  HttpSession(Worker& worker, std::unique_ptr<net::Connection> conn,
              std::shared_ptr<const ListenerInfo> listener,
              std::optional<net::Address> original_dst = std::nullopt);
  ~HttpSession();

  // Worker drain: close now if idle, else after the current response.
  void drain() override;
  bool idle() const override { return state_ == State::kReadHead && !ex_.active; }

  // net::ConnectionCallbacks (downstream)
  void onConnected(net::Connection&) override;
  void onData(net::Connection&) override;
  void onWriteDrained(net::Connection&) override;
  void onClose(net::Connection&, net::CloseReason reason, std::string_view detail) override;

  // upstream::PoolUser
  void onUpstreamReady(upstream::PooledConnection& conn) override;
  void onUpstreamFailure(net::CloseReason reason, std::string_view detail,
                         const net::Connection* conn) override;
  void onUpstreamData(upstream::PooledConnection& conn) override;
  void onUpstreamDrained(upstream::PooledConnection& conn) override;
  void onUpstreamClosed(upstream::PooledConnection& conn, net::CloseReason reason,
                        std::string_view detail) override;

  // upstream::Http2StreamUser (protocol HTTP2 clusters: HTTP/1.1 translated to HTTP/2)
  void onH2Ready(upstream::Http2Connection& conn) override;
  void onH2Failure(net::CloseReason reason, std::string_view detail,
                   const net::Connection* conn) override;
  void onH2Headers(const http2::HeaderBlock& block) override;
  void onH2Data(std::string_view data) override;
  void onH2End() override;
  void onH2Close(http2::CloseCause cause, uint32_t error_code, std::string_view detail) override;
  void onH2Writable() override;

 private:
  enum class State {
    kReadHead,      // waiting for (more of) a request head
    kProxying,      // request routed to an upstream; body and/or response in flight
    kLocalReplied,  // a local reply was written; waiting for it to flush
    kUpgraded,      // 101 Switching Protocols: the connection is a byte relay until it ends
    kClosed,
  };

  void processInput();
  void processInputLoop();
  void teardown();
  void startRequest(size_t head_len);
  void routeRequest();
  bool forwardRequestBody();
  // forwardRequestBody for an HTTP/2 upstream: decoded body bytes become DATA on the stream.
  bool forwardRequestBodyH2();
  // Hands response bytes the client has taken back to the upstream stream's window.
  void consumeH2();
  void processUpstream();
  bool sendResponseHead(const http1::ResponseHead& head);
  bool forwardResponseBody();
  void finishExchange(bool upstream_reusable);
  void endExchange(bool keep);
  // A response made by the proxy. Error texts get a trailing newline; direct responses are sent
  // exactly as configured.
  void localReply(int status, std::string_view body, const char* flags, bool close,
                  bool add_newline = true);
  void resetUpstream();
  void closeDownstream(bool flush);
  void onRequestTimeout();
  // Retries (docs/resilience.md): true when `outcome` is retried (the attempt is abandoned and
  // the next one starts after the back-off); false when the caller answers as usual.
  bool retryOn(const upstream::AttemptOutcome& outcome);
  void onBackoffDone();
  void onPerTryTimeout();
  void onIdleTimeout();
  void onStreamIdleTimeout();
  void armIdle();
  void logAndCount(int status);
  void resetRequest();
  void countBytes();
  // HTTP/2 on this connection: hands the connection (and what was read) to an Http2Session.
  void switchToHttp2();
  // The upstream answered an Upgrade request with 101 (head `h`, `head_len` bytes of its
  // input): the head goes to the client and both connections become a byte relay.
  void switchProtocols(const http1::ResponseHead& h, size_t head_len);
  // The upgraded relay is over: logs the exchange with `flags` and closes the client (after
  // what is queued for it when `flush`).
  void endUpgrade(const char* flags, bool flush);
  void onUpgradeIdle();

  Worker& worker_;
  std::unique_ptr<net::Connection> conn_;
  std::shared_ptr<const ListenerInfo> listener_;
  std::optional<net::Address> original_dst_;
  State state_ = State::kReadHead;
  bool draining_ = false;
  bool in_process_input_ = false;  // processInput() is on the stack: don't re-enter it

  http1::RequestParser req_parser_;
  http1::ResponseParser resp_parser_;
  Timer request_timer_;
  Timer idle_timer_;
  // Route idle_timeout: fires when neither direction moved a byte for that long. Activity only
  // stamps last_activity_; the timer re-arms itself for the remainder (no heap work per byte).
  Timer stream_idle_timer_;
  MonoTime last_activity_{};

  // Per request (reset by resetRequest()): routing, retries, stats and the access log.
  ExchangeCore ex_;
  http1::Version version_ = http1::Version::kHttp11;
  bool client_keep_alive_ = true;
  std::string upstream_head_;   // serialized request head for the upstream
  std::string scratch_;         // response head being built
  std::string number_scratch_;  // a formatted number of the response head
  http1::BodyRelay req_body_;   // client -> upstream
  http1::BodyRelay resp_body_;  // upstream -> client
  bool resp_head_sent_ = false;
  bool resp_keep_alive_ = true;
  uint64_t local_body_bytes_ = 0;             // body of a local reply (access log)
  uint64_t counted_rx_ = 0, counted_tx_ = 0;  // connection bytes already in the listener stats
  upstream::PooledConnection* upstream_ = nullptr;
  bool waiting_pool_ = false;
  std::string retry_body_;     // the framed request body as sent upstream, for a retry
  bool retry_body_ok_ = true;  // false once the body outgrew upstream::kMaxRetryBodyBytes
  Timer per_try_timer_;
  Timer backoff_timer_;
  Duration stream_idle_timeout_{};
  // The connection turned out to speak HTTP/2 (ALPN h2 or the h2c preface): it now belongs to an
  // Http2Session and this session is gone without closing or counting it.
  bool handed_over_ = false;
  bool preface_checked_ = false;  // the first bytes were not the h2c preface
  // HTTP/2 upstream (the cluster's protocol is HTTP2): the request, and the stream while held.
  bool h2_up_ = false;
  UpstreamH2Request h2_req_;
  upstream::Http2Connection* h2_ = nullptr;
  int32_t h2_id_ = 0;
  bool h2_req_ended_ = false;  // END_STREAM sent on the current attempt
  bool h2_up_paused_ = false;  // the upstream stream's send buffer is full
  size_t h2_unconsumed_ = 0;   // response bytes written to the client, not yet handed back
  uint64_t h2_resp_bytes_ = 0;
  Buffer h2_scratch_;  // decoded request body on its way to the stream
  // The current request asks to switch protocols (Upgrade header value; empty: it does not).
  std::string upgrade_;
  ByteRelay relay_;               // after 101: client <-> upstream
  bool upgrade_counted_ = false;  // upgrades_active holds this connection
};

}  // namespace weft::proxy
