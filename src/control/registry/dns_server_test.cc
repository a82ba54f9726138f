// The DNS server over real sockets on 127.0.0.1: answering, and forwarding to a fake upstream
// resolver (a UDP socket and a TCP listener in the test, on one port).

#include "control/registry/dns_server.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "control/registry/dns_test_support.h"

namespace weft::control::registry {
namespace {

using testing::query;
using testing::u16;
using testing::wireName;

constexpr int kWaitMs = 5000;  // failure bound for reads; never a synchronisation sleep

std::shared_ptr<const Snapshot> meshSnapshot() {
  return buildSnapshot({
      {"registry/networks/vpc-1", R"({"Id":"vpc-1","Cidrs":["198.18.0.0/16"]})", 1},
      {"registry/namespaces/ns-1",
       R"({"Id":"ns-1","Name":"mesh.local","Type":"DNS_PRIVATE","Vpcs":["vpc-1"],)"
       R"("Properties":{"DnsProperties":{"HostedZoneId":"Z1","SOA":{"TTL":30}}}})",
       2},
  });
}

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

bool readable(int fd, int ms = kWaitMs) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, ms) == 1;
}

Fd udpSocket(net::Address* bound = nullptr) {
  Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  auto a = *net::parseAddress("127.0.0.1", 0);
  EXPECT_EQ(::bind(fd.get(), a.sa(), a.len), 0);
  if (bound) *bound = net::localAddress(fd.get());
  return fd;
}

// Reads one datagram; empty on timeout. `from` gets the sender.
std::string recvDatagram(int fd, net::Address* from = nullptr) {
  if (!readable(fd)) return {};
  char buf[65536];
  net::Address peer;
  peer.len = sizeof peer.storage;
  ssize_t got =
      ::recvfrom(fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&peer.storage), &peer.len);
  if (from) *from = peer;
  return got > 0 ? std::string(buf, static_cast<size_t>(got)) : std::string();
}

std::string readFully(int fd, size_t n) {
  std::string out;
  while (out.size() < n) {
    if (!readable(fd)) return out;
    char buf[4096];
    ssize_t got = ::recv(fd, buf, std::min(sizeof buf, n - out.size()), 0);
    if (got <= 0) return out;
    out.append(buf, static_cast<size_t>(got));
  }
  return out;
}

std::string readTcpMessage(int fd) {
  std::string len = readFully(fd, 2);
  if (len.size() < 2) return {};
  return readFully(fd, (static_cast<uint8_t>(len[0]) << 8) | static_cast<uint8_t>(len[1]));
}

// An upstream's answer to `q`: its id and question, `answers` A records of 192.0.2.x.
std::string upstreamAnswer(std::string_view q, int answers, bool tc = false) {
  auto m = dns::parseMessage(q);
  EXPECT_TRUE(m) << "the forwarded query does not parse";
  if (!m) return {};
  uint16_t flags = dns::kFlagQr | dns::kFlagRd | dns::kFlagRa | (tc ? dns::kFlagTc : 0);
  dns::MessageWriter w(m->id, flags);
  w.addQuestion(m->questions[0].name, m->questions[0].type, m->questions[0].klass);
  for (int i = 0; i < answers; ++i) {
    w.beginRecord(dns::MessageWriter::Section::kAnswer, m->questions[0].name, dns::kTypeA,
                  dns::kClassIn, 60);
    w.rdataBytes(std::string{'\xC0', '\x00', '\x02', static_cast<char>(i + 1)});
    w.endRecord();
  }
  return w.bytes();
}

