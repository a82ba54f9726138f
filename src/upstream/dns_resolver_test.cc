#include "upstream/dns_resolver.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "net/event_loop.h"
#include "upstream/dns_refresher.h"

namespace weft::upstream {
namespace {

constexpr uint16_t kTypeA = 1;
constexpr uint16_t kTypeAaaa = 28;

// A tiny authoritative-ish DNS server on 127.0.0.1 (UDP, port chosen by the kernel), served from
// the same EventLoop as the resolver under test. Answers A/AAAA from a fixed table; names not in
// the table get NXDOMAIN. In `hold` mode it records queries without answering until flush().
class TestDnsServer final : public net::IoHandler {
 public:
  struct Record {
    std::string ip;
    uint32_t ttl;
  };
  struct Entry {
    std::vector<Record> a;
    std::vector<Record> aaaa;
  };

  explicit TestDnsServer(net::EventLoop& loop) : loop_(loop) {
    fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    EXPECT_GE(fd_, 0) << std::strerror(errno);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0) << std::strerror(errno);
    socklen_t len = sizeof sa;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len);
    port_ = ntohs(sa.sin_port);
    loop_.add(fd_, EPOLLIN, this);
  }
  ~TestDnsServer() {
    loop_.remove(fd_);
    ::close(fd_);
  }

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  void set(const std::string& name, Entry e) { table_[name] = std::move(e); }
  void setHold(bool hold) { hold_ = hold; }
  void flush() {
    for (auto& [peer, reply] : held_) send(peer, reply);
    held_.clear();
  }
  size_t heldCount() const { return held_.size(); }
  // "name/A", "name/AAAA" for every query received, in order.
  std::vector<std::string> queries;

  void onIoEvents(uint32_t) override {
    for (;;) {
      unsigned char buf[1500];
      sockaddr_storage peer{};
      socklen_t peer_len = sizeof peer;
      ssize_t n =
          ::recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&peer), &peer_len);
      if (n < 0) return;  // EAGAIN: drained
      auto reply = answer(buf, static_cast<size_t>(n));
      if (!reply) continue;
      if (hold_)
        held_.emplace_back(peer, std::move(*reply));
      else
        send(peer, *reply);
    }
  }

 private:
  static void put16(std::vector<unsigned char>& out, uint16_t v) {
    out.push_back(static_cast<unsigned char>(v >> 8));
    out.push_back(static_cast<unsigned char>(v & 0xff));
  }
  static void put32(std::vector<unsigned char>& out, uint32_t v) {
    put16(out, static_cast<uint16_t>(v >> 16));
    put16(out, static_cast<uint16_t>(v & 0xffff));
  }

  void send(const sockaddr_storage& peer, const std::vector<unsigned char>& reply) {
    ::sendto(fd_, reply.data(), reply.size(), 0, reinterpret_cast<const sockaddr*>(&peer),
             sizeof(sockaddr_in));
  }

  // Builds the response (RFC 1035 §4.1) for one query, or nothing if it is malformed.
  std::optional<std::vector<unsigned char>> answer(const unsigned char* q, size_t n) {
    if (n < 12) return std::nullopt;
    uint16_t qdcount = static_cast<uint16_t>(q[4] << 8 | q[5]);
    if (qdcount != 1) return std::nullopt;
    size_t pos = 12;
    std::string name;
    while (pos < n && q[pos] != 0) {
      size_t len = q[pos];
      if (len > 63 || pos + 1 + len > n) return std::nullopt;
      if (!name.empty()) name += '.';
      for (size_t i = 0; i < len; ++i) name += static_cast<char>(std::tolower(q[pos + 1 + i]));
      pos += 1 + len;
    }
    if (pos + 5 > n) return std::nullopt;
    size_t question_end = pos + 5;  // zero label + QTYPE + QCLASS
    uint16_t qtype = static_cast<uint16_t>(q[pos + 1] << 8 | q[pos + 2]);
    queries.push_back(name + (qtype == kTypeA ? "/A" : qtype == kTypeAaaa ? "/AAAA" : "/other"));

    auto it = table_.find(name);
    const std::vector<Record>* records = nullptr;
    if (it != table_.end()) records = qtype == kTypeA ? &it->second.a : &it->second.aaaa;
    uint16_t rcode = it == table_.end() ? 3 : 0;  // NXDOMAIN, else NOERROR (maybe no data)
    size_t ancount = records == nullptr ? 0 : records->size();

    std::vector<unsigned char> out;
    out.insert(out.end(), q, q + 2);                                         // ID
    uint16_t flags = 0x8000 | 0x0400 | (q[2] & 0x01) << 8 | 0x0080 | rcode;  // QR AA RD RA rcode
    put16(out, flags);
    put16(out, 1);
    put16(out, static_cast<uint16_t>(ancount));
    put16(out, 0);
    put16(out, 0);
    out.insert(out.end(), q + 12, q + question_end);
    for (size_t i = 0; i < ancount; ++i) {
      const Record& r = (*records)[i];
      put16(out, 0xC00C);  // pointer to the question's name
      put16(out, qtype);
      put16(out, 1);  // IN
      put32(out, r.ttl);
      unsigned char raw[16];
      int af = qtype == kTypeA ? AF_INET : AF_INET6;
      EXPECT_EQ(inet_pton(af, r.ip.c_str(), raw), 1) << r.ip;
      size_t len = af == AF_INET ? 4 : 16;
      put16(out, static_cast<uint16_t>(len));
      out.insert(out.end(), raw, raw + len);
    }
    return out;
  }

  net::EventLoop& loop_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::map<std::string, Entry> table_;
  bool hold_ = false;
  std::vector<std::pair<sockaddr_storage, std::vector<unsigned char>>> held_;
};

