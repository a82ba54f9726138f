// ConnPool against a real loopback listener, with the pool's timers on a simulated clock.
#include "upstream/pool.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

namespace weft::upstream {
namespace {

struct Listener {
  Listener() {
    auto a = net::parseAddress("127.0.0.1", 0);
    fd = *net::listenTcp(*a);
    addr = net::localAddress(fd);
  }
  ~Listener() {
    for (int c : accepted) ::close(c);
    ::close(fd);
  }
  // Accepts whatever is queued (the kernel completes handshakes without us).
  void acceptAll() {
    for (;;) {
      int c = ::accept4(fd, nullptr, nullptr, SOCK_NONBLOCK);
      if (c < 0) return;
      accepted.push_back(c);
    }
  }
  int fd;
  net::Address addr;
  std::vector<int> accepted;
};

struct User : PoolUser {
  void onUpstreamReady(PooledConnection& c) override { ready = &c; }
  void onUpstreamFailure(net::CloseReason, std::string_view d, const net::Connection*) override {
    failure = d;
  }
  void onUpstreamData(PooledConnection&) override {}
  void onUpstreamClosed(PooledConnection&, net::CloseReason, std::string_view) override {
    closed = true;
    ready = nullptr;
  }
  PooledConnection* ready = nullptr;
  std::string failure;
  bool closed = false;
};

class PoolTest : public ::testing::Test {
 protected:
  PoolTest()
      : loop(time),
        host(listener.addr),
        pool(loop, limits(), [](int fd, const Host&) { return net::makePlainTransport(fd); }) {}
  static PoolLimits limits() {
    PoolLimits l;
    l.max_connections = 2;
    l.max_pending = 1;
    l.idle_timeout = seconds(30);
    return l;
  }
  // Runs the loop until `cond` or 2 s of real time.
  template <class F>
  bool runUntil(F cond) {
    auto deadline = std::chrono::steady_clock::now() + seconds(2);
    while (!cond()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      loop.runOnce(milliseconds(10));
      listener.acceptAll();
    }
    return true;
  }
  SimTimeSource time;
  net::EventLoop loop;
  Listener listener;
  Host host;
  ConnPool pool;
};

TEST_F(PoolTest, ConnectsThenReusesAReleasedConnection) {
  User u;
  PooledConnection* out = nullptr;
  std::string err;
  ASSERT_EQ(pool.acquire(host, u, out, err), ConnPool::Acquire::kPending) << err;
  ASSERT_TRUE(runUntil([&] { return u.ready != nullptr; })) << "connection never became ready";
  PooledConnection* first = u.ready;
  EXPECT_EQ(first->uses(), 1u);
  pool.release(*first, true);
  EXPECT_EQ(pool.idleConnections(), 1u);

  User v;
  ASSERT_EQ(pool.acquire(host, v, out, err), ConnPool::Acquire::kReady);
  EXPECT_EQ(out, first) << "expected the idle connection to be reused";
  EXPECT_EQ(out->uses(), 2u);
  pool.release(*out, true);
}

TEST_F(PoolTest, LimitsQueueThenOverflow) {
  User a, b, c, d;
  PooledConnection* out = nullptr;
  std::string err;
  EXPECT_EQ(pool.acquire(host, a, out, err), ConnPool::Acquire::kPending);
  EXPECT_EQ(pool.acquire(host, b, out, err), ConnPool::Acquire::kPending);
  // max_connections = 2 reached: the third waits, the fourth overflows (max_pending = 1).
  EXPECT_EQ(pool.acquire(host, c, out, err), ConnPool::Acquire::kPending);
  EXPECT_EQ(pool.pendingRequests(), 1u);
  EXPECT_EQ(pool.acquire(host, d, out, err), ConnPool::Acquire::kOverflow);
  ASSERT_TRUE(runUntil([&] { return a.ready && b.ready; }));
  // Releasing one hands it straight to the waiter.
  PooledConnection* ac = a.ready;
  pool.release(*ac, true);
  EXPECT_EQ(c.ready, ac) << "the waiting request should get the released connection";
  EXPECT_EQ(pool.pendingRequests(), 0u);
  pool.release(*b.ready, true);
  pool.release(*c.ready, true);
}

TEST_F(PoolTest, IdleConnectionsCloseAfterIdleTimeout) {
  User u;
  PooledConnection* out = nullptr;
  std::string err;
  ASSERT_EQ(pool.acquire(host, u, out, err), ConnPool::Acquire::kPending);
  ASSERT_TRUE(runUntil([&] { return u.ready != nullptr; }));
  pool.release(*u.ready, true);
  ASSERT_EQ(pool.openConnections(), 1u);
  time.advance(seconds(29));
  loop.runOnce(milliseconds(0));
  EXPECT_EQ(pool.openConnections(), 1u) << "closed before the idle timeout";
  time.advance(seconds(2));
  loop.runOnce(milliseconds(0));
  EXPECT_EQ(pool.openConnections(), 0u) << "still open after the idle timeout";
}

TEST_F(PoolTest, ReleaseWithoutReuseCloses) {
  User u;
  PooledConnection* out = nullptr;
  std::string err;
  ASSERT_EQ(pool.acquire(host, u, out, err), ConnPool::Acquire::kPending);
  ASSERT_TRUE(runUntil([&] { return u.ready != nullptr; }));
  pool.release(*u.ready, false);
  EXPECT_EQ(pool.openConnections(), 0u);
}

TEST_F(PoolTest, RefusedConnectReportsFailure) {
  auto a = net::parseAddress("127.0.0.1", 0);
  int fd = *net::listenTcp(*a);
  net::Address closed_addr = net::localAddress(fd);
  ::close(fd);  // nothing listens there now
  Host dead(closed_addr);
  User u;
  PooledConnection* out = nullptr;
  std::string err;
  auto r = pool.acquire(dead, u, out, err);
  if (r == ConnPool::Acquire::kPending) {
    ASSERT_TRUE(runUntil([&] { return !u.failure.empty(); })) << "no failure reported";
  } else {
    EXPECT_EQ(r, ConnPool::Acquire::kFailed);
  }
  EXPECT_EQ(pool.openConnections(), 0u);
}

TEST_F(PoolTest, ConnectTimeoutOnSimulatedClock) {
  // A connect that never completes: the listener's backlog is irrelevant here, so simulate by
  // advancing the clock past connect_timeout before the loop ever runs the connection's events.
  User u;
  PooledConnection* out = nullptr;
  std::string err;
  ASSERT_EQ(pool.acquire(host, u, out, err), ConnPool::Acquire::kPending);
  time.advance(seconds(6));
  loop.timers().runExpired();
  EXPECT_EQ(u.failure, "connect timeout");
  EXPECT_EQ(pool.openConnections(), 0u);
}

TEST_F(PoolTest, FreshAcquireNeverTakesAnIdleConnection) {
  User u;
  PooledConnection* out = nullptr;
  std::string err;
  ASSERT_EQ(pool.acquire(host, u, out, err), ConnPool::Acquire::kPending);
  ASSERT_TRUE(runUntil([&] { return u.ready != nullptr; }));
  PooledConnection* idle = u.ready;
  pool.release(*idle, true);
  ASSERT_EQ(pool.idleConnections(), 1u);

  User v;
  EXPECT_EQ(pool.acquire(host, v, out, err, /*fresh=*/true), ConnPool::Acquire::kPending)
      << "a fresh acquire must connect anew, not reuse the idle connection";
  ASSERT_TRUE(runUntil([&] { return v.ready != nullptr; }));
  EXPECT_NE(v.ready, idle);
  EXPECT_EQ(v.ready->uses(), 1u);
  EXPECT_EQ(pool.idleConnections(), 1u) << "the idle connection should still be idle";
  pool.release(*v.ready, false);
}

TEST_F(PoolTest, FreshWaiterAtTheCapEvictsAnIdleConnectionInsteadOfTakingIt) {
  User a, b, c;
  PooledConnection* out = nullptr;
  std::string err;
  ASSERT_EQ(pool.acquire(host, a, out, err), ConnPool::Acquire::kPending);
  ASSERT_EQ(pool.acquire(host, b, out, err), ConnPool::Acquire::kPending);
  ASSERT_TRUE(runUntil([&] { return a.ready && b.ready; }));
  // At max_connections = 2 with none idle: the fresh request waits.
  ASSERT_EQ(pool.acquire(host, c, out, err, /*fresh=*/true), ConnPool::Acquire::kPending);
  ASSERT_EQ(pool.pendingRequests(), 1u);
  PooledConnection* released = a.ready;
  pool.release(*released, true);
  EXPECT_EQ(c.ready, nullptr) << "the fresh waiter was handed a reused connection";
  EXPECT_EQ(pool.pendingRequests(), 0u) << "the waiter should be connecting by now";
  ASSERT_TRUE(runUntil([&] { return c.ready != nullptr; }));
  EXPECT_EQ(c.ready->uses(), 1u);
  pool.release(*b.ready, false);
  pool.release(*c.ready, false);
}

// A pool destroyed (cluster retired by a reload, or shutdown) while a relay's connection is
// still flushing towards its close: the destructor closes it without running the release that
// the flushed-close callback would do (it used to erase from conns_ under the destructor's loop
// and count the connection out of cx_active twice).
TEST(PoolDestructorTest, DestroyWhileAConnectionIsFlushing) {
  SimTimeSource time;
  net::EventLoop loop(time);
  Listener listener;
  Host host(listener.addr);
  PoolLimits l;
  l.max_connections = 4;
  l.idle_timeout = seconds(30);
  PoolStats ps;
  ps.cx_active = std::make_shared<stats::Gauge>(1);
  auto pool = std::make_unique<ConnPool>(
      loop, l, [](int fd, const Host&) { return net::makePlainTransport(fd); }, ps);
  User u;
  PooledConnection* out = nullptr;
  std::string err;
  ASSERT_EQ(pool->acquire(host, u, out, err), ConnPool::Acquire::kPending) << err;
  auto deadline = std::chrono::steady_clock::now() + seconds(2);
  while (!u.ready && std::chrono::steady_clock::now() < deadline) {
    loop.runOnce(milliseconds(10));
    listener.acceptAll();
  }
  ASSERT_NE(u.ready, nullptr) << "connection never became ready";
  // The peer never reads: 16 MiB cannot all be written, so the close waits for the flush.
  u.ready->connection().output().append(std::string(16 << 20, 'x'));
  u.ready->connection().flush();
  ASSERT_GT(u.ready->connection().pendingOutput(), 0u) << "expected output still queued";
  pool->releaseAfterFlush(*u.ready);
  EXPECT_EQ(ps.cx_active->value(), 1);
  pool.reset();
  EXPECT_EQ(ps.cx_active->value(), 0) << "cx_active after the pool is gone";
  loop.runOnce(milliseconds(1));
}

}  // namespace
}  // namespace weft::upstream
