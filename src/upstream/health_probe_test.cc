// TCP and HTTP/1 probes against real loopback listeners on port 0, driven by a real EventLoop.
// Bounded: every wait runs the loop until a condition holds or 2 s of real time pass.
#include "upstream/health_probe.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <optional>
#include <string>
#include <vector>

#include "upstream/health_checker.h"

namespace weft::upstream {
namespace {

// A loopback listener the test serves by hand: accepts, reads each request head, and answers
// with `response` (or closes when it is empty).
struct Server {
  Server() {
    fd = *net::listenTcp(*net::parseAddress("127.0.0.1", 0));
    addr = net::localAddress(fd);
  }
  ~Server() {
    for (auto& c : conns) ::close(c.fd);
    if (fd >= 0) ::close(fd);
  }
  void stopListening() {
    ::close(fd);
    fd = -1;
  }
  void poll() {
    if (fd >= 0) {
      for (;;) {
        int c = ::accept4(fd, nullptr, nullptr, SOCK_NONBLOCK);
        if (c < 0) break;
        conns.push_back({c, {}, false});
      }
    }
    for (auto& c : conns) {
      if (c.answered) continue;
      char buf[4096];
      ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
      if (n > 0) c.request.append(buf, size_t(n));
      if (c.request.find("\r\n\r\n") == std::string::npos) continue;
      requests.push_back(c.request);
      c.answered = true;
      if (response.empty()) {
        ::shutdown(c.fd, SHUT_RDWR);
      } else {
        (void)!::send(c.fd, response.data(), response.size(), MSG_NOSIGNAL);
      }
    }
  }
  struct Conn {
    int fd;
    std::string request;
    bool answered;
  };
  int fd;
  net::Address addr;
  std::string response = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
  std::vector<Conn> conns;
  std::vector<std::string> requests;
};

class ProbeTest : public ::testing::Test {
 protected:
  ProbeTest() : loop(time) {}
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
  // Starts `probe` and waits for its result.
  void runProbe(HealthProbe& probe) {
    result.reset();
    probe.start();
    EXPECT_FALSE(result.has_value()) << "a result must never come from inside start()";
    ASSERT_TRUE(runUntil([&] { return result.has_value(); })) << "no probe result within 2 s";
  }
  ProbeCallback callback() {
    return [this](bool ok, std::string_view d) { result = std::make_pair(ok, std::string(d)); };
  }

