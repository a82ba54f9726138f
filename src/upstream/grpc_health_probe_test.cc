// gRPC health probes against a real loopback listener served by the project's own HTTP/2 codec
// (server mode), driven by a real EventLoop. Bounded: each wait gives up after 2 s.
#include "upstream/grpc_health_probe.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <optional>

#include "common/buffer.h"
#include "http/http2/codec.h"
#include "net/socket.h"

namespace weft::upstream {
namespace {

TEST(GrpcHealthMessages, RequestEncodingAndStatusDecoding) {
  EXPECT_EQ(grpcHealthRequest(""), std::string("\0\0\0\0\0", 5));
  EXPECT_EQ(grpcHealthRequest("svc"), std::string("\0\0\0\0\x05\x0a\x03svc", 10));
  EXPECT_EQ(grpcHealthStatus(std::string("\0\0\0\0\x02\x08\x01", 7)), 1);
  EXPECT_EQ(grpcHealthStatus(std::string("\0\0\0\0\x02\x08\x02", 7)), 2);
  EXPECT_EQ(grpcHealthStatus(std::string("\0\0\0\0\0", 5)), 0) << "absent field: UNKNOWN";
  // An unknown length-delimited field before the status is skipped.
  EXPECT_EQ(grpcHealthStatus(std::string("\0\0\0\0\x05\x12\x01x\x08\x01", 10)), 1);
  EXPECT_EQ(grpcHealthStatus(std::string("\0\0\0\0\x03\x08\x01", 7)), -1) << "length mismatch";
  EXPECT_EQ(grpcHealthStatus(std::string("\x01\0\0\0\x02\x08\x01", 7)), -1) << "compressed";
  EXPECT_EQ(grpcHealthStatus(std::string("\0\0\0\0\x01\x08", 6)), -1) << "truncated varint";
  EXPECT_EQ(grpcHealthStatus(std::string("\0\0\0\0\x02\x12\x09", 7)), -1) << "overlong field";
}

TEST(GrpcFraming, FrameUnframeAndStreamingReader) {
  EXPECT_EQ(grpcFrame("ab"), std::string("\0\0\0\0\x02"
                                         "ab",
                                         7));
  EXPECT_EQ(grpcUnframe(grpcFrame("xyz")), std::optional<std::string_view>("xyz"));
  EXPECT_FALSE(grpcUnframe(std::string("\x01\0\0\0\x01x", 6))) << "compressed";
  EXPECT_FALSE(grpcUnframe(grpcFrame("xyz") + "!")) << "trailing bytes";

  GrpcMessageReader r(16);
  std::string two = grpcFrame("first") + grpcFrame("");
  // Byte by byte: nothing until a message is complete.
  std::vector<std::string> got;
  for (char c : two + grpcFrame("third")) {
    r.append(std::string_view(&c, 1));
    for (;;) {
      auto m = r.next();
      ASSERT_TRUE(m) << m.error().message;
      if (!*m) break;
      got.push_back(**m);
    }
  }
  EXPECT_EQ(got, (std::vector<std::string>{"first", "", "third"}));
  EXPECT_EQ(r.buffered(), 0u);

  GrpcMessageReader small(4);
  small.append(grpcFrame("12345"));
  auto big = small.next();
  ASSERT_FALSE(big) << "expected a message over the limit to be an error";
  EXPECT_NE(big.error().message.find("over the limit"), std::string::npos) << big.error().message;
  GrpcMessageReader z(16);
  z.append(std::string("\x01\0\0\0\x01x", 6));
  auto compressed = z.next();
  ASSERT_FALSE(compressed);
  EXPECT_NE(compressed.error().message.find("compressed"), std::string::npos);
}

// One h2 server connection at a time, answering every request with `serving` status.
struct H2Server : http2::Callbacks {
  H2Server() {
    fd = *net::listenTcp(*net::parseAddress("127.0.0.1", 0));
    addr = net::localAddress(fd);
  }
  ~H2Server() {
    if (conn >= 0) ::close(conn);
    ::close(fd);
  }
  void poll() {
    if (conn < 0) {
      conn = ::accept4(fd, nullptr, nullptr, SOCK_NONBLOCK);
      if (conn < 0) return;
      codec = std::move(http2::Codec::create(http2::Mode::kServer, {}, *this, out, time).value());
    }
    char buf[16384];
    ssize_t n = ::recv(conn, buf, sizeof buf, 0);
    if (n > 0) (void)codec->feed(std::string_view(buf, size_t(n)));
    if (n == 0) {
      ::close(conn);
      conn = -1;
      codec.reset();
      out.clear();
      return;
    }
    while (!out.empty()) {
      ssize_t w = ::send(conn, out.view().data(), out.size(), MSG_NOSIGNAL);
      if (w <= 0) break;
      out.consume(size_t(w));
    }
  }
  void onHeaders(int32_t, const http2::HeaderBlock& b) override {
    path = std::string(b.path);
    scheme = std::string(b.scheme);
  }
  void onData(int32_t id, std::string_view d) override {
    body.append(d);
    codec->consume(id, d.size());
  }
  void onStreamEnd(int32_t id) override {
    std::array<http::HeaderField, 1> head{
        {{"content-type", "application/grpc", http::HeaderToken::kContentType}}};
    (void)codec->submitResponse(id, http_status, head, false);
    std::string msg("\0\0\0\0\x02\x08", 6);
    msg.push_back(static_cast<char>(serving));
    (void)codec->sendData(id, msg, false);
    std::string gs = std::to_string(grpc_status);
    std::array<http::HeaderField, 1> trailers{
        {{"grpc-status", gs, http::HeaderToken::kGrpcStatus}}};
    (void)codec->submitTrailers(id, trailers);
  }
  void onStreamClose(int32_t, http2::CloseCause, uint32_t) override {}

