#include "control/registry/dns_server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <unordered_map>

#include "common/log.h"
#include "control/registry/dns_answer.h"
#include "control/registry/dns_message.h"

namespace weft::control::registry {
namespace {

constexpr size_t kMaxTcpConnections = 256;
constexpr auto kTcpIdleTimeout = std::chrono::seconds(10);
constexpr int kTcpBindAttempts = 16;
constexpr size_t kUdpBatch = 32;          // datagrams read (and answered) per recvmmsg
constexpr size_t kUdpBatchesPerWake = 8;  // bounded, so TCP and upstreams get their turn
constexpr size_t kMaxDatagram = 4096;
constexpr size_t kMaxUpstreamDatagram = 65535;

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

uint16_t idOf(std::string_view m) {
  return static_cast<uint16_t>((static_cast<uint8_t>(m[0]) << 8) | static_cast<uint8_t>(m[1]));
}

void setId(std::string& m, uint16_t id) {
  m[0] = static_cast<char>(id >> 8);
  m[1] = static_cast<char>(id & 0xFF);
}

std::string lengthPrefixed(const std::string& m) {
  std::string out;
  out.reserve(2 + m.size());
  out.push_back(static_cast<char>(m.size() >> 8));
  out.push_back(static_cast<char>(m.size() & 0xFF));
  out += m;
  return out;
}

}  // namespace

struct DnsServer::Impl {
  const SnapshotHolder& snapshots;
  const TimeSource& time;
  DnsServerOptions options;
  DnsServerStats stats;
  std::vector<int> udp_fds, tcp_fds;
  int wake_pipe[2] = {-1, -1};
  std::thread thread;
  uint64_t rotation = 0;

  struct TcpConn {
    std::string in, out;
    MonoTime last_activity;
    net::Address peer;
    uint64_t serial = 0;  // tells a reused fd number from the connection a forward came from
  };
  std::map<int, TcpConn> conns;
  uint64_t next_serial = 1;

  // Forwarding state. Upstream UDP sockets are connected: the kernel drops datagrams from any
  // other address. Pending queries are keyed by the id they carry upstream (unique in flight).
  std::vector<int> upstream_fds;
  struct Pending {
    uint16_t client_id = 0;
    bool client_tcp = false;
    int client_fd = -1;  // the listening UDP socket, or the client's TCP connection
    uint64_t client_serial = 0;
    net::Address client_peer;
    size_t udp_limit = 512;
    std::string query;  // as sent upstream (our id)
    std::string qname;
    uint16_t qtype = 0;
    MonoTime deadline;
    MonoTime next_try;
    size_t first = 0, tried = 0;  // upstreams asked over UDP: first .. first+tried-1
    std::string truncated;        // the upstream's TC answer, while the TCP retry runs
    int tcp_fd = -1;              // upstream TCP exchange, when one runs
    bool tcp_connected = false;
    std::string tcp_in, tcp_out;
  };
  std::unordered_map<uint16_t, Pending> pending;
  std::unordered_map<int, uint16_t> upstream_tcp;  // upstream TCP fd -> pending id
  size_t next_upstream = 0;

  // recvmmsg / sendmmsg batches.
  std::vector<char> rx_bufs = std::vector<char>(kUdpBatch * kMaxDatagram);
  std::vector<sockaddr_storage> rx_peers = std::vector<sockaddr_storage>(kUdpBatch);
  std::vector<iovec> rx_iov = std::vector<iovec>(kUdpBatch);
  std::vector<mmsghdr> rx_msgs = std::vector<mmsghdr>(kUdpBatch);
  std::vector<std::string> tx_data = std::vector<std::string>(kUdpBatch);
  std::vector<iovec> tx_iov = std::vector<iovec>(kUdpBatch);
  std::vector<mmsghdr> tx_msgs = std::vector<mmsghdr>(kUdpBatch);