  SimTimeSource time;  // timers only; I/O is real
  net::EventLoop loop;
  Server server;
  std::optional<std::pair<bool, std::string>> result;
};

TEST_F(ProbeTest, TcpConnectSucceeds) {
  TcpProbeFactory f(loop);
  auto probe = f.create(Host(server.addr), callback());
  runProbe(*probe);
  EXPECT_TRUE(result->first) << result->second;
  // Reusable: a second check on the same probe.
  runProbe(*probe);
  EXPECT_TRUE(result->first) << result->second;
}

TEST_F(ProbeTest, TcpConnectRefused) {
  net::Address dead = server.addr;
  server.stopListening();
  TcpProbeFactory f(loop);
  auto probe = f.create(Host(dead), callback());
  runProbe(*probe);
  EXPECT_FALSE(result->first);
  EXPECT_NE(result->second.find("connect failed"), std::string::npos) << result->second;
}

TEST_F(ProbeTest, HttpExpectedStatus) {
  HttpProbeConfig c;
  c.path = "/healthz";
  HttpProbeFactory f(loop, c);
  auto probe = f.create(Host(server.addr), callback());
  runProbe(*probe);
  EXPECT_TRUE(result->first) << result->second;
  EXPECT_EQ(result->second, "status 200");
  ASSERT_EQ(server.requests.size(), 1u);
  const std::string& req = server.requests[0];
  EXPECT_EQ(req.rfind("GET /healthz HTTP/1.1\r\n", 0), 0u) << req;
  EXPECT_NE(req.find("host: " + server.addr.toString() + "\r\n"), std::string::npos) << req;
  EXPECT_NE(req.find("connection: close\r\n"), std::string::npos) << req;
}

TEST_F(ProbeTest, HttpUnexpectedStatusAndRange) {
  server.response = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
  HttpProbeFactory f(loop, HttpProbeConfig{});
  auto probe = f.create(Host(server.addr), callback());
  runProbe(*probe);
  EXPECT_FALSE(result->first);
  EXPECT_EQ(result->second, "status 503");
  server.response = "HTTP/1.0 302 Found\r\n\r\n";
  runProbe(*probe);
  EXPECT_FALSE(result->first) << "default expects 200 only";
  HttpProbeConfig wide;
  wide.authority = "svc.local";
  wide.expected_min = 200;
  wide.expected_max = 399;
  HttpProbeFactory f2(loop, wide);
  auto probe2 = f2.create(Host(server.addr), callback());
  runProbe(*probe2);
  EXPECT_TRUE(result->first) << result->second;
  EXPECT_NE(server.requests.back().find("host: svc.local\r\n"), std::string::npos);
}

TEST_F(ProbeTest, HttpClosedBeforeStatusAndGarbage) {
  server.response.clear();  // close without answering
  HttpProbeFactory f(loop, HttpProbeConfig{});
  auto probe = f.create(Host(server.addr), callback());
  runProbe(*probe);
  EXPECT_FALSE(result->first);
  EXPECT_NE(result->second.find("closed before the status line"), std::string::npos)
      << result->second;
  server.response = "SSH-2.0-OpenSSH_9.2\r\n";
  runProbe(*probe);
  EXPECT_FALSE(result->first);
  EXPECT_EQ(result->second, "not an HTTP/1 response");
}

TEST_F(ProbeTest, CancelSuppressesTheCallback) {
  TcpProbeFactory f(loop);
  auto probe = f.create(Host(server.addr), callback());
  result.reset();
  probe->start();
  probe->cancel();
  // Let any events of the cancelled connection be dispatched.
  for (int i = 0; i < 5; ++i) {
    loop.runOnce(milliseconds(2));
    server.poll();
  }
  EXPECT_FALSE(result.has_value()) << "callback after cancel(): " << result->second;
}

TEST_F(ProbeTest, DestroyInFlightIsSafe) {
  HttpProbeFactory f(loop, HttpProbeConfig{});
  auto probe = f.create(Host(server.addr), callback());
  probe->start();
  loop.runOnce(milliseconds(2));
  probe.reset();
  for (int i = 0; i < 5; ++i) {
    loop.runOnce(milliseconds(2));
    server.poll();
  }
  EXPECT_FALSE(result.has_value());
}

TEST_F(ProbeTest, CheckerWithRealTcpProbes) {
  TcpProbeFactory f(loop);
  HealthCheckConfig c;
  c.interval = seconds(5);
  c.timeout = seconds(2);
  c.healthy_threshold = 2;
  c.unhealthy_threshold = 2;
  int changes = 0;
  stats::Registry registry(1);
  HealthCheckStats st;
  st.failure = registry.counter("weft_test_hc_failure_total");
  HealthChecker checker(c, f, loop.timers(), {nullptr, [&] { ++changes; }}, st);
  auto set = std::make_shared<const HostSet>(std::vector<Host>{Host(server.addr)});
  checker.update(*set);
  ASSERT_TRUE(runUntil([&] { return checker.healthy(server.addr); }))
      << "host never became healthy";
  server.stopListening();
  // Two failed checks, an interval apart on the simulated clock.
  for (uint64_t i = 1; i <= 2; ++i) {
    time.advance(seconds(5));
    ASSERT_TRUE(runUntil([&] { return st.failure->value() == i; }))
        << "check " << i << " did not fail; failures: " << st.failure->value();
    if (i == 1) {
      EXPECT_TRUE(checker.healthy(server.addr)) << "one failure of threshold 2";
    }
  }
  EXPECT_FALSE(checker.healthy(server.addr)) << "still healthy after two refused connects";
  EXPECT_GE(changes, 2);
}

TEST_F(ProbeTest, HealthCheckPortOverride) {
  // The endpoint's own port is dead; the health-check port is the live server.
  Server dead;
  net::Address endpoint = dead.addr;
  dead.stopListening();
  TcpProbeFactory f(loop, nullptr, server.addr.port());
  auto probe = f.create(Host(endpoint), callback());
  runProbe(*probe);
  EXPECT_TRUE(result->first) << "probe should go to port " << server.addr.port() << ": "
                             << result->second;
  HttpProbeConfig c;
  c.port = server.addr.port();
  HttpProbeFactory hf(loop, c);
  auto hprobe = hf.create(Host(endpoint), callback());
  runProbe(*hprobe);
  EXPECT_TRUE(result->first) << result->second;
  EXPECT_EQ(withPort(*net::parseAddress("::1", 80), 8080).toString(), "[::1]:8080");
}

TEST(StatusLineTest, Parse) {
  EXPECT_EQ(parseStatusLine("HTTP/1.1 200 OK\r\n"), 200);
  EXPECT_EQ(parseStatusLine("HTTP/1.0 503\r\n"), 503);
  EXPECT_EQ(parseStatusLine("HTTP/1.1 204 \r\n"), 204);
  EXPECT_EQ(parseStatusLine("HTTP/1.1 20"), 0);
  EXPECT_EQ(parseStatusLine("HTT"), 0);
  EXPECT_EQ(parseStatusLine(""), 0);
  EXPECT_EQ(parseStatusLine("HTTP/2 200 OK\r\n"), -1);
  EXPECT_EQ(parseStatusLine("HTTP/1.1 2x0 OK\r\n"), -1);
  EXPECT_EQ(parseStatusLine("HTTP/1.1 0200 OK\r\n"), -1);
  EXPECT_EQ(parseStatusLine("HTTP/1.1 099 OK\r\n"), -1);
  EXPECT_EQ(parseStatusLine("GET / HTTP/1.1\r\n"), -1);
}

}  // namespace
}  // namespace weft::upstream