// Runs the loop until done() or the deadline; returns done().
bool runUntil(net::EventLoop& loop, const std::function<bool()>& done,
              Duration deadline = seconds(10)) {
  MonoTime end = loop.now() + deadline;
  while (!done() && loop.now() < end) loop.runOnce(milliseconds(10));
  return done();
}

std::string ips(const DnsAnswer& a) {
  std::string out;
  for (const auto& addr : a.addresses) {
    if (!out.empty()) out += " ";
    out += addr.ip();
  }
  return out;
}

class DnsResolverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.set("svc.test", {.a = {{"10.1.2.3", 9}, {"10.1.2.4", 7}}, .aaaa = {}});
    server_.set("dual.test", {.a = {{"10.1.2.3", 20}}, .aaaa = {{"fd00::1", 12}}});
    server_.set("v6.test", {.a = {}, .aaaa = {{"fd00::2", 30}}});
    server_.set("v4.test", {.a = {{"10.9.9.9", 30}}, .aaaa = {}});
  }
  std::unique_ptr<DnsResolver> makeResolver(DnsResolverOptions options = {}) {
    options.nameservers = {server_.address()};
    auto r = DnsResolver::create(loop_, options);
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
    return r ? std::move(*r) : nullptr;
  }
  // Resolves and waits; fails the test if no callback came within 10 s.
  std::optional<Result<DnsAnswer>> resolveAndWait(Resolver& r, const std::string& name,
                                                  DnsFamily family) {
    std::optional<Result<DnsAnswer>> got;
    r.resolve(name, family, [&](Result<DnsAnswer> a) { got.emplace(std::move(a)); });
    EXPECT_TRUE(runUntil(loop_, [&] { return got.has_value(); }))
        << "no answer for " << name << " within 10 s";
    return got;
  }

  net::EventLoop loop_;
  TestDnsServer server_{loop_};
};

TEST_F(DnsResolverTest, ParsesAddressesAndMinimumTtl) {
  auto r = makeResolver();
  auto got = resolveAndWait(*r, "svc.test", DnsFamily::kV4Only);
  ASSERT_TRUE(got && *got) << (got && !*got ? got->error().message : "no callback");
  EXPECT_EQ(ips(**got), "10.1.2.3 10.1.2.4");
  EXPECT_EQ((*got)->ttl, seconds(7)) << "expected the smaller of TTLs 9 and 7";
  EXPECT_EQ((*got)->addresses[0].port(), 0);
  EXPECT_EQ(server_.queries, std::vector<std::string>({"svc.test/A"}));
  EXPECT_EQ(r->outstanding(), 0u);
}

