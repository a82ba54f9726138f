#include "control/registry/dns_answer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "control/registry/dns_test_support.h"

namespace weft::control::registry {
namespace {

using testing::query;

// A private namespace mesh.local attached to a network 198.18.0.0/16; a public one pub.example.
std::vector<KeyValue> records(const std::string& web_health_1, const std::string& web_health_2) {
  return {
      {"registry/networks/vpc-1", R"({"Id":"vpc-1","Cidrs":["198.18.0.0/16"]})", 1},
      {"registry/namespaces/ns-1",
       R"({"Id":"ns-1","Name":"mesh.local","Type":"DNS_PRIVATE","Vpcs":["vpc-1"],)"
       R"("Properties":{"DnsProperties":{"HostedZoneId":"Z1","SOA":{"TTL":30}}}})",
       2},
      {"registry/namespaces/ns-2",
       R"({"Id":"ns-2","Name":"pub.example","Type":"DNS_PUBLIC","Vpcs":[]})", 3},
      {"registry/namespaces/ns-3", R"({"Id":"ns-3","Name":"http.only","Type":"HTTP"})", 4},
      {"registry/services/srv-web",
       R"({"Id":"srv-web","Name":"web","NamespaceId":"ns-1","DnsConfig":{"RoutingPolicy":)"
       R"("MULTIVALUE","DnsRecords":[{"Type":"A","TTL":42},{"Type":"SRV","TTL":43}]}})",
       5},
      {"registry/services/srv-v6",
       R"({"Id":"srv-v6","Name":"db.tier","NamespaceId":"ns-1","DnsConfig":{"RoutingPolicy":)"
       R"("MULTIVALUE","DnsRecords":[{"Type":"AAAA","TTL":10}]}})",
       6},
      {"registry/services/srv-c",
       R"({"Id":"srv-c","Name":"alias","NamespaceId":"ns-1","DnsConfig":{"RoutingPolicy":)"
       R"("WEIGHTED","DnsRecords":[{"Type":"CNAME","TTL":5}]}})",
       7},
      {"registry/instances/srv-web/i-1",
       R"({"Id":"i-1","Attributes":{"AWS_INSTANCE_IPV4":"198.18.0.1","AWS_INSTANCE_PORT":"8080"},)"
       R"("HealthStatus":")" +
           web_health_1 + "\"}",
       8},
      {"registry/instances/srv-web/i-2",
       R"({"Id":"i-2","Attributes":{"AWS_INSTANCE_IPV4":"198.18.0.2","AWS_INSTANCE_PORT":"8081"},)"
       R"("HealthStatus":")" +
           web_health_2 + "\"}",
       9},
      {"registry/instances/srv-v6/d1",
       R"({"Id":"d1","Attributes":{"AWS_INSTANCE_IPV6":"fd00::1"},"HealthStatus":"UNKNOWN"})", 10},
      {"registry/instances/srv-c/c1",
       R"({"Id":"c1","Attributes":{"AWS_INSTANCE_CNAME":"target.example.org"},"HealthStatus":"UNKNOWN"})",
       11},
  };
}

net::Address addr(const char* ip) { return *net::parseAddress(ip, 40000); }

struct Answer {
  dns::Message m;
  std::string wire;
};

Answer ask(const Snapshot& s, std::string_view name, uint16_t type, const char* from = "127.0.0.1",
           Transport t = Transport::kUdp, uint16_t edns = 0) {
  std::string wire = answerDnsQuery(s, query(name, type, edns), addr(from), t, 0);
  auto m = dns::parseMessage(wire);
  EXPECT_TRUE(m) << "the answer does not parse: " << (m ? "" : m.error().message);
  return {m ? *m : dns::Message{}, wire};
}

std::vector<std::string> ipv4s(const std::vector<dns::ResourceRecord>& rrs) {
  std::vector<std::string> out;
  for (const auto& rr : rrs)
    if (rr.type == dns::kTypeA)
      out.push_back(std::to_string(static_cast<uint8_t>(rr.rdata[0])) + "." +
                    std::to_string(static_cast<uint8_t>(rr.rdata[1])) + "." +
                    std::to_string(static_cast<uint8_t>(rr.rdata[2])) + "." +
                    std::to_string(static_cast<uint8_t>(rr.rdata[3])));
  return out;
}

