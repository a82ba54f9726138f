#include "control/registry/dns_server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <map>

#include "common/log.h"
#include "control/registry/dns_answer.h"

namespace weft::control::registry {
namespace {

constexpr size_t kMaxTcpConnections = 256;
constexpr auto kTcpIdleTimeout = std::chrono::seconds(10);
constexpr int kTcpBindAttempts = 16;

Result<int> bindUdp(const net::Address& a) {
  int fd = ::socket(a.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return makeError("DNS UDP socket: " + std::string(std::strerror(errno)));
  if (::bind(fd, a.sa(), a.len) != 0) {
    std::string err = std::strerror(errno);
    ::close(fd);
    return makeError("DNS: cannot bind UDP " + a.toString() + ": " + err);
  }
  return fd;
}

}  // namespace

struct DnsServer::Impl {
  const SnapshotHolder& snapshots;
  const TimeSource& time;
  std::vector<int> udp_fds, tcp_fds;
  int wake_pipe[2] = {-1, -1};
  std::thread thread;
  uint64_t rotation = 0;

  struct TcpConn {
    std::string in, out;
    MonoTime last_activity;
    net::Address peer;
  };
  std::map<int, TcpConn> conns;

  Impl(const SnapshotHolder& s, const TimeSource& t) : snapshots(s), time(t) {}

  void closeAll() {
    for (int fd : udp_fds) ::close(fd);
    for (int fd : tcp_fds) ::close(fd);
    for (auto& [fd, c] : conns) ::close(fd);
    udp_fds.clear();
    tcp_fds.clear();
    conns.clear();
    for (int& fd : wake_pipe)
      if (fd >= 0) {
        ::close(fd);
        fd = -1;
      }
  }

  void serveUdp(int fd) {
    char buf[4096];
    for (int n = 0; n < 64; ++n) {  // bounded, so TCP gets its turn
      net::Address peer;
      peer.len = sizeof peer.storage;
      ssize_t got =
          ::recvfrom(fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&peer.storage), &peer.len);
      if (got < 0) return;
      std::string reply =
          answerDnsQuery(*snapshots.load(), std::string_view(buf, static_cast<size_t>(got)), peer,
                         Transport::kUdp, rotation++);
      if (!reply.empty()) ::sendto(fd, reply.data(), reply.size(), 0, peer.sa(), peer.len);
    }
  }

  void accept(int lfd) {
    while (true) {
      int fd = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      if (conns.size() >= kMaxTcpConnections) {
        ::close(fd);
        continue;
      }
      conns[fd] = TcpConn{{}, {}, time.monotonicNow(), net::peerAddress(fd)};
    }
  }

  // Answers false when the connection must close.
  bool serveTcp(int fd, TcpConn& c, short revents) {
    if (revents & POLLIN) {
      char buf[4096];
      while (true) {
        ssize_t got = ::recv(fd, buf, sizeof buf, 0);
        if (got == 0) return false;
        if (got < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
          return false;
        }
        c.in.append(buf, static_cast<size_t>(got));
        c.last_activity = time.monotonicNow();
        if (c.in.size() > 2 + 65535) return false;
      }
      while (c.in.size() >= 2) {
        size_t len = (static_cast<uint8_t>(c.in[0]) << 8) | static_cast<uint8_t>(c.in[1]);
        if (c.in.size() < 2 + len) break;
        std::string reply = answerDnsQuery(*snapshots.load(), std::string_view(c.in).substr(2, len),
                                           c.peer, Transport::kTcp, rotation++);
        c.in.erase(0, 2 + len);
        if (reply.empty()) continue;
        c.out.push_back(static_cast<char>(reply.size() >> 8));
        c.out.push_back(static_cast<char>(reply.size() & 0xFF));
        c.out += reply;
      }
      if (c.out.size() > (1u << 20)) return false;  // a client that sends but never reads
    } else if (revents & (POLLHUP | POLLERR)) {
      return false;
    }
    while (!c.out.empty()) {
      ssize_t sent = ::send(fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (sent < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
      c.out.erase(0, static_cast<size_t>(sent));
    }
    return true;
  }

  void run() {
    std::vector<pollfd> fds;
    while (true) {
      fds.clear();
      fds.push_back({wake_pipe[0], POLLIN, 0});
      for (int fd : udp_fds) fds.push_back({fd, POLLIN, 0});
      for (int fd : tcp_fds) fds.push_back({fd, POLLIN, 0});
      for (auto& [fd, c] : conns)
        fds.push_back({fd, static_cast<short>(POLLIN | (c.out.empty() ? 0 : POLLOUT)), 0});
      int n = ::poll(fds.data(), fds.size(), 1000);
      if (n < 0 && errno != EINTR) {
        log::error("dns", std::string("poll: ") + std::strerror(errno));
        return;
      }
      if (fds[0].revents) return;  // stop()
      size_t k = 1;
      for (size_t i = 0; i < udp_fds.size(); ++i, ++k)
        if (fds[k].revents & POLLIN) serveUdp(fds[k].fd);
      for (size_t i = 0; i < tcp_fds.size(); ++i, ++k)
        if (fds[k].revents & POLLIN) accept(fds[k].fd);
      MonoTime now = time.monotonicNow();
      for (; k < fds.size(); ++k) {
        auto it = conns.find(fds[k].fd);
        if (it == conns.end()) continue;
        bool keep = true;
        if (fds[k].revents) keep = serveTcp(fds[k].fd, it->second, fds[k].revents);
        if (keep && it->second.out.empty() && now - it->second.last_activity > kTcpIdleTimeout)
          keep = false;
        if (!keep) {
          ::close(it->first);
          conns.erase(it);
        }
      }
    }
  }
};

DnsServer::DnsServer(const SnapshotHolder& snapshots, const TimeSource& time)
    : impl_(std::make_unique<Impl>(snapshots, time)) {}

DnsServer::~DnsServer() { stop(); }

Result<std::vector<net::Address>> DnsServer::start(const std::vector<net::Address>& addresses) {
  std::vector<net::Address> bound;
  auto fail = [&](Error e) -> Result<std::vector<net::Address>> {
    impl_->closeAll();
    return Unexpected<Error>{std::move(e)};
  };
  for (const net::Address& want : addresses) {
    Error last{0, "DNS: no port free for both UDP and TCP on " + want.toString()};
    bool done = false;
    for (int attempt = 0; attempt < (want.port() == 0 ? kTcpBindAttempts : 1) && !done; ++attempt) {
      auto udp = bindUdp(want);
      if (!udp) return fail(udp.error());
      net::Address actual = net::localAddress(*udp);
      auto tcp = net::listenTcp(actual);
      if (!tcp) {  // the port UDP got is taken for TCP: try another
        ::close(*udp);
        last = tcp.error();
        continue;
      }
      impl_->udp_fds.push_back(*udp);
      impl_->tcp_fds.push_back(*tcp);
      bound.push_back(actual);
      done = true;
    }
    if (!done) return fail(last);
  }
  if (::pipe2(impl_->wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
    return fail(Error{0, std::string("pipe: ") + std::strerror(errno)});
  impl_->thread = std::thread([this] { impl_->run(); });
  return bound;
}

void DnsServer::stop() {
  if (impl_->thread.joinable()) {
    char b = 1;
    ssize_t unused = ::write(impl_->wake_pipe[1], &b, 1);
    (void)unused;
    impl_->thread.join();
  }
  impl_->closeAll();
}

}  // namespace weft::control::registry