  Impl(const SnapshotHolder& s, const TimeSource& t, DnsServerOptions o)
      : snapshots(s), time(t), options(std::move(o)) {}

  void closeAll() {
    for (int fd : udp_fds) ::close(fd);
    for (int fd : tcp_fds) ::close(fd);
    for (auto& [fd, c] : conns) ::close(fd);
    for (int fd : upstream_fds) ::close(fd);
    for (auto& [fd, id] : upstream_tcp) ::close(fd);
    udp_fds.clear();
    tcp_fds.clear();
    conns.clear();
    upstream_fds.clear();
    upstream_tcp.clear();
    pending.clear();
    for (int& fd : wake_pipe)
      if (fd >= 0) {
        ::close(fd);
        fd = -1;
      }
  }

  // ---- clients

  void serveUdp(int fd) {
    for (size_t batch = 0; batch < kUdpBatchesPerWake; ++batch) {
      for (size_t i = 0; i < kUdpBatch; ++i) {
        rx_iov[i] = {rx_bufs.data() + i * kMaxDatagram, kMaxDatagram};
        rx_msgs[i].msg_hdr = {};
        rx_msgs[i].msg_hdr.msg_name = &rx_peers[i];
        rx_msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
        rx_msgs[i].msg_hdr.msg_iov = &rx_iov[i];
        rx_msgs[i].msg_hdr.msg_iovlen = 1;
      }
      int got = ::recvmmsg(fd, rx_msgs.data(), kUdpBatch, MSG_DONTWAIT, nullptr);
      if (got <= 0) return;
      stats.queries.fetch_add(static_cast<uint64_t>(got), std::memory_order_relaxed);
      auto snapshot = snapshots.load();
      size_t out = 0;
      for (int i = 0; i < got; ++i) {
        net::Address peer;
        std::memcpy(&peer.storage, &rx_peers[i], rx_msgs[i].msg_hdr.msg_namelen);
        peer.len = rx_msgs[i].msg_hdr.msg_namelen;
        std::string_view q(rx_bufs.data() + static_cast<size_t>(i) * kMaxDatagram,
                           rx_msgs[i].msg_len);
        DnsDecision d =
            decideDnsQuery(*snapshot, q, peer, Transport::kUdp, rotation++, !upstream_fds.empty());
        if (d.forward) {
          forward(q, d, false, fd, 0, peer);
          continue;
        }
        if (d.reply.empty()) continue;
        tx_data[out] = std::move(d.reply);
        tx_iov[out] = {tx_data[out].data(), tx_data[out].size()};
        tx_msgs[out].msg_hdr = {};
        tx_msgs[out].msg_hdr.msg_name = &rx_peers[i];
        tx_msgs[out].msg_hdr.msg_namelen = rx_msgs[i].msg_hdr.msg_namelen;
        tx_msgs[out].msg_hdr.msg_iov = &tx_iov[out];
        tx_msgs[out].msg_hdr.msg_iovlen = 1;
        ++out;
      }
      // A full socket buffer drops the rest, as a lost datagram would be (clients retry).
      for (size_t sent = 0; sent < out;) {
        int n =
            ::sendmmsg(fd, tx_msgs.data() + sent, static_cast<unsigned>(out - sent), MSG_DONTWAIT);
        if (n <= 0) break;
        sent += static_cast<size_t>(n);
      }
      if (static_cast<size_t>(got) < kUdpBatch) return;
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
      conns[fd] = TcpConn{{}, {}, time.monotonicNow(), net::peerAddress(fd), next_serial++};
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
        stats.queries.fetch_add(1, std::memory_order_relaxed);
        std::string_view q = std::string_view(c.in).substr(2, len);
        DnsDecision d = decideDnsQuery(*snapshots.load(), q, c.peer, Transport::kTcp, rotation++,
                                       !upstream_fds.empty());
        if (d.forward) forward(q, d, true, fd, c.serial, c.peer);
        c.in.erase(0, 2 + len);
        if (!d.reply.empty()) c.out += lengthPrefixed(d.reply);
      }
      if (c.out.size() > (1u << 20)) return false;  // a client that sends but never reads
    } else if (revents & (POLLHUP | POLLERR)) {
      return false;
    }
    return flushTcp(fd, c);
  }