TEST_F(DnsResolverTest, FamilyPolicies) {
  auto r = makeResolver();
  auto v4 = resolveAndWait(*r, "dual.test", DnsFamily::kV4Only);
  ASSERT_TRUE(v4 && *v4);
  EXPECT_EQ(ips(**v4), "10.1.2.3");
  EXPECT_EQ((*v4)->ttl, seconds(20));

  auto v6 = resolveAndWait(*r, "dual.test", DnsFamily::kV6Only);
  ASSERT_TRUE(v6 && *v6);
  EXPECT_EQ(ips(**v6), "fd00::1");
  EXPECT_EQ((*v6)->ttl, seconds(12));

  auto both = resolveAndWait(*r, "dual.test", DnsFamily::kBoth);
  ASSERT_TRUE(both && *both);
  std::string got = ips(**both);
  EXPECT_TRUE(got == "10.1.2.3 fd00::1" || got == "fd00::1 10.1.2.3") << "got " << got;
  EXPECT_EQ((*both)->ttl, seconds(12)) << "minimum over the A (20) and AAAA (12) records";
}

TEST_F(DnsResolverTest, V4PreferredUsesAWhenPresentElseAaaa) {
  auto r = makeResolver();
  auto dual = resolveAndWait(*r, "dual.test", DnsFamily::kV4Preferred);
  ASSERT_TRUE(dual && *dual);
  EXPECT_EQ(ips(**dual), "10.1.2.3");
  EXPECT_EQ(server_.queries, std::vector<std::string>({"dual.test/A"}))
      << "no AAAA query when the name has A records";

  server_.queries.clear();
  auto v6 = resolveAndWait(*r, "v6.test", DnsFamily::kV4Preferred);
  ASSERT_TRUE(v6 && *v6) << (v6 && !*v6 ? v6->error().message : "");
  EXPECT_EQ(ips(**v6), "fd00::2");
  EXPECT_EQ((*v6)->ttl, seconds(30));
  EXPECT_EQ(server_.queries, std::vector<std::string>({"v6.test/A", "v6.test/AAAA"}));
}

TEST_F(DnsResolverTest, V6PreferredUsesAaaaWhenPresentElseA) {
  auto r = makeResolver();
  auto dual = resolveAndWait(*r, "dual.test", DnsFamily::kV6Preferred);
  ASSERT_TRUE(dual && *dual);
  EXPECT_EQ(ips(**dual), "fd00::1");
  EXPECT_EQ(server_.queries, std::vector<std::string>({"dual.test/AAAA"}))
      << "no A query when the name has AAAA records";

  server_.queries.clear();
  auto v4 = resolveAndWait(*r, "v4.test", DnsFamily::kV6Preferred);
  ASSERT_TRUE(v4 && *v4) << (v4 && !*v4 ? v4->error().message : "");
  EXPECT_EQ(ips(**v4), "10.9.9.9");
  EXPECT_EQ(server_.queries, std::vector<std::string>({"v4.test/AAAA", "v4.test/A"}));
}

TEST_F(DnsResolverTest, NxDomainIsNotFound) {
  auto r = makeResolver();
  auto got = resolveAndWait(*r, "missing.test", DnsFamily::kV4Only);
  ASSERT_TRUE(got);
  ASSERT_FALSE(*got) << "expected an error for a name the server does not know";
  EXPECT_EQ(got->error().code, kDnsNotFound) << got->error().message;
  EXPECT_NE(got->error().message.find("missing.test"), std::string::npos) << got->error().message;
}

TEST_F(DnsResolverTest, NoRecordsOfTheFamilyIsNotFound) {
  auto r = makeResolver();
  auto got = resolveAndWait(*r, "v6.test", DnsFamily::kV4Only);
  ASSERT_TRUE(got);
  ASSERT_FALSE(*got) << "v6.test has no A records";
  EXPECT_EQ(got->error().code, kDnsNotFound) << got->error().message;
}

TEST_F(DnsResolverTest, TimeoutWhenServerIsSilent) {
  server_.setHold(true);
  DnsResolverOptions opts;
  opts.query_timeout = milliseconds(100);
  opts.tries = 1;
  auto r = makeResolver(opts);
  auto got = resolveAndWait(*r, "svc.test", DnsFamily::kV4Only);
  ASSERT_TRUE(got);
  ASSERT_FALSE(*got) << "expected a timeout from a server that never answers";
  EXPECT_EQ(got->error().code, kDnsTimeout) << got->error().message;
}

TEST_F(DnsResolverTest, ConcurrentQueries) {
  auto r = makeResolver();
  std::map<std::string, std::string> got;
  for (std::string name : {"svc.test", "dual.test", "v6.test", "missing.test"}) {
    r->resolve(name, DnsFamily::kV4Preferred,
               [&got, name](Result<DnsAnswer> a) { got[name] = a ? ips(*a) : "error"; });
  }
  ASSERT_TRUE(runUntil(loop_, [&] { return got.size() == 4; })) << "got " << got.size() << "/4";
  EXPECT_EQ(got["svc.test"], "10.1.2.3 10.1.2.4");
  EXPECT_EQ(got["dual.test"], "10.1.2.3");
  EXPECT_EQ(got["v6.test"], "fd00::2");
  EXPECT_EQ(got["missing.test"], "error");
}