class DnsServerTest : public ::testing::Test {
 protected:
  void start(DnsServerOptions options) {
    snapshots_.store(meshSnapshot());
    server_ = std::make_unique<DnsServer>(snapshots_, time_, std::move(options));
    auto bound = server_->start({*net::parseAddress("127.0.0.1", 0)});
    ASSERT_TRUE(bound) << bound.error().message;
    addr_ = bound->front();
  }
  // A fake upstream: UDP and TCP on one port of 127.0.0.1.
  void startUpstream() {
    // The UDP port is the kernel's choice; the same TCP port may be taken by another process,
    // so try a few UDP ports until one has its TCP twin free.
    for (int attempt = 0; attempt < 20; ++attempt) {
      upstream_udp_ = udpSocket(&upstream_addr_);
      auto tcp = net::listenTcp(upstream_addr_);
      if (tcp) {
        upstream_tcp_ = Fd(*tcp);
        return;
      }
    }
    FAIL() << "no port free for both UDP and TCP on 127.0.0.1 after 20 tries";
  }
  DnsServerOptions forwarding() {
    DnsServerOptions o;
    o.upstreams = {upstream_addr_};
    return o;
  }

  dns::Message askUdp(int client, const std::string& q) {
    EXPECT_EQ(::sendto(client, q.data(), q.size(), 0, addr_.sa(), addr_.len),
              static_cast<ssize_t>(q.size()));
    std::string wire = recvDatagram(client);
    EXPECT_FALSE(wire.empty()) << "no answer from the DNS server within " << kWaitMs << " ms";
    auto m = dns::parseMessage(wire);
    EXPECT_TRUE(m) << "the answer does not parse";
    return m ? *m : dns::Message{};
  }

  RealTimeSource time_;
  SnapshotHolder snapshots_;
  std::unique_ptr<DnsServer> server_;
  net::Address addr_, upstream_addr_;
  Fd upstream_udp_, upstream_tcp_;
};

TEST_F(DnsServerTest, WithoutUpstreamsOutsideNamesAreRefused) {
  start({});
  Fd client = udpSocket();
  dns::Message m = askUdp(client.get(), query("example.org", dns::kTypeA));
  EXPECT_EQ(m.rcode(), dns::kRefused);
  EXPECT_EQ(m.id, 0x4242);
  EXPECT_EQ(server_->stats().forwarded.load(), 0u);
}

TEST_F(DnsServerTest, ForwardsOverUdpWithTheClientsIdRestored) {
  startUpstream();
  start(forwarding());
  Fd client = udpSocket();
  std::string q = query("Example.ORG", dns::kTypeA);
  ASSERT_EQ(::sendto(client.get(), q.data(), q.size(), 0, addr_.sa(), addr_.len),
            static_cast<ssize_t>(q.size()));
  net::Address from;
  std::string up = recvDatagram(upstream_udp_.get(), &from);
  ASSERT_FALSE(up.empty()) << "the query never reached the upstream";
  ASSERT_EQ(up.size(), q.size());
  EXPECT_EQ(up.substr(2), q.substr(2)) << "the query must go upstream unchanged but for its id";
  std::string answer = upstreamAnswer(up, 2);
  ASSERT_EQ(::sendto(upstream_udp_.get(), answer.data(), answer.size(), 0, from.sa(), from.len),
            static_cast<ssize_t>(answer.size()));
  std::string wire = recvDatagram(client.get());
  auto m = dns::parseMessage(wire);
  ASSERT_TRUE(m) << "no parsable answer relayed to the client";
  EXPECT_EQ(m->id, 0x4242) << "the client's id must be restored";
  EXPECT_EQ(m->rcode(), dns::kNoError);
  EXPECT_EQ(m->answers.size(), 2u);
  EXPECT_EQ(wire.substr(2), answer.substr(2)) << "the upstream's answer is relayed as is";
  EXPECT_EQ(server_->stats().forwarded.load(), 1u);
  EXPECT_EQ(server_->stats().forward_answers.load(), 1u);
}

TEST_F(DnsServerTest, NamesInsideAZoneAreNeverForwarded) {
  startUpstream();
  start(forwarding());
  Fd client = udpSocket();
  dns::Message m = askUdp(client.get(), query("nothing.mesh.local", dns::kTypeA));
  EXPECT_EQ(m.rcode(), dns::kNxDomain);
  EXPECT_TRUE(m.flags & dns::kFlagAa);
  m = askUdp(client.get(), query("mesh.local", dns::kTypeSoa));
  EXPECT_EQ(m.rcode(), dns::kNoError);
  EXPECT_FALSE(readable(upstream_udp_.get(), 0)) << "a mesh name reached the upstream";
  EXPECT_EQ(server_->stats().forwarded.load(), 0u);
}

