#pragma once
// ExchangeCore: the per-request logic every downstream protocol shares. An HTTP/1 connection
// (HttpSession, one exchange at a time) and an HTTP/2 stream (Http2Session::Stream, many per
// connection) each hold one and differ only in how bytes reach and leave the client:
//
//   begin()            count the request on the listener, copy what the access log needs
//   route()            router -> route -> weighted cluster -> circuit breaker -> balancer host;
//                      or the local reply to send instead (404, direct response, 503 ...)
//   appendUpstreamHead the HTTP/1.1 request head sent upstream (hop-by-hop fields dropped, host
//                      and prefix rewrites, x-request-id, x-forwarded-proto, body framing)
//   startRetry()       retry decision, budget, balancer bookkeeping; the caller then drops its
//                      upstream and arms a back-off of backoff()
//   logAndCount()      listener / route / cluster stats and the access log lines
//
// Plus pure helpers used by both: response fields to forward (forEachResponseField), gRPC status
// mapping and grpc-timeout parsing (gRPC callers get local replies as grpc-status).
//
// Single-threaded: one per exchange, on the worker that owns the session.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/time.h"
#include "http/http1/parser.h"
#include "http/http2/codec.h"
#include "net/connection.h"
#include "net/socket.h"
#include "proxy/snapshot.h"
#include "upstream/circuit_breaker.h"
#include "upstream/http2_pool.h"
#include "upstream/retry.h"

namespace weft::proxy {

class Worker;
struct ClusterRuntime;

// A response made by the proxy itself.
struct LocalReply {
  int status = 0;
  std::string body;
  const char* flags = "-";  // access-log response flags (static string)
  bool add_newline = true;  // error texts get a trailing newline; direct responses do not
};

// An HTTP/2 request head for an upstream of protocol HTTP2, owned: built once per request from
// the (parsed, or translated from HTTP/2) request head and submitted on every attempt.
struct UpstreamH2Request {
  std::string method, scheme, authority, path;
  struct Field {
    std::string name, value;                              // name lower-case
    http::HeaderToken token = http::HeaderToken::kOther;  // kept so the codec need not look it up
  };
  std::vector<Field> fields;
  // For Http2Connection::submit; valid until the next call or a change of the strings.
  http2::RequestHeaders view();

 private:
  std::vector<http::HeaderField> views_;
};

// How the request body is framed towards an HTTP/1.1 upstream.
enum class UpstreamBody : uint8_t {
  kNone,         // no body and no framing header
  kEmptyLength,  // "content-length: 0" (the client sent one)
  kLength,       // "content-length: N"
  kChunked,      // "transfer-encoding: chunked"
};

struct ExchangeCore {
  explicit ExchangeCore(Worker& w) : worker(w) {}
  ExchangeCore(const ExchangeCore&) = delete;
  ExchangeCore& operator=(const ExchangeCore&) = delete;

  // Starts an exchange: stamps the start, counts rq_total/rq_active on `li`. `h` may be null (a
  // request whose head could not be parsed). `protocol` is the access log's %PROTOCOL%.
  void begin(const ListenerInfo& li, const http1::RequestHead* h, std::string_view protocol);
  // Routes `h` on `li`. On success (nullopt) route, cluster, cluster_rt, host and retry_policy
  // are set and the request counts against the cluster and its breaker; otherwise the reply to
  // send. The timeouts (request, stream idle) are set either way when a route matched.
  // `original_dst`: the intercepted connection's destination; when `li` passes unrouted
  // requests through (ListenerInfo::passthrough_unrouted) and no virtual host matches, the
  // request goes there through the passthrough cluster (route_entry stays null, no retries).
  std::optional<LocalReply> route(const ListenerInfo& li, const http1::RequestHead& h,
                                  const std::optional<net::Address>& original_dst = std::nullopt);
  // route()'s passthrough case: the passthrough cluster (its breaker and counters) with `dst`
  // as the host.
  std::optional<LocalReply> routePassthrough(const ListenerInfo& li, const net::Address& dst);
  // The HTTP/1.1 head sent upstream for `h` (after route()). `upgrade` non-empty: the request
  // asks to switch protocols (HTTP/1.1 Upgrade); "connection: upgrade" and "upgrade: <upgrade>"
  // are sent (hop-by-hop fields are otherwise dropped).
  void appendUpstreamHead(std::string& out, const ListenerInfo& li, const http1::RequestHead& h,
                          UpstreamBody body, uint64_t length, std::string_view upgrade = {}) const;