TEST_F(DnsResolverTest, CancelDropsTheCallback) {
  server_.setHold(true);
  auto r = makeResolver();
  bool called = false;
  auto id = r->resolve("svc.test", DnsFamily::kV4Only, [&](Result<DnsAnswer>) { called = true; });
  ASSERT_TRUE(runUntil(loop_, [&] { return server_.heldCount() == 1; }))
      << "the query never reached the test server";
  r->cancel(id);
  server_.flush();
  ASSERT_TRUE(runUntil(loop_, [&] { return r->outstanding() == 0; }))
      << "the cancelled query should still finish inside c-ares";
  EXPECT_FALSE(called) << "a cancelled query's callback must not run";
}

TEST_F(DnsResolverTest, DestructionDropsOutstandingCallbacks) {
  server_.setHold(true);
  auto r = makeResolver();
  bool called = false;
  r->resolve("svc.test", DnsFamily::kV4Only, [&](Result<DnsAnswer>) { called = true; });
  ASSERT_TRUE(runUntil(loop_, [&] { return server_.heldCount() == 1; }));
  r.reset();
  server_.flush();
  for (int i = 0; i < 5; ++i) loop_.runOnce(milliseconds(1));  // nothing may touch freed state
  EXPECT_FALSE(called) << "callbacks must not run after the resolver is destroyed";
}

TEST_F(DnsResolverTest, LiteralsAnswerOnTheNextLoopTurnNotInsideResolve) {
  auto r = makeResolver();
  std::optional<Result<DnsAnswer>> v4, v6;
  r->resolve("127.0.0.1", DnsFamily::kV4Preferred, [&](Result<DnsAnswer> a) { v4.emplace(a); });
  r->resolve("::1", DnsFamily::kV6Only, [&](Result<DnsAnswer> a) { v6.emplace(a); });
  EXPECT_FALSE(v4.has_value()) << "callback ran inside resolve()";
  EXPECT_FALSE(v6.has_value()) << "callback ran inside resolve()";
  ASSERT_TRUE(runUntil(loop_, [&] { return v4 && v6; }));
  ASSERT_TRUE(*v4) << v4->error().message;
  ASSERT_TRUE(*v6) << v6->error().message;
  EXPECT_EQ(ips(**v4), "127.0.0.1");
  EXPECT_EQ(ips(**v6), "::1");
  EXPECT_EQ((*v4)->ttl, seconds(0)) << "a literal has no TTL";
  EXPECT_TRUE(server_.queries.empty()) << "literals must not reach the nameserver";
}

TEST_F(DnsResolverTest, CancelBeforeDeferredDelivery) {
  auto r = makeResolver();
  bool called = false;
  auto id = r->resolve("127.0.0.1", DnsFamily::kV4Only, [&](Result<DnsAnswer>) { called = true; });
  r->cancel(id);
  for (int i = 0; i < 3; ++i) loop_.runOnce(milliseconds(1));
  EXPECT_FALSE(called);
}

TEST_F(DnsResolverTest, CallbackMayStartAnotherQuery) {
  auto r = makeResolver();
  std::vector<std::string> got;
  r->resolve("svc.test", DnsFamily::kV4Only, [&](Result<DnsAnswer> a) {
    got.push_back(a ? ips(*a) : "error");
    // From a network-driven callback: another network query and a literal.
    r->resolve("v6.test", DnsFamily::kV6Only,
               [&](Result<DnsAnswer> b) { got.push_back(b ? ips(*b) : "error"); });
    r->resolve("10.9.9.9", DnsFamily::kV4Only,
               [&](Result<DnsAnswer> b) { got.push_back(b ? ips(*b) : "error"); });
  });
  ASSERT_TRUE(runUntil(loop_, [&] { return got.size() == 3; })) << "got " << got.size() << "/3";
  EXPECT_EQ(got[0], "10.1.2.3 10.1.2.4");
  std::sort(got.begin() + 1, got.end());
  EXPECT_EQ(got[1], "10.9.9.9");
  EXPECT_EQ(got[2], "fd00::2");
}

