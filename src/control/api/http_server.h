#pragma once
// HttpServer: the control plane API's HTTP/1.1 server.
//
// Threads: one event-loop thread accepts connections and parses requests with weft's own
// HTTP/1 parser (and chunked decoder); complete requests go to a small pool of handler threads,
// because handlers block (SQLite, fsync). A handler's answer is posted back to the loop, which
// writes it. A connection carries one request at a time (pipelined requests wait in its input
// buffer); reading pauses while its request is being handled.
//
// Limits: the request head (64 KiB, 100 fields: 431), the body (1 MiB by default, or what
// check_head allows for the request: 413), the bytes of bodies held at once over all
// connections (64 MiB: 503), the time to receive one whole request once its first byte arrived
// (15 s: 408 and close), an idle keep-alive connection (60 s: closed), the number of connections
// (further ones are closed at once). check_head (the router's authentication of the head) runs
// before any body byte is read, so an unauthenticated client cannot make the server buffer a
// body.
//
// Shutdown: stop() stops accepting, closes idle connections, lets in-flight requests finish
// (their responses say `connection: close`) for at most drain_timeout, and drops requests still
// queued for the pool (never handled). Handlers still running at the deadline get
// handler_grace more to return; one still running after that is abandoned: its thread is
// detached (logged as an error; abandonedHandlers() counts them), its answer dropped, and
// stop() returns. So stop() always returns within drain_timeout + handler_grace (plus the
// time to join the loop thread). An abandoned handler still uses what the Handler captured:
// its owner must then not destroy those objects but end the process (weft server exits).
// The handler is never called after stop() returns.
//
// Thread-safety: start() and stop() from one controlling thread; the handler is called
// concurrently from the pool threads.

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/result.h"
#include "common/time.h"
#include "control/api/api_types.h"
#include "net/socket.h"

namespace weft::control {

// One request as received, owned. Path and query are still percent-encoded (SigV4 signs them
// in that form); header names are lower-cased, values as received, in order.
struct HttpRequest {
  std::string method;
  std::string path;   // before '?', e.g. "/v20190125/meshes/m1"
  std::string query;  // after '?', without it; empty if none
  HeaderList headers;
  std::string body;        // de-chunked if it came chunked
  std::string peer;        // "127.0.0.1:54321", for logs
  std::string request_id;  // also sent back as x-amzn-RequestId

  const std::string* header(std::string_view lower_name) const {
    for (const auto& [k, v] : headers)
      if (k == lower_name) return &v;
    return nullptr;
  }
};

// What HttpServerOptions::check_head decided about a request head.
struct HeadCheck {
  // Set: answer this at once, without reading the body, and close the connection.
  std::optional<ApiResponse> refuse;
  // This request's body limit; 0: HttpServerOptions::max_body_bytes.
  size_t max_body_bytes = 0;
};
// Called on the event-loop thread with a request whose head is parsed and whose body is not
// read yet (HttpRequest::body empty). Must be quick: it delays every connection.
using HeadChecker = std::function<HeadCheck(const HttpRequest& head)>;

struct HttpServerOptions {
  size_t max_head_bytes = 64 << 10;
  size_t max_headers = 100;
  // Body limit (413) unless check_head sets another for the request.
  size_t max_body_bytes = 1 << 20;
  // Bytes of request bodies the server holds at once, over all connections (received and not
  // yet answered). A request whose body would go over it answers 503
  // ServiceUnavailableException and its connection is closed.
  size_t max_buffered_body_bytes = 64 << 20;
  // Optional; see HeadChecker. Without it every head is accepted.
  HeadChecker check_head;
  Duration request_timeout = seconds(15);
  Duration idle_timeout = seconds(60);
  Duration drain_timeout = seconds(15);
  Duration handler_grace = seconds(5);
  size_t handler_threads = 4;
  size_t max_connections = 1024;
};

class HttpServer {
 public:
  // Called on a pool thread; must be thread-safe.
  using Handler = std::function<ApiResponse(const HttpRequest&)>;

  HttpServer(HttpServerOptions options, Handler handler,
             const TimeSource& time = RealTimeSource::instance());
  ~HttpServer();  // stop()s if running
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds `address` (port 0 picks one), starts the loop and the pool. Answers the bound address.
  Result<net::Address> start(const net::Address& address);
  // See the file comment. Idempotent.
  void stop();
  // Handler calls abandoned by stop() (still running after drain_timeout + handler_grace).
  size_t abandonedHandlers() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// "HTTP/1.1 <status> <reason>\r\n", headers and body of a response, as the server writes it.
// `close` adds `connection: close`; `head` omits the body (a response to HEAD).
std::string serializeResponse(const ApiResponse& response, std::string_view request_id, bool close,
                              bool head);

}  // namespace weft::control
