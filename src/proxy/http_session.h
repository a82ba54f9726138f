#pragma once
// HttpSession: one downstream HTTP/1.1 connection and the request currently on it. It parses a
// request head, routes it, takes an upstream connection from the cluster's pool, streams the
// request body up and the response back (both directions bounded by the connections' watermarks),
// then logs and counts the exchange and moves on to the next (possibly pipelined) request.
// Requests on one connection are served strictly in order, one at a time (HTTP/1.1 pipelining is
// answered in order because the next head is not read before the previous response ends).
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
                          public upstream::PoolUser {
 public:
  HttpSession(Worker& worker, std::unique_ptr<net::Connection> conn,
              std::shared_ptr<const ListenerInfo> listener);
  ~HttpSession();

  // Worker drain: close now if idle, else after the current response.
  void drain() override;
  bool idle() const override { return state_ == State::kReadHead && !has_request_; }

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

 private:
  enum class State {
    kReadHead,      // waiting for (more of) a request head
    kProxying,      // request routed to an upstream; body and/or response in flight
    kLocalReplied,  // a local reply was written; waiting for it to flush
    kClosed,
  };

  void processInput();
  void processInputLoop();
  void teardown();
  void startRequest(size_t head_len);
  void routeRequest();
  bool forwardRequestBody();
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
  // Passive health: a connect failure, reset or timeout of the current attempt.
  void noteLocalFailure();
  void onIdleTimeout();
  void onStreamIdleTimeout();
  void armIdle();
  void logAndCount(int status);
  void resetRequest();
  void countBytes();

  Worker& worker_;
  std::unique_ptr<net::Connection> conn_;
  std::shared_ptr<const ListenerInfo> listener_;
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

  // Per request (reset by resetRequest()).
  bool has_request_ = false;
  MonoTime start_;
  std::chrono::system_clock::time_point start_wall_;
  MonoTime upstream_sent_;
  std::string method_;
  http1::Method method_id_ = http1::Method::kOther;
  std::string path_;  // target as received
  std::string authority_;
  std::string request_id_;
  // Copies of the headers the access logs print (ListenerInfo::log_*_headers); empty without logs.
  std::vector<std::pair<std::string_view, std::string>> logged_request_headers_;
  std::vector<std::pair<std::string_view, std::string>> logged_response_headers_;
  http1::Version version_ = http1::Version::kHttp11;
  bool client_keep_alive_ = true;
  std::string upstream_head_;   // serialized request head for the upstream
  std::string scratch_;         // response head being built
  http1::BodyRelay req_body_;   // client -> upstream
  http1::BodyRelay resp_body_;  // upstream -> client
  bool resp_head_sent_ = false;
  bool resp_keep_alive_ = true;
  int status_ = 0;
  uint64_t local_body_bytes_ = 0;             // body of a local reply (access log)
  uint64_t counted_rx_ = 0, counted_tx_ = 0;  // connection bytes already in the listener stats
  const char* flags_ = "-";
  const http::RouteEntry* route_ = nullptr;
  std::shared_ptr<const ClusterInfo> cluster_;
  ClusterRuntime* cluster_rt_ = nullptr;
  const upstream::Host* host_ = nullptr;
  upstream::HostSetPtr host_set_;  // keeps host_ alive
  upstream::PooledConnection* upstream_ = nullptr;
  bool waiting_pool_ = false;
  // Circuit breaking and retries (per request).
  upstream::CircuitBreaker::Guard rq_guard_;
  upstream::CircuitBreaker::Guard retry_guard_;
  const upstream::RetryPolicy* retry_policy_ = nullptr;  // null: no retries
  uint32_t retries_done_ = 0;
  std::string retry_body_;     // the framed request body as sent upstream, for a retry
  bool retry_body_ok_ = true;  // false once the body outgrew upstream::kMaxRetryBodyBytes
  std::vector<net::Address> tried_;
  Timer per_try_timer_;
  Timer backoff_timer_;
  std::string upstream_host_;
  Duration stream_idle_timeout_{};
};

}  // namespace weft::proxy