  // The HTTP/2 request sent to a protocol HTTP2 upstream for `h` (after route()): as
  // appendUpstreamHead (hop-by-hop fields dropped, TE kept only as "te: trailers", host and
  // prefix rewrites, x-request-id, x-forwarded-proto), :scheme https over TLS (`secure`).
  void buildUpstreamH2Request(UpstreamH2Request& out, const ListenerInfo& li,
                              const http1::RequestHead& h, bool secure) const;

  // Retries (docs/resilience.md). `replayable`: the request body can be sent again (all of it
  // kept, or none of it sent yet). True: the attempt is abandoned (host released, counted) and
  // the caller drops its upstream, then calls pickRetryHost() after backoff().
  bool startRetry(const upstream::AttemptOutcome& outcome, bool replayable);
  Duration backoff();
  // The host for the next attempt (another one when there is one), started on the balancer;
  // null when none is left (answer 503 "no healthy upstream").
  const upstream::Host* pickRetryHost();
  // Asks the cluster's pool for a connection to `host` for `user`, counting what the pool says:
  // a pending wait (the caller subtracts it when the wait ends), a pending-queue overflow, a
  // connect failure (also fed to outlier detection). `ready` is set for kReady, `error` for
  // kFailed. `fresh`: a new connection, never a pooled one (ConnPool::acquire).
  upstream::ConnPool::Acquire acquire(upstream::PoolUser& user, upstream::PooledConnection*& ready,
                                      std::string& error, bool fresh = false);
  // The same for a protocol HTTP2 cluster: a stream from its Http2Pool.
  upstream::ConnPool::Acquire acquireH2(upstream::Http2StreamUser& user,
                                        upstream::Http2Connection*& ready, std::string& error);
  // The response head of the current attempt arrived from an HTTP/2 upstream: keeps the fields
  // the access logs print.
  void keepResponseHeaders(const ListenerInfo& li, std::span<const http::HeaderField> fields);
  // Ends the current host's request on the balancer (not for a passthrough host). Idempotent.
  void releaseHost();
  // Passive health: a connect failure, reset or timeout of the current attempt.
  void noteLocalFailure();
  // A response head arrived from the current host (outlier detection).
  void noteResponse(int http_status);

  // Counts the finished exchange on the listener, route and cluster and writes the access log
  // lines. `conn` is the downstream connection (addresses, SNI). Idempotent per exchange.
  void logAndCount(const ListenerInfo& li, const net::Connection& conn, uint64_t bytes_received,
                   uint64_t bytes_sent);
  // Copies the response headers the access logs print.
  void keepResponseHeaders(const ListenerInfo& li, const http1::MessageHead& h);
  // Back to "no exchange" (releases the breaker guards, the host set, the cluster).
  void reset();