TEST(DnsAnswer, AnswersARecordsOfHealthyInstancesWithTheServiceTtl) {
  auto s = buildSnapshot(records("HEALTHY", "UNHEALTHY"));
  Answer a = ask(*s, "WEB.mesh.local", dns::kTypeA);
  EXPECT_EQ(a.m.rcode(), dns::kNoError);
  EXPECT_TRUE(a.m.flags & dns::kFlagAa);
  EXPECT_EQ(a.m.id, 0x4242);
  ASSERT_EQ(a.m.questions.size(), 1u);
  EXPECT_EQ(ipv4s(a.m.answers), std::vector<std::string>{"198.18.0.1"});
  EXPECT_EQ(a.m.answers[0].ttl, 42u);
}

TEST(DnsAnswer, AnswersAllInstancesWhenNoneIsHealthy) {
  auto s = buildSnapshot(records("UNHEALTHY", "UNHEALTHY"));
  Answer a = ask(*s, "web.mesh.local", dns::kTypeA);
  auto ips = ipv4s(a.m.answers);
  std::sort(ips.begin(), ips.end());
  EXPECT_EQ(ips, (std::vector<std::string>{"198.18.0.1", "198.18.0.2"}));
}

TEST(DnsAnswer, SrvAnswersNameTheInstanceHostsWithAddressesInAdditional) {
  auto s = buildSnapshot(records("HEALTHY", "HEALTHY"));
  Answer a = ask(*s, "web.mesh.local", dns::kTypeSrv);
  ASSERT_EQ(a.m.answers.size(), 2u);
  std::set<std::pair<uint16_t, std::string>> got;
  for (const auto& rr : a.m.answers) {
    EXPECT_EQ(rr.ttl, 43u);
    uint16_t port = static_cast<uint16_t>((static_cast<uint8_t>(rr.rdata[4]) << 8) |
                                          static_cast<uint8_t>(rr.rdata[5]));
    size_t off = rr.rdata_offset + 6;
    auto target = dns::readName(a.wire, &off);
    ASSERT_TRUE(target);
    got.emplace(port, *target);
  }
  EXPECT_EQ(got, (std::set<std::pair<uint16_t, std::string>>{{8080, "i-1.web.mesh.local"},
                                                             {8081, "i-2.web.mesh.local"}}));
  EXPECT_EQ(ipv4s(a.m.additional).size(), 2u);
  // The instance host itself resolves.
  Answer h = ask(*s, "i-2.web.mesh.local", dns::kTypeA);
  EXPECT_EQ(ipv4s(h.m.answers), std::vector<std::string>{"198.18.0.2"});
}

TEST(DnsAnswer, NxdomainNodataAndSoaInAuthority) {
  auto s = buildSnapshot(records("HEALTHY", "HEALTHY"));
  Answer nx = ask(*s, "nope.mesh.local", dns::kTypeA);
  EXPECT_EQ(nx.m.rcode(), dns::kNxDomain);
  EXPECT_TRUE(nx.m.answers.empty());
  ASSERT_EQ(nx.m.authority.size(), 1u);
  EXPECT_EQ(nx.m.authority[0].type, dns::kTypeSoa);
  EXPECT_EQ(nx.m.authority[0].name, "mesh.local");
  EXPECT_EQ(nx.m.authority[0].ttl, 30u);
  // web has no AAAA: NODATA.
  Answer nodata = ask(*s, "web.mesh.local", dns::kTypeAaaa);
  EXPECT_EQ(nodata.m.rcode(), dns::kNoError);
  EXPECT_TRUE(nodata.m.answers.empty());
  ASSERT_EQ(nodata.m.authority.size(), 1u);
  // "tier" is an empty non-terminal (service db.tier): NODATA, not NXDOMAIN.
  Answer ent = ask(*s, "tier.mesh.local", dns::kTypeA);
  EXPECT_EQ(ent.m.rcode(), dns::kNoError);
  Answer v6 = ask(*s, "db.tier.mesh.local", dns::kTypeAaaa);
  ASSERT_EQ(v6.m.answers.size(), 1u);
  EXPECT_EQ(v6.m.answers[0].rdata.size(), 16u);
  EXPECT_EQ(v6.m.answers[0].ttl, 10u);
}

