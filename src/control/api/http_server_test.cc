#include "control/api/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

namespace weft::control {
namespace {

// A blocking test client on one TCP connection.
class Client {
 public:
  explicit Client(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~Client() { ::close(fd_); }
  bool connected() const { return connected_; }
  void send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      data.remove_prefix(static_cast<size_t>(n));
    }
  }
  struct Response {
    int status = 0;
    std::string head;
    std::string body;
  };
  // Reads one response (content-length framed). status 0 if the connection ended first or
  // nothing came within `timeout_ms`.
  Response read(int timeout_ms = 5000) {
    Response r;
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos)
      if (!fill(timeout_ms)) return r;
    r.head = buf_.substr(0, end + 4);
    buf_.erase(0, end + 4);
    r.status = std::atoi(r.head.c_str() + 9);
    size_t cl = 0;
    auto pos = r.head.find("content-length: ");
    if (pos != std::string::npos) cl = std::strtoul(r.head.c_str() + pos + 16, nullptr, 10);
    while (buf_.size() < cl)
      if (!fill(timeout_ms)) return Response{};
    r.body = buf_.substr(0, cl);
    buf_.erase(0, cl);
    return r;
  }
  // True if the server closed the connection (EOF) within the timeout.
  bool closedByServer(int timeout_ms = 5000) {
    while (true) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, timeout_ms) <= 0) return false;
      char c[4096];
      ssize_t n = ::recv(fd_, c, sizeof c, 0);
      if (n <= 0) return true;
      buf_.append(c, static_cast<size_t>(n));
    }
  }

 private:
  bool fill(int timeout_ms) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    char c[65536];
    ssize_t n = ::recv(fd_, c, sizeof c, 0);
    if (n <= 0) return false;
    buf_.append(c, static_cast<size_t>(n));
    return true;
  }
  int fd_;
  bool connected_ = false;
  std::string buf_;
};

// Echoes what the server parsed, so tests can check it.
ApiResponse echo(const HttpRequest& r) {
  ApiResponse resp;
  resp.content_type = "text/plain";
  resp.body = r.method + " " + r.path + " ?" + r.query + " body=" + r.body;
  if (const std::string* h = r.header("x-test")) resp.body += " x-test=" + *h;
  return resp;
}

class HttpServerTest : public ::testing::Test {
 protected:
  uint16_t start(HttpServerOptions options = {}, HttpServer::Handler handler = echo) {
    server_ = std::make_unique<HttpServer>(options, std::move(handler));
    auto addr = net::parseAddress("127.0.0.1", 0);
    EXPECT_TRUE(addr);
    auto bound = server_->start(*addr);
    EXPECT_TRUE(bound) << bound.error().message;
    return bound ? bound->port() : 0;
  }
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpServerTest, ServesKeepAliveAndPipelinedRequests) {
  uint16_t port = start();
  Client c(port);
  ASSERT_TRUE(c.connected());
  c.send("GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\nX-Test: v\r\n\r\n");
  auto r1 = c.read();
  EXPECT_EQ(r1.status, 200) << r1.head;
  EXPECT_EQ(r1.body, "GET /a/b ?x=1 body= x-test=v");
  EXPECT_NE(r1.head.find("x-amzn-RequestId: "), std::string::npos) << r1.head;
  // Two pipelined requests, one with a body, on the same connection.
  c.send(
      "PUT /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
      "DELETE /q HTTP/1.1\r\nHost: h\r\n\r\n");
  auto r2 = c.read();
  EXPECT_EQ(r2.body, "PUT /p ? body=hello");
  auto r3 = c.read();
  EXPECT_EQ(r3.body, "DELETE /q ? body=");
}