TEST_F(DnsServerTest, AnswersThatDoNotMatchTheQuestionAreIgnored) {
  startUpstream();
  DnsServerOptions o = forwarding();
  o.forward_timeout = std::chrono::milliseconds(300);
  start(o);
  Fd client = udpSocket();
  std::string q = query("example.org", dns::kTypeA);
  ::sendto(client.get(), q.data(), q.size(), 0, addr_.sa(), addr_.len);
  net::Address from;
  std::string up = recvDatagram(upstream_udp_.get(), &from);
  ASSERT_FALSE(up.empty());
  // Right id, another question: a spoofing attempt or a confused upstream.
  std::string other = query("evil.example", dns::kTypeA);
  other[0] = up[0];
  other[1] = up[1];
  std::string forged = upstreamAnswer(other, 1);
  ::sendto(upstream_udp_.get(), forged.data(), forged.size(), 0, from.sa(), from.len);
  auto m = dns::parseMessage(recvDatagram(client.get()));
  ASSERT_TRUE(m) << "expected SERVFAIL after the timeout, got nothing";
  EXPECT_EQ(m->rcode(), dns::kServFail) << "the forged answer must not be relayed";
  EXPECT_EQ(server_->stats().forward_mismatch.load(), 1u);
}

TEST_F(DnsServerTest, NoUpstreamAnswerIsServfailAfterTheTimeout) {
  startUpstream();
  DnsServerOptions o = forwarding();
  o.forward_timeout = std::chrono::milliseconds(200);
  start(o);
  Fd client = udpSocket();
  auto t0 = std::chrono::steady_clock::now();
  dns::Message m = askUdp(client.get(), query("slow.example", dns::kTypeAaaa));
  auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(m.rcode(), dns::kServFail);
  EXPECT_EQ(m.id, 0x4242);
  ASSERT_EQ(m.questions.size(), 1u);
  EXPECT_EQ(m.questions[0].name, "slow.example");
  EXPECT_GE(waited, std::chrono::milliseconds(190)) << "SERVFAIL came before the timeout";
  EXPECT_EQ(server_->stats().forward_timeouts.load(), 1u);
}

TEST_F(DnsServerTest, PastTheInFlightLimitQueriesGetServfailAtOnce) {
  startUpstream();
  DnsServerOptions o = forwarding();
  o.max_forwarded = 2;
  start(o);
  Fd client = udpSocket();
  for (int i = 0; i < 2; ++i) {
    std::string q = query("q" + std::to_string(i) + ".example", dns::kTypeA);
    ::sendto(client.get(), q.data(), q.size(), 0, addr_.sa(), addr_.len);
    ASSERT_FALSE(recvDatagram(upstream_udp_.get()).empty()) << "query " << i << " not forwarded";
  }
  dns::Message m = askUdp(client.get(), query("third.example", dns::kTypeA));
  EXPECT_EQ(m.rcode(), dns::kServFail);
  EXPECT_EQ(m.questions.size(), 1u);
  EXPECT_EQ(server_->stats().forward_overflow.load(), 1u);
  EXPECT_EQ(server_->stats().forwarded.load(), 2u);
}