  bool flushTcp(int fd, TcpConn& c) {
    while (!c.out.empty()) {
      ssize_t sent = ::send(fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (sent < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
      c.out.erase(0, static_cast<size_t>(sent));
    }
    return true;
  }

  // Sends `reply` to the client of `p` (with the client's id).
  void deliver(const Pending& p, std::string reply) {
    setId(reply, p.client_id);
    if (!p.client_tcp) {
      ::sendto(p.client_fd, reply.data(), reply.size(), MSG_DONTWAIT, p.client_peer.sa(),
               p.client_peer.len);
      return;
    }
    auto it = conns.find(p.client_fd);
    if (it == conns.end() || it->second.serial != p.client_serial) return;  // client gone
    // Sent by the poll loop (POLLOUT while `out` is not empty): the connection may be the one
    // being served right now, which must not be closed under its caller.
    it->second.out += lengthPrefixed(reply);
  }

  // ---- forwarding

  void forward(std::string_view q, const DnsDecision& d, bool client_tcp, int client_fd,
               uint64_t serial, const net::Address& peer) {
    if (pending.size() >= options.max_forwarded) {
      stats.forward_overflow.fetch_add(1, std::memory_order_relaxed);
      std::string reply = dnsErrorReply(q, dns::kServFail);
      Pending p;
      p.client_tcp = client_tcp;
      p.client_fd = client_fd;
      p.client_serial = serial;
      p.client_peer = peer;
      p.client_id = idOf(q);
      if (!reply.empty()) deliver(p, std::move(reply));
      return;
    }
    uint16_t id = 0;
    do {
      id = static_cast<uint16_t>(::arc4random());
    } while (pending.count(id));
    Pending& p = pending[id];
    p.client_id = idOf(q);
    p.client_tcp = client_tcp;
    p.client_fd = client_fd;
    p.client_serial = serial;
    p.client_peer = peer;
    p.udp_limit = d.udp_limit;
    p.query.assign(q);
    setId(p.query, id);
    p.qname = d.qname;
    p.qtype = d.qtype;
    MonoTime now = time.monotonicNow();
    p.deadline = now + options.forward_timeout;
    p.first = next_upstream++ % upstream_fds.size();
    stats.forwarded.fetch_add(1, std::memory_order_relaxed);
    if (client_tcp) {
      p.next_try = p.deadline;
      startTcp(id, p, p.first);
    } else {
      tryNextUdp(p, now);
    }
  }

  void tryNextUdp(Pending& p, MonoTime now) {
    size_t n = upstream_fds.size();
    if (p.tried >= n) {
      p.next_try = p.deadline;
      return;
    }
    int fd = upstream_fds[(p.first + p.tried) % n];
    ++p.tried;
    p.next_try = p.tried < n ? now + options.forward_timeout / static_cast<int64_t>(n) : p.deadline;
    ::send(fd, p.query.data(), p.query.size(), MSG_DONTWAIT);  // a loss is a timeout
  }

  void startTcp(uint16_t id, Pending& p, size_t upstream) {
    stats.forward_tcp.fetch_add(1, std::memory_order_relaxed);
    const net::Address& a = options.upstreams[upstream];
    int fd = ::socket(a.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return;  // the deadline answers
    if (::connect(fd, a.sa(), a.len) != 0 && errno != EINPROGRESS) {
      ::close(fd);
      return;
    }
    p.tcp_fd = fd;
    p.tcp_connected = false;
    p.tcp_out = lengthPrefixed(p.query);
    p.tcp_in.clear();
    upstream_tcp[fd] = id;
  }

  void closeUpstreamTcp(Pending& p) {
    if (p.tcp_fd < 0) return;
    upstream_tcp.erase(p.tcp_fd);
    ::close(p.tcp_fd);
    p.tcp_fd = -1;
  }

  // Answers whether `answer` is the upstream's answer to `p`'s question.
  static bool matches(const Pending& p, std::string_view answer) {
    auto m = dns::parseMessage(answer);
    return m && m->isResponse() && m->questions.size() == 1 && m->questions[0].name == p.qname &&
           m->questions[0].type == p.qtype && m->questions[0].klass == dns::kClassIn;
  }

  void finish(uint16_t id, std::string reply) {
    auto it = pending.find(id);
    if (it == pending.end()) return;
    closeUpstreamTcp(it->second);
    if (!reply.empty()) deliver(it->second, std::move(reply));
    pending.erase(it);
  }

  void readUpstreamUdp(size_t upstream) {
    int fd = upstream_fds[upstream];
    std::string buf(kMaxUpstreamDatagram, '\0');
    for (int n = 0; n < 256; ++n) {
      ssize_t got = ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
      if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        continue;  // ECONNREFUSED from an ICMP error: the timers fail over
      }
      std::string_view answer(buf.data(), static_cast<size_t>(got));
      auto it = answer.size() >= dns::kHeaderSize ? pending.find(idOf(answer)) : pending.end();
      if (it == pending.end() || it->second.tcp_fd >= 0 || !matches(it->second, answer)) {
        stats.forward_mismatch.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      Pending& p = it->second;
      bool tc = static_cast<uint8_t>(answer[2]) & (dns::kFlagTc >> 8);
      if (tc) {  // the full answer over TCP from the same upstream
        p.truncated.assign(answer);
        startTcp(it->first, p, upstream);
        if (p.tcp_fd < 0) finish(it->first, std::move(p.truncated));
        continue;
      }
      stats.forward_answers.fetch_add(1, std::memory_order_relaxed);
      finish(it->first, std::string(answer));
    }
  }

  void serveUpstreamTcp(int fd, short revents) {
    auto at = upstream_tcp.find(fd);
    if (at == upstream_tcp.end()) return;
    uint16_t id = at->second;
    Pending& p = pending.at(id);
    auto fail = [&] {
      // The truncated UDP answer still tells a UDP client to retry over TCP.
      std::string fallback =
          p.truncated.empty() ? dnsErrorReply(p.query, dns::kServFail) : std::move(p.truncated);
      finish(id, std::move(fallback));
    };
    if (!p.tcp_connected && (revents & (POLLOUT | POLLERR | POLLHUP))) {
      int err = 0;
      socklen_t len = sizeof err;
      if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) return fail();
      p.tcp_connected = true;
    }
    if (!p.tcp_connected) return;
    while (!p.tcp_out.empty()) {
      ssize_t sent = ::send(fd, p.tcp_out.data(), p.tcp_out.size(), MSG_NOSIGNAL);
      if (sent < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        return fail();
      }
      p.tcp_out.erase(0, static_cast<size_t>(sent));
    }
    if (!(revents & (POLLIN | POLLHUP | POLLERR))) return;
    char buf[16384];
    bool eof = false;  // the upstream may answer and close at once: read the answer first
    while (true) {
      ssize_t got = ::recv(fd, buf, sizeof buf, 0);
      if (got == 0) {
        eof = true;
        break;
      }
      if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        return fail();
      }
      p.tcp_in.append(buf, static_cast<size_t>(got));
      if (p.tcp_in.size() > 2 + 65535) return fail();
    }
    size_t len = p.tcp_in.size() < 2
                     ? 0
                     : (static_cast<uint8_t>(p.tcp_in[0]) << 8) | static_cast<uint8_t>(p.tcp_in[1]);
    if (p.tcp_in.size() < 2 || p.tcp_in.size() < 2 + len) {
      if (eof) return fail();  // closed before a whole answer
      return;
    }
    std::string answer = p.tcp_in.substr(2, len);
    if (answer.size() < dns::kHeaderSize || idOf(answer) != id || !matches(p, answer)) {
      stats.forward_mismatch.fetch_add(1, std::memory_order_relaxed);
      return fail();
    }
    stats.forward_answers.fetch_add(1, std::memory_order_relaxed);
    if (!p.client_tcp && answer.size() > p.udp_limit) answer = std::move(p.truncated);
    finish(id, std::move(answer));
  }

  // Fails over and times out pending queries; answers the time until the next timer is due.
  std::chrono::milliseconds runTimers(MonoTime now) {
    MonoTime next = now + std::chrono::seconds(1);
    std::vector<uint16_t> expired;
    for (auto& [id, p] : pending) {
      if (now >= p.deadline) {
        expired.push_back(id);
        continue;
      }
      if (now >= p.next_try && p.tcp_fd < 0 && !p.client_tcp) tryNextUdp(p, now);
      next = std::min({next, p.deadline, p.next_try});
    }
    for (uint16_t id : expired) {
      stats.forward_timeouts.fetch_add(1, std::memory_order_relaxed);
      Pending& p = pending.at(id);
      std::string reply = !p.client_tcp && !p.truncated.empty()
                              ? std::move(p.truncated)
                              : dnsErrorReply(p.query, dns::kServFail);
      finish(id, std::move(reply));
    }
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - now) +
                std::chrono::milliseconds(1);
    return std::max(wait, std::chrono::milliseconds(1));
  }