  SimTimeSource time;
  int fd;
  int conn = -1;
  net::Address addr;
  Buffer out;
  std::unique_ptr<http2::Codec> codec;
  std::string path, body, scheme;
  int serving = 1;
  int grpc_status = 0;
  int http_status = 200;
};

class GrpcProbeTest : public ::testing::Test {
 protected:
  GrpcProbeTest() : loop(time) {}
  template <class F>
  bool runUntil(F cond) {
    auto deadline = std::chrono::steady_clock::now() + seconds(2);
    while (!cond()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      loop.runOnce(milliseconds(5));
      server.poll();
    }
    return true;
  }
  struct Result {
    bool healthy;
    std::string detail;
  };
  std::optional<Result> check(GrpcProbeConfig cfg = {}) {
    GrpcHealthProbeFactory f(loop, time, cfg);
    Host host(server.addr);
    std::optional<Result> r;
    auto probe = f.create(host, [&](bool h, std::string_view d) { r = Result{h, std::string(d)}; });
    probe->start();
    EXPECT_TRUE(runUntil([&] { return r.has_value(); })) << "no probe result within 2 s";
    return r;
  }
  RealTimeSource time;
  net::EventLoop loop;
  H2Server server;
};

TEST_F(GrpcProbeTest, SchemeFollowsTheTransport) {
  ASSERT_TRUE(check());
  EXPECT_EQ(server.scheme, "http");
  GrpcProbeConfig tls;
  tls.secure = true;
  ASSERT_TRUE(check(tls));
  EXPECT_EQ(server.scheme, "https");
}

TEST_F(GrpcProbeTest, ServingIsHealthy) {
  auto r = check({.service = "crystal"});
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->healthy) << r->detail;
  EXPECT_EQ(r->detail, "SERVING");
  EXPECT_EQ(server.path, "/grpc.health.v1.Health/Check");
  EXPECT_EQ(server.body, grpcHealthRequest("crystal"));
}

TEST_F(GrpcProbeTest, NotServingGrpcErrorsAndHttpErrorsAreUnhealthy) {
  server.serving = 2;
  auto r = check();
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->healthy);
  EXPECT_EQ(r->detail, "NOT_SERVING");

  server.serving = 1;
  server.grpc_status = 12;  // UNIMPLEMENTED: the server has no health service
  r = check();
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->healthy);
  EXPECT_EQ(r->detail, "grpc-status 12");

  server.grpc_status = 0;
  server.http_status = 503;
  r = check();
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->healthy);
  EXPECT_EQ(r->detail, "HTTP status 503");
}

TEST_F(GrpcProbeTest, RefusedConnectionIsUnhealthy) {
  net::Address dead = server.addr;
  ::close(server.fd);
  server.fd = *net::listenTcp(*net::parseAddress("127.0.0.1", 0));  // keep the dtor happy
  GrpcHealthProbeFactory f(loop, time, {});
  Host host(dead);
  std::optional<bool> healthy;
  std::string detail;
  auto probe = f.create(host, [&](bool h, std::string_view d) {
    healthy = h;
    detail = d;
  });
  probe->start();
  ASSERT_TRUE(runUntil([&] { return healthy.has_value(); }));
  EXPECT_FALSE(*healthy);
  EXPECT_NE(detail.find("connect"), std::string::npos) << detail;
}

}  // namespace
}  // namespace weft::upstream

namespace weft::upstream {
namespace {

TEST_F(GrpcProbeTest, Http2GetProbeJudgesTheStatus) {
  auto probe = [&](HttpProbeConfig cfg) {
    Http2ProbeFactory f(loop, time, cfg);
    Host host(server.addr);
    std::optional<Result> r;
    auto p = f.create(host, [&](bool h, std::string_view d) { r = Result{h, std::string(d)}; });
    p->start();
    EXPECT_TRUE(runUntil([&] { return r.has_value(); })) << "no probe result within 2 s";
    return r;
  };
  auto r = probe({.path = "/health"});
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->healthy) << r->detail;
  EXPECT_EQ(r->detail, "HTTP status 200");
  EXPECT_EQ(server.path, "/health") << "a GET of the configured path";
  EXPECT_EQ(server.body, "") << "no request body";
  EXPECT_EQ(server.scheme, "http");
  r = probe({.path = "/health", .secure = true});
  ASSERT_TRUE(r);
  EXPECT_EQ(server.scheme, "https") << "a probe over TLS says so in :scheme";

  server.http_status = 503;
  r = probe({.path = "/health"});
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->healthy);
  EXPECT_EQ(r->detail, "HTTP status 503");

  r = probe({.path = "/health", .expected_min = 500, .expected_max = 503});
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->healthy) << "503 is inside the expected range 500-503: " << r->detail;
}

}  // namespace
}  // namespace weft::upstream