  Worker& worker;
  bool active = false;  // between begin() and logAndCount()
  MonoTime start{};
  std::chrono::system_clock::time_point start_wall{};
  MonoTime upstream_sent{};  // the current attempt's head was handed to the upstream
  std::string method;
  http1::Method method_id = http1::Method::kOther;
  std::string path;  // target as received
  std::string authority;
  std::string request_id;
  std::string_view protocol = "HTTP/1.1";
  // Copies of the headers the access logs print (ListenerInfo::log_*_headers).
  std::vector<std::pair<std::string_view, std::string>> logged_request_headers;
  std::vector<std::pair<std::string_view, std::string>> logged_response_headers;
  int status = 0;
  const char* flags = "-";
  const http::RouteEntry* route_entry = nullptr;
  std::shared_ptr<const ClusterInfo> cluster;
  ClusterRuntime* cluster_rt = nullptr;
  const upstream::Host* host = nullptr;
  upstream::HostSetPtr host_set;  // keeps host alive
  // A request passed through to its original destination: `host` points here, and it is not
  // one of the cluster's hosts (no balancer or outlier bookkeeping).
  std::optional<upstream::Host> fixed_host;
  std::string upstream_host;
  upstream::CircuitBreaker::Guard rq_guard;
  upstream::CircuitBreaker::Guard retry_guard;
  const upstream::RetryPolicy* retry_policy = nullptr;  // null: no retries
  uint32_t retries_done = 0;
  std::vector<net::Address> tried;
  Duration timeout{};              // whole request (0: none)
  Duration stream_idle_timeout{};  // route idle timeout (0: none)
  bool grpc = false;               // content-type application/grpc*
};

// Writes a version-4 UUID (x-request-id) from the worker's generator.
void makeRequestId(upstream::Random& r, std::string& out);

// Calls emit(name, value) for every field of an upstream response head that goes to the client:
// hop-by-hop fields, framing (content-length unless `keep_content_length`), the upstream's server
// (unless preserved) and x-weft-upstream-service-time are dropped; the proxy's server and
// x-weft-upstream-service-time (`service_ms`, formatted into `scratch`) are added at the end.
template <class Emit>
void forEachResponseField(const http1::ResponseHead& h, const ListenerInfo& li,
                          bool keep_content_length, uint64_t service_ms, std::string& scratch,
                          Emit&& emit) {
  for (const http::HeaderField& f : h.headers) {
    if (h.isHopByHop(f)) continue;
    if (f.token == http::HeaderToken::kContentLength && !keep_content_length) continue;
    if (f.token == http::HeaderToken::kServer && !li.preserve_upstream_server) continue;
    if (f.name.size() == 28 && http::equalsIgnoreCase(f.name, "x-weft-upstream-service-time"))
      continue;
    emit(f.name, f.value);
  }
  if (!li.preserve_upstream_server || !h.find(http::HeaderToken::kServer))
    emit(std::string_view("server"), std::string_view(li.server_name));
  scratch = std::to_string(service_ms);
  emit(std::string_view("x-weft-upstream-service-time"), std::string_view(scratch));
}

// HTTP/1.1 Upgrade passthrough: the Upgrade value to forward for `h` (and then switch to a byte
// relay on 101), or empty when the request is proxied as a plain request: no Upgrade (or
// "upgrade" not among the Connection options, or HTTP/1.0), a request body (the switch would
// come before or in the middle of it), or h2c (RFC 9113 deprecates it; weft speaks to the
// upstream in the cluster's own protocol). CONNECT is not an upgrade.
std::string_view upgradeToForward(const http1::RequestHead& h);

// Calls emit(name, value) for every field of an HTTP/2 upstream response head (or trailers) that
// goes to the client: the upstream's server (unless preserved) and x-weft-upstream-service-time
// are dropped, and for a head (`service_ms` >= 0) the proxy's server and
// x-weft-upstream-service-time are added at the end.
template <class Emit>
void forEachH2ResponseField(std::span<const http::HeaderField> fields, const ListenerInfo& li,
                            int64_t service_ms, std::string& scratch, Emit&& emit) {
  bool had_server = false;
  for (const http::HeaderField& f : fields) {
    if (f.token == http::HeaderToken::kServer) {
      had_server = true;
      if (!li.preserve_upstream_server) continue;
    }
    if (f.name.size() == 28 && http::equalsIgnoreCase(f.name, "x-weft-upstream-service-time"))
      continue;
    emit(f.name, f.value);
  }
  if (service_ms < 0) return;
  if (!li.preserve_upstream_server || !had_server)
    emit(std::string_view("server"), std::string_view(li.server_name));
  scratch = std::to_string(service_ms);
  emit(std::string_view("x-weft-upstream-service-time"), std::string_view(scratch));
}

// gRPC (https://github.com/grpc/grpc/blob/master/doc/http-grpc-status-mapping.md, and Envoy's
// mapping for the proxy's own replies): the grpc-status for a local reply with HTTP `status`.
int grpcStatusForHttp(int status);
// The grpc-status value of a field, or -1 when it is not a small decimal number.
int parseGrpcStatus(std::string_view value);
// grpc-timeout ("1*8DIGIT unit", unit H M S m u n). nullopt when malformed.
std::optional<Duration> parseGrpcTimeout(std::string_view value);
// content-type application/grpc, application/grpc+proto, application/grpc;...
bool isGrpcContentType(std::string_view value);

}  // namespace weft::proxy