  void run() {
    std::vector<pollfd> fds;
    std::chrono::milliseconds wait(1000);
    while (true) {
      fds.clear();
      fds.push_back({wake_pipe[0], POLLIN, 0});
      for (int fd : udp_fds) fds.push_back({fd, POLLIN, 0});
      for (int fd : tcp_fds) fds.push_back({fd, POLLIN, 0});
      for (int fd : upstream_fds) fds.push_back({fd, POLLIN, 0});
      size_t conns_at = fds.size();
      for (auto& [fd, c] : conns)
        fds.push_back({fd, static_cast<short>(POLLIN | (c.out.empty() ? 0 : POLLOUT)), 0});
      size_t upstream_tcp_at = fds.size();
      for (auto& [fd, id] : upstream_tcp) {
        const Pending& p = pending.at(id);
        bool out = !p.tcp_connected || !p.tcp_out.empty();
        fds.push_back({fd, static_cast<short>(POLLIN | (out ? POLLOUT : 0)), 0});
      }
      int n = ::poll(fds.data(), fds.size(), static_cast<int>(wait.count()));
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
      for (size_t i = 0; i < upstream_fds.size(); ++i, ++k)
        if (fds[k].revents) readUpstreamUdp(i);
      MonoTime now = time.monotonicNow();
      for (k = conns_at; k < upstream_tcp_at; ++k) {
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
      for (k = upstream_tcp_at; k < fds.size(); ++k)
        if (fds[k].revents) serveUpstreamTcp(fds[k].fd, fds[k].revents);
      wait = pending.empty() ? std::chrono::milliseconds(1000) : runTimers(time.monotonicNow());
    }
  }
};

DnsServer::DnsServer(const SnapshotHolder& snapshots, const TimeSource& time,
                     DnsServerOptions options)
    : impl_(std::make_unique<Impl>(snapshots, time, std::move(options))) {}

DnsServer::~DnsServer() { stop(); }

const DnsServerStats& DnsServer::stats() const { return impl_->stats; }

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
  for (const net::Address& up : impl_->options.upstreams) {
    int fd = ::socket(up.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail(Error{0, std::string("DNS upstream socket: ") + std::strerror(errno)});
    impl_->upstream_fds.push_back(fd);
    if (::connect(fd, up.sa(), up.len) != 0)
      return fail(Error{0, "DNS upstream " + up.toString() + ": " + std::strerror(errno)});
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