TEST(DnsAnswer, ApexSoaAndNs) {
  auto s = buildSnapshot(records("HEALTHY", "HEALTHY"));
  Answer soa = ask(*s, "mesh.local", dns::kTypeSoa);
  ASSERT_EQ(soa.m.answers.size(), 1u);
  EXPECT_EQ(soa.m.answers[0].type, dns::kTypeSoa);
  Answer ns = ask(*s, "mesh.local", dns::kTypeNs);
  ASSERT_EQ(ns.m.answers.size(), 1u);
  EXPECT_EQ(ns.m.answers[0].type, dns::kTypeNs);
}

TEST(DnsAnswer, CnameService) {
  auto s = buildSnapshot(records("HEALTHY", "HEALTHY"));
  Answer c = ask(*s, "alias.mesh.local", dns::kTypeA);
  ASSERT_EQ(c.m.answers.size(), 1u);
  EXPECT_EQ(c.m.answers[0].type, dns::kTypeCname);
  size_t off = c.m.answers[0].rdata_offset;
  auto target = dns::readName(c.wire, &off);
  ASSERT_TRUE(target);
  EXPECT_EQ(*target, "target.example.org");
}

TEST(DnsAnswer, RefusesNamesOutsideAndCallersOutsideTheNetworks) {
  auto s = buildSnapshot(records("HEALTHY", "HEALTHY"));
  EXPECT_EQ(ask(*s, "example.com", dns::kTypeA).m.rcode(), dns::kRefused);
  EXPECT_EQ(ask(*s, "x.http.only", dns::kTypeA).m.rcode(), dns::kRefused);
  // Inside the attached network: answered; from another network: REFUSED.
  EXPECT_EQ(ask(*s, "web.mesh.local", dns::kTypeA, "198.18.7.9").m.rcode(), dns::kNoError);
  EXPECT_EQ(ask(*s, "web.mesh.local", dns::kTypeA, "198.19.0.5").m.rcode(), dns::kRefused);
  EXPECT_EQ(ask(*s, "web.mesh.local", dns::kTypeA, "::ffff:198.18.0.9").m.rcode(), dns::kNoError);
  EXPECT_EQ(ask(*s, "web.mesh.local", dns::kTypeA, "::1").m.rcode(), dns::kNoError);
  // A public namespace answers anyone (NXDOMAIN here: it has no services).
  EXPECT_EQ(ask(*s, "x.pub.example", dns::kTypeA, "203.0.113.1").m.rcode(), dns::kNxDomain);
}

TEST(DnsAnswer, TruncatesLargeUdpAnswersUnlessEdnsOrTcp) {
  std::vector<KeyValue> kvs = {
      {"registry/namespaces/ns-1",
       R"({"Id":"ns-1","Name":"mesh.local","Type":"DNS_PRIVATE","Vpcs":[]})", 1},
      {"registry/services/srv-1",
       R"({"Id":"srv-1","Name":"big","NamespaceId":"ns-1","DnsConfig":{"RoutingPolicy":)"
       R"("MULTIVALUE","DnsRecords":[{"Type":"AAAA","TTL":1},{"Type":"SRV","TTL":1}]}})",
       2}};
  for (int i = 0; i < 8; ++i)
    kvs.push_back({"registry/instances/srv-1/instance-with-a-long-name-" + std::to_string(i),
                   R"({"Id":"instance-with-a-long-name-)" + std::to_string(i) +
                       R"(","Attributes":{"AWS_INSTANCE_IPV6":"fd00::)" + std::to_string(i + 1) +
                       R"(","AWS_INSTANCE_PORT":"80"},"HealthStatus":"HEALTHY"})",
                   3});
  auto s = buildSnapshot(kvs);
  Answer udp = ask(*s, "big.mesh.local", dns::kTypeSrv);
  EXPECT_TRUE(udp.m.flags & dns::kFlagTc) << "a " << udp.wire.size() << "-byte UDP answer";
  EXPECT_LE(udp.wire.size(), 512u);
  EXPECT_TRUE(udp.m.answers.empty());
  Answer tcp = ask(*s, "big.mesh.local", dns::kTypeSrv, "127.0.0.1", Transport::kTcp);
  EXPECT_FALSE(tcp.m.flags & dns::kFlagTc);
  EXPECT_EQ(tcp.m.answers.size(), 8u);
  EXPECT_GT(tcp.wire.size(), 512u);
  Answer edns = ask(*s, "big.mesh.local", dns::kTypeSrv, "127.0.0.1", Transport::kUdp, 4096);
  EXPECT_FALSE(edns.m.flags & dns::kFlagTc);
  EXPECT_EQ(edns.m.answers.size(), 8u);
  EXPECT_NE(edns.m.opt(), nullptr);
}