TEST_F(HttpServerTest, BodyInPiecesAndChunked) {
  uint16_t port = start();
  Client c(port);
  c.send("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n01234");
  c.send("56789");
  EXPECT_EQ(c.read().body, "POST /x ? body=0123456789");
  c.send("POST /y HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
  c.send("2\r\nde\r\n0\r\n\r\n");
  EXPECT_EQ(c.read().body, "POST /y ? body=abcde");
}

TEST_F(HttpServerTest, ExpectContinue) {
  uint16_t port = start();
  Client c(port);
  c.send("PUT /e HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
  auto interim = c.read();
  EXPECT_EQ(interim.status, 100) << interim.head;
  c.send("ok");
  EXPECT_EQ(c.read().body, "PUT /e ? body=ok");
}

TEST_F(HttpServerTest, Limits) {
  HttpServerOptions o;
  o.max_body_bytes = 16;
  o.max_head_bytes = 1024;
  uint16_t port = start(o);
  {
    Client c(port);
    c.send("PUT /big HTTP/1.1\r\nHost: h\r\nContent-Length: 17\r\n\r\n");
    auto r = c.read();
    EXPECT_EQ(r.status, 413) << r.head;
    EXPECT_NE(r.head.find("x-amzn-ErrorType: PayloadTooLargeException"), std::string::npos)
        << r.head;
    EXPECT_TRUE(c.closedByServer());
  }
  {
    Client c(port);
    c.send("PUT /big HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
    c.send("10\r\n0123456789abcdef\r\n1\r\nx\r\n0\r\n\r\n");
    EXPECT_EQ(c.read().status, 413);
  }
  {
    Client c(port);
    c.send("GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + std::string(2000, 'a') + "\r\n\r\n");
    EXPECT_EQ(c.read().status, 431);
  }
  {
    Client c(port);
    c.send("GET / HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n");
    EXPECT_EQ(c.read().status, 400);
    EXPECT_TRUE(c.closedByServer());
  }
}

TEST_F(HttpServerTest, RequestAndIdleTimeouts) {
  HttpServerOptions o;
  o.request_timeout = milliseconds(200);
  o.idle_timeout = milliseconds(300);
  uint16_t port = start(o);
  {
    Client c(port);
    c.send("GET / HTTP/1.1\r\nHost: h\r\n");  // never finished
    auto r = c.read(5000);
    EXPECT_EQ(r.status, 408) << "expected 408 after the request timeout, got: " << r.head;
    EXPECT_TRUE(c.closedByServer());
  }
  {
    Client c(port);
    c.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_EQ(c.read().status, 200);
    EXPECT_TRUE(c.closedByServer(5000)) << "expected the idle connection to be closed";
  }
}

TEST_F(HttpServerTest, ConnectionCloseAndHttp10) {
  uint16_t port = start();
  {
    Client c(port);
    c.send("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    auto r = c.read();
    EXPECT_EQ(r.status, 200);
    EXPECT_NE(r.head.find("connection: close"), std::string::npos) << r.head;
    EXPECT_TRUE(c.closedByServer());
  }
  {
    Client c(port);
    c.send("GET / HTTP/1.0\r\n\r\n");
    EXPECT_EQ(c.read().status, 200);
    EXPECT_TRUE(c.closedByServer());
  }
}

TEST_F(HttpServerTest, HandlersRunConcurrentlyOffTheLoop) {
  // Two requests whose handlers each wait for the other: only possible on two threads.
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  HttpServerOptions o;
  o.handler_threads = 2;
  uint16_t port = start(o, [&](const HttpRequest& r) {
    std::unique_lock lock(mu);
    ++arrived;
    cv.notify_all();
    bool both = cv.wait_for(lock, std::chrono::seconds(5), [&] { return arrived >= 2; });
    ApiResponse resp;
    resp.body = both ? "both" : "alone";
    return resp;
  });
  Client a(port), b(port);
  a.send("GET /1 HTTP/1.1\r\nHost: h\r\n\r\n");
  b.send("GET /2 HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(a.read().body, "both");
  EXPECT_EQ(b.read().body, "both");
}

TEST_F(HttpServerTest, StopLetsInFlightRequestsFinish) {
  std::promise<void> entered;
  std::promise<void> release;
  auto release_f = release.get_future().share();
  uint16_t port = start({}, [&](const HttpRequest& r) {
    if (r.path == "/slow") {
      entered.set_value();
      release_f.wait();
    }
    return echo(r);
  });
  Client busy(port), idle(port);
  idle.send("GET /warm HTTP/1.1\r\nHost: h\r\n\r\n");
  busy.send("GET /slow HTTP/1.1\r\nHost: h\r\n\r\n");
  entered.get_future().wait();
  EXPECT_EQ(idle.read().status, 200);
  std::thread stopper([&] { server_->stop(); });
  EXPECT_TRUE(idle.closedByServer()) << "an idle connection closes when the drain starts";
  release.set_value();
  auto r = busy.read();
  EXPECT_EQ(r.status, 200) << "the in-flight request must be answered";
  EXPECT_EQ(r.body, "GET /slow ? body=");
  EXPECT_NE(r.head.find("connection: close"), std::string::npos) << r.head;
  stopper.join();
  Client late(port);
  EXPECT_FALSE(late.connected()) << "nothing listens after stop()";
}

// Regression (review item 1): a head that check_head refuses is answered before any body byte
// is sent, whatever Content-Length it announces; the accepted head gets its own body limit.
TEST_F(HttpServerTest, HeadCheckRefusesBeforeTheBodyAndSetsItsLimit) {
  HttpServerOptions o;
  o.max_body_bytes = 16;
  std::atomic<int> handled{0};
  o.check_head = [](const HttpRequest& head) {
    HeadCheck c;
    EXPECT_TRUE(head.body.empty()) << "check_head must see the head only";
    if (head.header("authorization") == nullptr) c.refuse = apiError(403, "Nope", "no");
    if (head.path == "/large") c.max_body_bytes = 64;
    return c;
  };
  uint16_t port = start(o, [&handled](const HttpRequest& r) {
    ++handled;
    return echo(r);
  });
  {
    Client c(port);
    c.send("PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\n");
    auto r = c.read();
    EXPECT_EQ(r.status, 403) << "expected a 403 before any body byte, got: " << r.head;
    EXPECT_TRUE(c.closedByServer());
  }
  {
    Client c(port);
    c.send("PUT /large HTTP/1.1\r\nHost: h\r\nAuthorization: a\r\nContent-Length: 40\r\n\r\n" +
           std::string(40, 'b'));
    auto r = c.read();
    EXPECT_EQ(r.status, 200) << r.head;
    c.send("PUT /small HTTP/1.1\r\nHost: h\r\nAuthorization: a\r\nContent-Length: 40\r\n\r\n");
    r = c.read();
    EXPECT_EQ(r.status, 413) << r.head;
  }
  EXPECT_EQ(handled.load(), 1) << "only the accepted request may reach the handler";
}

// Regression (review item 1): request bodies held at once are capped server-wide.
TEST_F(HttpServerTest, ServerWideBodyCapAnswers503) {
  HttpServerOptions o;
  o.max_body_bytes = 1000;
  o.max_buffered_body_bytes = 100;
  uint16_t port = start(o);
  Client a(port), b(port);
  a.send("PUT /a HTTP/1.1\r\nHost: h\r\nContent-Length: 90\r\n\r\n" + std::string(80, 'a'));
  // `a` now holds 80 bytes (its request is incomplete); `b` would bring the total over 100.
  b.send("PUT /b HTTP/1.1\r\nHost: h\r\nContent-Length: 50\r\n\r\n" + std::string(50, 'b'));
  auto r = b.read();
  EXPECT_EQ(r.status, 503) << r.head;
  EXPECT_NE(r.head.find("x-amzn-ErrorType: ServiceUnavailableException"), std::string::npos)
      << r.head;
  a.send(std::string(10, 'a'));
  EXPECT_EQ(a.read().status, 200) << "the held request completes";
  Client c(port);  // and the bytes are released after the answer
  c.send("PUT /c HTTP/1.1\r\nHost: h\r\nContent-Length: 90\r\n\r\n" + std::string(90, 'c'));
  EXPECT_EQ(c.read().status, 200);
}

std::string requestIdOf(const std::string& head) {
  auto pos = head.find("x-amzn-RequestId: ");
  if (pos == std::string::npos) return "";
  return head.substr(pos + 18, head.find("\r\n", pos) - pos - 18);
}

// Regression (review item 10): a refused head gets its own request id (not the previous
// request's) and a ...Exception type.
TEST_F(HttpServerTest, ParseFailureHasFreshRequestIdAndExceptionType) {
  HttpServerOptions o;
  o.max_head_bytes = 1024;
  uint16_t port = start(o);
  Client c(port);
  c.send("GET /one HTTP/1.1\r\nHost: h\r\n\r\n");
  auto first = c.read();
  ASSERT_EQ(first.status, 200) << first.head;
  c.send("GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + std::string(2000, 'a') + "\r\n\r\n");
  auto second = c.read();
  EXPECT_EQ(second.status, 431) << second.head;
  EXPECT_NE(second.head.find("x-amzn-ErrorType: RequestHeaderFieldsTooLargeException"),
            std::string::npos)
      << second.head;
  EXPECT_FALSE(requestIdOf(second.head).empty()) << second.head;
  EXPECT_NE(requestIdOf(first.head), requestIdOf(second.head))
      << "the failed request must not reuse the previous request's id";
}

// Regression (review item 2): stop() drops queued requests and does not wait forever for a
// handler that never returns.
TEST_F(HttpServerTest, StopDropsQueuedRequestsAndAbandonsStuckHandlers) {
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    bool release = false;
    int started = 0;
  };
  auto shared = std::make_shared<Shared>();
  HttpServerOptions o;
  o.handler_threads = 1;
  o.drain_timeout = milliseconds(100);
  o.handler_grace = milliseconds(100);
  uint16_t port = start(o, [shared](const HttpRequest& r) {
    std::unique_lock lock(shared->mu);
    ++shared->started;
    shared->cv.notify_all();
    shared->cv.wait(lock, [&] { return shared->release; });
    return echo(r);
  });
  Client a(port), b(port);
  a.send("GET /stuck HTTP/1.1\r\nHost: h\r\n\r\n");
  {
    std::unique_lock lock(shared->mu);
    ASSERT_TRUE(shared->cv.wait_for(lock, seconds(5), [&] { return shared->started == 1; }));
  }
  b.send("GET /queued HTTP/1.1\r\nHost: h\r\n\r\n");  // waits for the only pool thread
  auto done = std::async(std::launch::async, [this] { server_->stop(); });
  EXPECT_EQ(done.wait_for(seconds(10)), std::future_status::ready)
      << "stop() must return after drain_timeout + handler_grace";
  done.wait();
  EXPECT_EQ(server_->abandonedHandlers(), 1u);
  {
    std::lock_guard lock(shared->mu);
    shared->release = true;
  }
  shared->cv.notify_all();
  server_.reset();
  std::lock_guard lock(shared->mu);
  EXPECT_EQ(shared->started, 1) << "the queued request must be dropped, not handled";
}

TEST(SerializeResponseTest, Shape) {
  ApiResponse r = apiError(404, "NotFoundException", "gone");
  std::string s = serializeResponse(r, "rid", true, false);
  EXPECT_EQ(s, "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: " +
                   std::to_string(r.body.size()) +
                   "\r\nx-amzn-ErrorType: NotFoundException\r\nx-amzn-RequestId: rid\r\n"
                   "server: weft\r\nconnection: close\r\n\r\n" +
                   r.body);
  EXPECT_EQ(serializeResponse(r, "", false, true).find(r.body), std::string::npos)
      << "HEAD responses carry no body";
}

}  // namespace
}  // namespace weft::control