TEST_F(DnsResolverTest, CallbackMayCancelALaterDeferredAnswer) {
  auto r = makeResolver();
  int first = 0, second = 0;
  Resolver::QueryId second_id = 0;
  r->resolve("127.0.0.1", DnsFamily::kV4Only, [&](Result<DnsAnswer>) {
    ++first;
    r->cancel(second_id);
  });
  second_id = r->resolve("127.0.0.2", DnsFamily::kV4Only, [&](Result<DnsAnswer>) { ++second; });
  ASSERT_TRUE(runUntil(loop_, [&] { return first == 1; }));
  for (int i = 0; i < 3; ++i) loop_.runOnce(milliseconds(1));
  EXPECT_EQ(second, 0) << "the second answer was cancelled by the first callback";
}

// DnsRefresher on the real resolver and loop: the re-resolution timer fires, the changed answer
// is published. Refresh bounds are shrunk so the test takes ~100 ms of real time.
TEST_F(DnsResolverTest, RefresherPublishesChangedAnswer) {
  auto r = makeResolver();
  DnsRefresherOptions opts;
  opts.family = DnsFamily::kV4Only;
  opts.min_refresh = milliseconds(20);
  opts.max_refresh = milliseconds(50);
  std::vector<std::string> updates;
  DnsRefresher refresher(*r, loop_.timers(), {{"svc.test", 8080}}, opts,
                         [&](const std::vector<ResolvedEndpoint>& list) {
                           std::string s;
                           for (const auto& e : list)
                             s += (s.empty() ? "" : " ") + e.address.toString();
                           updates.push_back(s);
                         });
  refresher.start();
  ASSERT_TRUE(runUntil(loop_, [&] { return updates.size() == 1; })) << "no first update";
  EXPECT_EQ(updates[0], "10.1.2.3:8080 10.1.2.4:8080");
  server_.set("svc.test", {.a = {{"10.1.2.5", 7}}, .aaaa = {}});
  ASSERT_TRUE(runUntil(loop_, [&] { return updates.size() == 2; }))
      << "the changed answer was not published after re-resolution";
  EXPECT_EQ(updates[1], "10.1.2.5:8080");
  size_t before = server_.queries.size();
  ASSERT_TRUE(runUntil(loop_, [&] { return server_.queries.size() >= before + 2; }))
      << "the refresher should keep re-resolving on its TTL";
  EXPECT_EQ(updates.size(), 2u) << "unchanged answers must not publish";
}

// Uses the system configuration (/etc/hosts, /etc/resolv.conf), like production.
TEST(DnsResolverSystemTest, LocalhostResolvesFromHostsFile) {
  net::EventLoop loop;
  auto r = DnsResolver::create(loop);
  ASSERT_TRUE(r) << r.error().message;
  std::optional<Result<DnsAnswer>> got;
  (*r)->resolve("localhost", DnsFamily::kV4Only, [&](Result<DnsAnswer> a) { got.emplace(a); });
  ASSERT_TRUE(runUntil(loop, [&] { return got.has_value(); })) << "no answer for localhost";
  ASSERT_TRUE(*got) << got->error().message;
  EXPECT_EQ(ips(**got), "127.0.0.1");
}

TEST(DnsResolverOptionsTest, ParseNameserver) {
  auto a = parseNameserver("127.0.0.1:5353");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->toString(), "127.0.0.1:5353");
  EXPECT_EQ(parseNameserver("10.0.0.1")->toString(), "10.0.0.1:53");
  EXPECT_EQ(parseNameserver("[::1]:54")->toString(), "[::1]:54");
  EXPECT_EQ(parseNameserver("[fd00::1]")->toString(), "[fd00::1]:53");
  EXPECT_EQ(parseNameserver("fd00::1")->toString(), "[fd00::1]:53");
  for (const char* bad : {"", "10.0.0.1:", "10.0.0.1:0", "10.0.0.1:70000", "[::1", "[::1]x",
                          "dns.example:53", "10.0.0.1:5x"}) {
    EXPECT_FALSE(parseNameserver(bad)) << "\"" << bad << "\" should be rejected";
  }
}

TEST(DnsResolverOptionsTest, CreateRejectsBadNameserver) {
  net::EventLoop loop;
  DnsResolverOptions opts;
  opts.nameservers = {"not-an-ip:53"};
  auto r = DnsResolver::create(loop, opts);
  ASSERT_FALSE(r) << "a hostname is not a valid nameserver";
  EXPECT_NE(r.error().message.find("not-an-ip"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace weft::upstream