TEST(DnsAnswer, FormatErrorsAndIgnoredResponses) {
  auto s = buildSnapshot(records("HEALTHY", "HEALTHY"));
  auto peer = addr("127.0.0.1");
  EXPECT_EQ(answerDnsQuery(*s, "short", peer, Transport::kUdp, 0), "");
  std::string q = query("web.mesh.local", dns::kTypeA);
  std::string resp = q;
  resp[2] = static_cast<char>(resp[2] | 0x80);
  EXPECT_EQ(answerDnsQuery(*s, resp, peer, Transport::kUdp, 0), "");
  auto bad = dns::parseMessage(answerDnsQuery(*s, q + "junk", peer, Transport::kUdp, 0));
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->rcode(), dns::kFormErr);
}

TEST(DnsAnswer, ForwardsOnlyOutsideNamesFromCallersThatMayRecurse) {
  auto s = buildSnapshot(records("HEALTHY", "HEALTHY"));
  std::string q = query("www.Example.org", dns::kTypeAaaa, 1400);
  DnsDecision d = decideDnsQuery(*s, q, addr("127.0.0.1"), Transport::kUdp, 0, true);
  EXPECT_TRUE(d.forward) << "a loopback caller's outside name goes upstream";
  EXPECT_TRUE(d.reply.empty());
  EXPECT_EQ(d.qname, "www.example.org");
  EXPECT_EQ(d.qtype, dns::kTypeAaaa);
  EXPECT_EQ(d.udp_limit, 1400u);
  d = decideDnsQuery(*s, q, addr("198.18.3.4"), Transport::kUdp, 0, true);
  EXPECT_TRUE(d.forward) << "a caller inside an attached network may recurse";
  // Outside every attached network: not an open resolver.
  d = decideDnsQuery(*s, q, addr("203.0.113.9"), Transport::kUdp, 0, true);
  EXPECT_FALSE(d.forward);
  auto m = dns::parseMessage(d.reply);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->rcode(), dns::kRefused);
  // Without upstreams: REFUSED as before.
  d = decideDnsQuery(*s, q, addr("127.0.0.1"), Transport::kUdp, 0, false);
  EXPECT_FALSE(d.forward);
  m = dns::parseMessage(d.reply);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->rcode(), dns::kRefused);
  // Names inside a zone are answered here, even unknown ones and from unattached callers.
  for (const char* from : {"127.0.0.1", "203.0.113.9"}) {
    d = decideDnsQuery(*s, query("nope.mesh.local", dns::kTypeA), addr(from), Transport::kUdp, 0,
                       true);
    EXPECT_FALSE(d.forward) << from;
    m = dns::parseMessage(d.reply);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->rcode(), std::string(from) == "127.0.0.1" ? dns::kNxDomain : dns::kRefused)
        << from;
  }
}

TEST(DnsAnswer, ErrorReplyEchoesTheQuestion) {
  std::string q = query("x.example", dns::kTypeA);
  auto m = dns::parseMessage(dnsErrorReply(q, dns::kServFail));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->id, 0x4242);
  EXPECT_EQ(m->rcode(), dns::kServFail);
  EXPECT_TRUE(m->flags & dns::kFlagQr);
  EXPECT_TRUE(m->flags & dns::kFlagRa);
  ASSERT_EQ(m->questions.size(), 1u);
  EXPECT_EQ(m->questions[0].name, "x.example");
  EXPECT_EQ(dnsErrorReply("short", dns::kServFail), "");
}

}  // namespace
}  // namespace weft::control::registry
