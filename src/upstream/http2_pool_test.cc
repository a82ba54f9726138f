// Http2Pool against a real loopback socket whose far end is a server-mode http2::Codec driven by
// the test; the pools' timers run on a simulated clock.
#include "upstream/http2_pool.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "http/http2/test_peer.h"

namespace weft::upstream {
namespace {

// One accepted connection served by a server codec: bytes are moved by pump().
struct Peer {
  Peer(int fd, uint32_t max_streams, const TimeSource& time) : fd(fd) {
    http2::Options o;
    o.max_concurrent_streams = max_streams;
    auto created = http2::Codec::create(http2::Mode::kServer, o, rec, out, time);
    codec = std::move(*created);
    rec.codec = codec.get();
  }
  ~Peer() { ::close(fd); }
  void pump() {
    char buf[65536];
    for (;;) {
      ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n <= 0) break;
      (void)codec->feed(std::string_view(buf, static_cast<size_t>(n)));
    }
    while (!out.empty()) {
      ssize_t n = ::send(fd, out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n <= 0) break;
      out.consume(static_cast<size_t>(n));
    }
  }
  void respond(int32_t id, int status) {
    (void)codec->submitResponse(id, status, {}, true);
    pump();
  }
  int fd;
  Buffer out;
  http2::testing::Recorder rec;
  std::unique_ptr<http2::Codec> codec;
};

struct User : Http2StreamUser {
  void onH2Ready(Http2Connection& c) override {
    conn = &c;
    http2::RequestHeaders req{"GET", "http", "test", "/", {}};
    auto r = c.submit(*this, req, true);
    if (r) {
      id = *r;
    } else {
      submit_error = r.error().message;
    }
  }
  void onH2Failure(net::CloseReason, std::string_view d, const net::Connection*) override {
    failure = d;
  }
  void onH2Headers(const http2::HeaderBlock& b) override { status = b.status; }
  void onH2Data(std::string_view d) override { conn->consume(id, d.size()); }
  void onH2End() override { ended = true; }
  void onH2Close(http2::CloseCause c, uint32_t, std::string_view) override {
    closed = true;
    cause = c;
  }
  Http2Connection* conn = nullptr;
  int32_t id = 0;
  int status = 0;
  bool ended = false, closed = false;
  http2::CloseCause cause = http2::CloseCause::kComplete;
  std::string failure, submit_error;
};

class Http2PoolTest : public ::testing::Test {
 protected:
  Http2PoolTest()
      : loop(time),
        host(listenAddress()),
        pool(loop, limits(), [](int fd, const Host&) { return net::makePlainTransport(fd); }),
        h2pool(loop, pool, limits(), time) {}
  ~Http2PoolTest() override { ::close(listen_fd); }
  net::Address listenAddress() {
    auto a = net::parseAddress("127.0.0.1", 0);
    listen_fd = *net::listenTcp(*a);
    return net::localAddress(listen_fd);
  }
  static PoolLimits limits() {
    PoolLimits l;
    l.max_connections = 8;
    l.max_pending = 16;
    l.idle_timeout = seconds(30);
    return l;
  }
  // Runs the loop (and every peer) until `cond` or 2 s of real time; new connections get a
  // peer announcing `max_streams`.
  template <class F>
  bool runUntil(F cond, uint32_t max_streams = 100) {
    auto deadline = std::chrono::steady_clock::now() + seconds(2);
    while (!cond()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      loop.runOnce(milliseconds(5));
      for (;;) {
        int c = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK);
        if (c < 0) break;
        peers.push_back(std::make_unique<Peer>(c, max_streams, time));
      }
      for (auto& p : peers) p->pump();
    }
    return true;
  }
  SimTimeSource time;
  net::EventLoop loop;
  int listen_fd = -1;
  Host host;
  ConnPool pool;
  Http2Pool h2pool;
  std::vector<std::unique_ptr<Peer>> peers;
};

TEST_F(Http2PoolTest, StreamsWaitForSettingsThenShareOneConnection) {
  User a, b;
  Http2Connection* out = nullptr;
  std::string err;
  ASSERT_EQ(h2pool.acquire(host, a, out, err), ConnPool::Acquire::kPending) << err;
  ASSERT_EQ(h2pool.acquire(host, b, out, err), ConnPool::Acquire::kPending)
      << "the second request should wait for the same connection";
  ASSERT_TRUE(runUntil([&] { return a.id && b.id; })) << "streams never opened";
  EXPECT_EQ(a.conn, b.conn);
  EXPECT_EQ(pool.openConnections(), 1u);
  ASSERT_TRUE(runUntil([&] { return peers.size() == 1 && peers[0]->rec.streams.size() == 2; }));
  for (auto& [id, log] : peers[0]->rec.streams) peers[0]->respond(id, 200);
  ASSERT_TRUE(runUntil([&] { return a.ended && b.ended; }));
  EXPECT_EQ(a.status, 200);
  a.conn->release(a.id, 0);
  b.conn->release(b.id, 0);
  // Now ready: a third request is served at once on the same connection.
  User c;
  ASSERT_EQ(h2pool.acquire(host, c, out, err), ConnPool::Acquire::kReady);
  c.onH2Ready(*out);
  EXPECT_TRUE(c.id > 0) << c.submit_error;
  c.conn->release(c.id, 0);
}