TEST_F(DnsServerTest, TruncatedUpstreamAnswerIsFetchedOverTcp) {
  startUpstream();
  start(forwarding());
  Fd client = udpSocket();
  std::string q = query("big.example", dns::kTypeA, 1232);
  ::sendto(client.get(), q.data(), q.size(), 0, addr_.sa(), addr_.len);
  net::Address from;
  std::string up = recvDatagram(upstream_udp_.get(), &from);
  ASSERT_FALSE(up.empty());
  std::string tc = upstreamAnswer(up, 0, true);
  ::sendto(upstream_udp_.get(), tc.data(), tc.size(), 0, from.sa(), from.len);
  ASSERT_TRUE(readable(upstream_tcp_.get())) << "no TCP connection to the upstream after TC";
  Fd conn(::accept(upstream_tcp_.get(), nullptr, nullptr));
  std::string up_tcp = readTcpMessage(conn.get());
  ASSERT_EQ(up_tcp, up) << "the TCP retry must send the same query";
  std::string full = upstreamAnswer(up_tcp, 40);  // 40 A records: ~680 bytes, over 512
  std::string framed = u16(static_cast<uint16_t>(full.size())) + full;
  ASSERT_EQ(::send(conn.get(), framed.data(), framed.size(), 0),
            static_cast<ssize_t>(framed.size()));
  std::string wire = recvDatagram(client.get());
  auto m = dns::parseMessage(wire);
  ASSERT_TRUE(m) << "no parsable answer relayed";
  EXPECT_FALSE(m->flags & dns::kFlagTc) << "the full answer fits the client's EDNS0 size";
  EXPECT_EQ(m->answers.size(), 40u);
  EXPECT_EQ(m->id, 0x4242);
  EXPECT_EQ(server_->stats().forward_tcp.load(), 1u);
}

TEST_F(DnsServerTest, ClientOverTcpIsForwardedOverTcp) {
  startUpstream();
  start(forwarding());
  Fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::connect(client.get(), addr_.sa(), addr_.len), 0);
  std::string q = query("tcp.example", dns::kTypeA);
  std::string framed = u16(static_cast<uint16_t>(q.size())) + q;
  ASSERT_EQ(::send(client.get(), framed.data(), framed.size(), 0),
            static_cast<ssize_t>(framed.size()));
  ASSERT_TRUE(readable(upstream_tcp_.get())) << "the TCP client's query did not come over TCP";
  Fd conn(::accept(upstream_tcp_.get(), nullptr, nullptr));
  std::string up = readTcpMessage(conn.get());
  ASSERT_EQ(up.size(), q.size());
  std::string answer = upstreamAnswer(up, 3);
  std::string out = u16(static_cast<uint16_t>(answer.size())) + answer;
  ::send(conn.get(), out.data(), out.size(), 0);
  auto m = dns::parseMessage(readTcpMessage(client.get()));
  ASSERT_TRUE(m) << "no parsable answer over the client's TCP connection";
  EXPECT_EQ(m->id, 0x4242);
  EXPECT_EQ(m->answers.size(), 3u);
  EXPECT_FALSE(readable(upstream_udp_.get(), 0)) << "nothing should go over UDP";
}

TEST_F(DnsServerTest, SecondUpstreamIsAskedWhenTheFirstIsSilent) {
  startUpstream();
  net::Address silent_addr;
  Fd silent = udpSocket(&silent_addr);
  DnsServerOptions o;
  o.upstreams = {silent_addr, upstream_addr_};
  o.forward_timeout = std::chrono::milliseconds(1000);
  start(o);
  Fd client = udpSocket();
  // The first query goes to the silent upstream first (round robin starts there).
  std::string q = query("failover.example", dns::kTypeA);
  ::sendto(client.get(), q.data(), q.size(), 0, addr_.sa(), addr_.len);
  ASSERT_FALSE(recvDatagram(silent.get()).empty()) << "the first upstream was not asked";
  net::Address from;
  std::string up = recvDatagram(upstream_udp_.get(), &from);
  ASSERT_FALSE(up.empty()) << "the second upstream was not asked after timeout/2";
  std::string answer = upstreamAnswer(up, 1);
  ::sendto(upstream_udp_.get(), answer.data(), answer.size(), 0, from.sa(), from.len);
  auto m = dns::parseMessage(recvDatagram(client.get()));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->rcode(), dns::kNoError);
  EXPECT_EQ(m->answers.size(), 1u);
}

}  // namespace
}  // namespace weft::control::registry
