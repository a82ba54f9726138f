// Connection::flushSoon: writes deferred to the end of the loop's dispatch round, over real
// loopback sockets (the loop is driven by hand with runOnce).
#include "net/connection.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <string>

#include "net/transport.h"

namespace weft::net {
namespace {

struct Callbacks : ConnectionCallbacks {
  std::function<void(Connection&)> on_data;
  bool closed = false;
  void onData(Connection& conn) override {
    conn.input().consume(conn.input().size());
    if (on_data) on_data(conn);
  }
  void onClose(Connection&, CloseReason, std::string_view) override { closed = true; }
};

// A listening socket and raw clients; each accepted side becomes a Connection on `loop`.
class FlushSoonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto addr = parseAddress("127.0.0.1", 0);
    ASSERT_TRUE(addr.has_value());
    auto l = listenTcp(*addr);
    ASSERT_TRUE(l.has_value()) << l.error().message;
    listener_ = *l;
  }
  void TearDown() override {
    for (int fd : clients_) ::close(fd);
    ::close(listener_);
  }

  // Connects a raw client and wraps the accepted socket in a Connection with `cb`.
  std::unique_ptr<Connection> accept(Callbacks& cb, int* client_fd) {
    auto c = connectTcp(localAddress(listener_));
    EXPECT_TRUE(c.has_value());
    clients_.push_back(*c);
    *client_fd = *c;
    pollfd p{listener_, POLLIN, 0};
    EXPECT_EQ(::poll(&p, 1, 10'000), 1) << "the loopback connect never arrived";
    int fd = ::accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    EXPECT_GE(fd, 0);
    return std::make_unique<Connection>(loop_, fd, makePlainTransport(fd), &cb, false);
  }

  // Runs rounds until `done` or 5 s of rounds have passed.
  void runUntil(const std::function<bool()>& done) {
    for (int i = 0; i < 500 && !done(); ++i) loop_.runOnce(std::chrono::milliseconds(10));
  }

  // Everything the client can read within 5 s, up to EOF or `want` bytes.
  static std::string readClient(int fd, size_t want, bool* eof = nullptr) {
    std::string got;
    while (got.size() < want || eof) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 5'000) != 1) break;
      char buf[256];
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) {
        if (eof) *eof = n == 0;
        break;
      }
      got.append(buf, static_cast<size_t>(n));
    }
    return got;
  }

  static void send(int fd, std::string_view s) {
    ASSERT_EQ(::send(fd, s.data(), s.size(), MSG_NOSIGNAL), static_cast<ssize_t>(s.size()));
  }

  EventLoop loop_;
  int listener_ = -1;
  std::vector<int> clients_;
};

TEST_F(FlushSoonTest, InsideADispatchRoundWritesOnceAtItsEnd) {
  Callbacks cb;
  int client;
  auto conn = accept(cb, &client);
  std::vector<uint64_t> written_in_callback;
  cb.on_data = [&](Connection& c) {
    c.output().append("frame-1;");
    c.flushSoon();
    written_in_callback.push_back(c.bytesWritten());
    c.output().append("frame-2;");
    c.flushSoon();
    written_in_callback.push_back(c.bytesWritten());
  };
  send(client, "go");
  runUntil([&] { return !written_in_callback.empty(); });
  ASSERT_EQ(written_in_callback.size(), 2u) << "onData never ran";
  EXPECT_EQ(written_in_callback[0], 0u) << "flushSoon wrote inside the round";
  EXPECT_EQ(written_in_callback[1], 0u) << "flushSoon wrote inside the round";
  // runOnce has returned: the round's end wrote both frames.
  EXPECT_EQ(conn->bytesWritten(), 16u);
  EXPECT_EQ(conn->pendingOutput(), 0u);
  EXPECT_EQ(readClient(client, 16), "frame-1;frame-2;");
}

TEST_F(FlushSoonTest, OutsideARoundWritesAtOnce) {
  Callbacks cb;
  int client;
  auto conn = accept(cb, &client);
  bool seen = false;
  cb.on_data = [&](Connection&) { seen = true; };
  send(client, "go");
  runUntil([&] { return seen; });  // the handshake (plaintext) has completed
  ASSERT_TRUE(seen);
  conn->output().append("now");
  conn->flushSoon();
  EXPECT_EQ(conn->bytesWritten(), 3u) << "no round is running: flushSoon must write now";
  EXPECT_EQ(readClient(client, 3), "now");
}

TEST_F(FlushSoonTest, AConnectionDestroyedBeforeTheRoundEndsIsSkipped) {
  Callbacks cb_a, cb_b;
  int client_a, client_b;
  auto a = accept(cb_a, &client_a);
  auto b = accept(cb_b, &client_b);
  bool b_open = false;
  cb_b.on_data = [&](Connection&) { b_open = true; };
  send(client_b, "go");
  runUntil([&] { return b_open; });
  ASSERT_TRUE(b_open);
  bool ran = false;
  cb_a.on_data = [&](Connection&) {
    b->output().append("never sent");
    b->flushSoon();
    b.reset();  // b is not inside a callback of its own: it may go now
    ran = true;
  };
  send(client_a, "go");
  runUntil([&] { return ran; });
  ASSERT_TRUE(ran);
  loop_.runOnce(std::chrono::milliseconds(0));
  bool eof = false;
  EXPECT_EQ(readClient(client_b, 1, &eof), "") << "a destroyed connection wrote";
  EXPECT_TRUE(eof) << "the destroyed connection's socket should be closed";
}

TEST_F(FlushSoonTest, CloseAfterFlushSoonDeliversTheBytesThenCloses) {
  Callbacks cb;
  int client;
  auto conn = accept(cb, &client);
  bool ran = false;
  cb.on_data = [&](Connection& c) {
    c.output().append("last words");
    c.flushSoon();
    c.close(true);
    ran = true;
  };
  send(client, "go");
  runUntil([&] { return ran; });
  ASSERT_TRUE(ran);
  runUntil([&] { return conn->closed(); });
  EXPECT_TRUE(conn->closed()) << "close(true) never completed after the deferred write";
  bool eof = false;
  EXPECT_EQ(readClient(client, 100, &eof), "last words");
  EXPECT_TRUE(eof) << "expected EOF after the bytes";
  EXPECT_FALSE(cb.closed) << "no onClose follows the owner's close()";
}

}  // namespace
}  // namespace weft::net