TEST_F(Http2PoolTest, PeerStreamLimitOpensMoreConnections) {
  std::vector<std::unique_ptr<User>> users;
  Http2Connection* out = nullptr;
  std::string err;
  for (int i = 0; i < 5; ++i) {
    users.push_back(std::make_unique<User>());
    auto a = h2pool.acquire(host, *users.back(), out, err);
    ASSERT_EQ(a, ConnPool::Acquire::kPending) << i << " " << err;
  }
  auto all_open = [&] {
    for (auto& u : users)
      if (!u->id) return false;
    return true;
  };
  ASSERT_TRUE(runUntil(all_open, /*max_streams=*/2)) << "not every request got a stream";
  EXPECT_EQ(pool.openConnections(), 3u) << "5 streams at 2 per connection";
  for (auto& p : peers) EXPECT_LE(p->rec.streams.size(), 2u) << "a peer's limit was exceeded";
  for (auto& u : users) u->conn->release(u->id, 0);
}

TEST_F(Http2PoolTest, GoawayRetiresTheConnection) {
  User a;
  Http2Connection* out = nullptr;
  std::string err;
  ASSERT_EQ(h2pool.acquire(host, a, out, err), ConnPool::Acquire::kPending);
  ASSERT_TRUE(runUntil([&] { return a.id != 0 && !peers.empty(); }));
  ASSERT_TRUE(runUntil([&] { return !peers[0]->rec.streams.empty(); }));
  (void)peers[0]->codec->drain();  // GOAWAY(last stream = a's)
  peers[0]->pump();
  ASSERT_TRUE(runUntil([&] { return !a.conn->acceptsStreams(); }))
      << "a connection whose peer sent GOAWAY must not take new streams";
  User b;
  ASSERT_EQ(h2pool.acquire(host, b, out, err), ConnPool::Acquire::kPending);
  peers[0]->respond(a.id, 200);
  ASSERT_TRUE(runUntil([&] { return a.closed; }));
  // Closed: the stream is gone and nothing is released (as the sessions do); the retired
  // connection may already be freed, so a.conn is not touched again.
  ASSERT_TRUE(runUntil([&] { return b.id > 0; })) << "the waiter should get a new connection";
  EXPECT_NE(b.conn, a.conn);
  ASSERT_TRUE(runUntil([&] { return pool.openConnections() == 1; }))
      << "the retired connection should close once its last stream ended";
  b.conn->release(b.id, 0);
}

TEST_F(Http2PoolTest, RefusedStreamIsReportedAsRefused) {
  User a;
  Http2Connection* out = nullptr;
  std::string err;
  ASSERT_EQ(h2pool.acquire(host, a, out, err), ConnPool::Acquire::kPending);
  ASSERT_TRUE(runUntil([&] { return a.id != 0 && !peers.empty(); }));
  ASSERT_TRUE(runUntil([&] { return !peers[0]->rec.streams.empty(); }));
  (void)peers[0]->codec->resetStream(a.id, http2::kRefusedStream);
  peers[0]->pump();
  ASSERT_TRUE(runUntil([&] { return a.closed; }));
  EXPECT_EQ(a.cause, http2::CloseCause::kRefused);
}

TEST_F(Http2PoolTest, IdleConnectionClosesAfterIdleTimeout) {
  User a;
  Http2Connection* out = nullptr;
  std::string err;
  ASSERT_EQ(h2pool.acquire(host, a, out, err), ConnPool::Acquire::kPending);
  ASSERT_TRUE(runUntil([&] { return a.id != 0 && !peers.empty(); }));
  ASSERT_TRUE(runUntil([&] { return !peers[0]->rec.streams.empty(); }));
  peers[0]->respond(a.id, 204);
  ASSERT_TRUE(runUntil([&] { return a.ended; }));
  a.conn->release(a.id, 0);
  ASSERT_TRUE(runUntil([&] { return h2pool.openConnections() == 1; }));
  time.advance(seconds(29));
  loop.runOnce(milliseconds(0));
  EXPECT_EQ(h2pool.openConnections(), 1u) << "closed before the idle timeout";
  time.advance(seconds(2));
  ASSERT_TRUE(runUntil([&] { return h2pool.openConnections() == 0; }))
      << "still open after the idle timeout";
  ASSERT_TRUE(runUntil([&] { return pool.openConnections() == 0; }));
}

TEST_F(Http2PoolTest, ConnectFailureFailsTheWaiters) {
  auto a = net::parseAddress("127.0.0.1", 0);
  int fd = *net::listenTcp(*a);
  Host dead(net::localAddress(fd));
  ::close(fd);  // nothing listens there now
  User u, v;
  Http2Connection* out = nullptr;
  std::string err;
  auto r = h2pool.acquire(dead, u, out, err);
  if (r == ConnPool::Acquire::kFailed) return;  // refused at once: nothing queued
  ASSERT_EQ(r, ConnPool::Acquire::kPending);
  ASSERT_EQ(h2pool.acquire(dead, v, out, err), ConnPool::Acquire::kPending);
  ASSERT_TRUE(runUntil([&] { return !u.failure.empty() && !v.failure.empty(); }))
      << "both waiters should hear of the failed connect";
  EXPECT_EQ(h2pool.pendingRequests(), 0u);
}

}  // namespace
}  // namespace weft::upstream
