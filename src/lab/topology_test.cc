#include "lab/topology.h"

#include <gtest/gtest.h>

#include "lab/ipv4.h"
#include "lab/layout.h"

namespace weft::lab {
namespace {

constexpr const char* kGood = R"(
name: crossvpc
networks:
  - name: vpc1
    cidr: 198.18.0.0/16
    subnets:
      - {name: vpc1-a, cidr: 198.18.1.0/24, zone: us-west-2a}
      - {name: vpc1-b, cidr: 198.18.2.0/24, zone: us-west-2b}
  - name: vpc2
    cidr: 198.19.0.0/16
    endpoint: 198.19.200.10
    subnets: [{name: vpc2-a, cidr: 198.19.1.0/24}]
peerings: [{between: [vpc1, vpc2]}]
hosts:
  - {name: frontend-1, subnet: vpc1-a, address: 198.18.1.10}
  - {name: crystal-1, subnet: vpc1-a}
  - {name: crystal-2, subnet: vpc1-a}
  - {name: frontend-2, subnet: vpc1-b}
  - {name: nodejs-1, subnet: vpc2-a, run: [python3, -m, http.server, "3000"]}
control_plane: {register_networks: true, dns_search: [appmeshworkshop.hosted.local]}
)";

// The error message of parsing `yaml`, or "" when it parsed.
std::string problems(const std::string& yaml) {
  auto t = parseTopology(yaml, "lab");
  return t ? std::string() : t.error().message;
}

// A one-network file with `hosts` appended.
std::string withHosts(const std::string& hosts) {
  return "networks:\n"
         "  - name: vpc1\n"
         "    cidr: 198.18.0.0/16\n"
         "    subnets: [{name: a, cidr: 198.18.1.0/24}, {name: b, cidr: 198.18.2.0/28}]\n"
         "hosts:\n" +
         hosts;
}

TEST(Ipv4Test, ParsesAndFormats) {
  auto a = parseIpv4("198.18.1.10");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(*a, 0xC612010Au);
  EXPECT_EQ(formatIpv4(*a), "198.18.1.10");
  for (const char* bad :
       {"198.18.1", "198.18.1.256", "198.18.01.1", "a.b.c.d", "198.18.1.1 ", "", "1.2.3.4.5"})
    EXPECT_FALSE(parseIpv4(bad)) << bad;
}

TEST(Ipv4Test, NetsContainAndOverlap) {
  auto n = parseIpv4Net("198.18.0.0/16");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->last(), *parseIpv4("198.18.255.255"));
  EXPECT_TRUE(n->contains(*parseIpv4Net("198.18.3.0/24")));
  EXPECT_FALSE(n->contains(*parseIpv4Net("198.19.3.0/24")));
  EXPECT_TRUE(n->overlaps(*parseIpv4Net("198.18.128.0/17")));
  EXPECT_TRUE(parseIpv4Net("198.18.0.0/15")->overlaps(*n));
  EXPECT_FALSE(n->overlaps(*parseIpv4Net("198.19.0.0/16")));
  EXPECT_TRUE(kLabRange.contains(*n));
  auto host_bits = parseIpv4Net("198.18.1.5/24");
  ASSERT_FALSE(host_bits);
  EXPECT_NE(host_bits.error().message.find("did you mean 198.18.1.0/24"), std::string::npos)
      << host_bits.error().message;
  EXPECT_FALSE(parseIpv4Net("198.18.1.0"));
  EXPECT_FALSE(parseIpv4Net("198.18.1.0/33"));
}

TEST(TopologyTest, ParsesAndFillsDefaults) {
  auto t = parseTopology(kGood, "ignored");
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(t->name, "crossvpc");
  ASSERT_EQ(t->networks.size(), 2u);
  const Network& vpc1 = t->networks[0];
  EXPECT_EQ(vpc1.cidr.str(), "198.18.0.0/16");
  EXPECT_EQ(formatIpv4(vpc1.endpoint), "198.18.255.254");  // last usable by default
  EXPECT_EQ(formatIpv4(vpc1.router), "198.18.255.253");
  EXPECT_EQ(formatIpv4(vpc1.subnets[0].gateway), "198.18.1.1");
  EXPECT_EQ(vpc1.subnets[1].zone, "us-west-2b");
  EXPECT_EQ(formatIpv4(t->networks[1].endpoint), "198.19.200.10");
  EXPECT_EQ(formatIpv4(t->networks[1].router), "198.19.200.9");
  ASSERT_EQ(t->hosts.size(), 5u);
  // Explicit first; the others take the next free address from the fifth on.
  EXPECT_EQ(formatIpv4(t->hosts[0].address), "198.18.1.10");
  EXPECT_EQ(formatIpv4(t->hosts[1].address), "198.18.1.4");
  EXPECT_EQ(formatIpv4(t->hosts[2].address), "198.18.1.5");
  EXPECT_EQ(formatIpv4(t->hosts[3].address), "198.18.2.4");
  EXPECT_EQ(t->hosts[4].network, "vpc2");
  EXPECT_EQ(t->hosts[4].run, (std::vector<std::string>{"python3", "-m", "http.server", "3000"}));
  EXPECT_TRUE(t->peered("vpc2", "vpc1"));
  EXPECT_TRUE(t->control_plane.register_networks);
  EXPECT_EQ(t->control_plane.dns_search, std::vector<std::string>{"appmeshworkshop.hosted.local"});
}

TEST(TopologyTest, NameDefaultsToTheGivenOne) {
  auto t = parseTopology(withHosts("  - {name: h, subnet: a}\n"), "fromfile");
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(t->name, "fromfile");
  EXPECT_EQ(t->hosts[0].network, "vpc1");
}

TEST(TopologyTest, JsonRoundTrips) {
  auto t = parseTopology(kGood, "x");
  ASSERT_TRUE(t);
  std::string json = topologyToJson(*t);
  auto back = parseTopology(json, "y");
  ASSERT_TRUE(back) << back.error().message << "\n" << json;
  EXPECT_EQ(topologyToJson(*back), json);
  EXPECT_EQ(back->name, "crossvpc");
  EXPECT_EQ(formatIpv4(back->hosts[1].address), "198.18.1.4");
}

struct BadCase {
  const char* what;
  std::string yaml;
  std::vector<std::string> expect;  // substrings of the message
};

class TopologyErrorTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(TopologyErrorTest, RefusedWithAClearMessage) {
  const BadCase& c = GetParam();
  std::string msg = problems(c.yaml);
  ASSERT_FALSE(msg.empty()) << c.what << ": expected a refusal, it parsed";
  for (const std::string& e : c.expect)
    EXPECT_NE(msg.find(e), std::string::npos) << c.what << ": expected \"" << e << "\" in:\n"
                                              << msg;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, TopologyErrorTest,
    ::testing::Values(
        BadCase{"overlapping networks",
                "networks:\n"
                "  - {name: vpc1, cidr: 198.18.0.0/16, subnets: [{name: a, cidr: 198.18.1.0/24}]}\n"
                "  - {name: vpc2, cidr: 198.18.128.0/17, subnets: [{name: b, cidr: "
                "198.18.129.0/24}]}\n",
                {"network vpc2: cidr 198.18.128.0/17 overlaps network vpc1 (198.18.0.0/16)",
                 "networks must not overlap"}},
        BadCase{
            "subnet outside its network",
            "networks:\n"
            "  - {name: vpc1, cidr: 198.18.0.0/16, subnets: [{name: a, cidr: 198.19.1.0/24}]}\n",
            {"subnet a: cidr 198.19.1.0/24 is not inside its network vpc1 (198.18.0.0/16)",
             "pick a range inside 198.18.0.0/16"}},
        BadCase{"overlapping subnets",
                "networks:\n"
                "  - name: vpc1\n"
                "    cidr: 198.18.0.0/16\n"
                "    subnets: [{name: a, cidr: 198.18.0.0/20}, {name: b, cidr: 198.18.8.0/24}]\n",
                {"subnet b: cidr 198.18.8.0/24 overlaps subnet a (198.18.0.0/20)"}},
        BadCase{"unknown subnet",
                withHosts("  - {name: h1, subnet: c}\n"),
                {"host h1: unknown subnet \"c\" (subnets: a, b)"}},
        BadCase{"unknown network in a peering",
                "networks:\n"
                "  - {name: vpc1, cidr: 198.18.0.0/16, subnets: [{name: a, cidr: 198.18.1.0/24}]}\n"
                "peerings: [{between: [vpc1, vpc9]}]\n",
                {"peerings[0]: unknown network \"vpc9\" (networks: vpc1)"}},
        BadCase{"a peering with itself",
                "networks:\n"
                "  - {name: vpc1, cidr: 198.18.0.0/16, subnets: [{name: a, cidr: 198.18.1.0/24}]}\n"
                "peerings: [{between: [vpc1, vpc1]}]\n",
                {"cannot be peered with itself"}},
        BadCase{"a peering listed twice",
                "networks:\n"
                "  - {name: vpc1, cidr: 198.18.0.0/16, subnets: [{name: a, cidr: 198.18.1.0/24}]}\n"
                "  - {name: vpc2, cidr: 198.19.0.0/16, subnets: [{name: b, cidr: 198.19.1.0/24}]}\n"
                "peerings: [{between: [vpc1, vpc2]}, {between: [vpc2, vpc1]}]\n",
                {"peerings[1]: vpc2 and vpc1 are already peered"}},
        BadCase{"duplicate host names",
                withHosts("  - {name: h1, subnet: a}\n  - {name: h1, subnet: b}\n"),
                {"host h1: the name \"h1\" is already used by host h1"}},
        BadCase{"a host named like a network",
                withHosts("  - {name: vpc1, subnet: a}\n"),
                {"host vpc1: the name \"vpc1\" is already used by network vpc1",
                 "every network, subnet and host needs its own name"}},
        BadCase{"host address outside its subnet",
                withHosts("  - {name: h1, subnet: a, address: 198.18.2.10}\n"),
                {"host h1: address 198.18.2.10 is outside its subnet a (198.18.1.0/24)",
                 "drop `address:` to take the next free one"}},
        BadCase{"colliding host addresses",
                withHosts("  - {name: h1, subnet: a, address: 198.18.1.10}\n"
                          "  - {name: h2, subnet: a, address: 198.18.1.10}\n"),
                {"host h2: address 198.18.1.10 is already taken by host h1"}},
        BadCase{"the gateway as a host address",
                withHosts("  - {name: h1, subnet: a, address: 198.18.1.1}\n"),
                {"host h1: address 198.18.1.1 is reserved in subnet a",
                 "use 198.18.1.4 to 198.18.1.254"}},
        BadCase{"a full subnet",
                withHosts("  - {name: h1, subnet: b}\n  - {name: h2, subnet: b}\n"
                          "  - {name: h3, subnet: b}\n  - {name: h4, subnet: b}\n"
                          "  - {name: h5, subnet: b}\n  - {name: h6, subnet: b}\n"
                          "  - {name: h7, subnet: b}\n  - {name: h8, subnet: b}\n"
                          "  - {name: h9, subnet: b}\n  - {name: h10, subnet: b}\n"
                          "  - {name: h11, subnet: b}\n  - {name: h12, subnet: b}\n"),
                {"host h12: subnet b (198.18.2.0/28) has no free address left"}},
        BadCase{"a network outside 198.18.0.0/15",
                "networks:\n"
                "  - {name: vpc1, cidr: 10.1.0.0/16, subnets: [{name: a, cidr: 10.1.1.0/24}]}\n",
                {"network vpc1: cidr 10.1.0.0/16 is outside 198.18.0.0/15",
                 "subnet a: cidr 10.1.1.0/24 is outside 198.18.0.0/15"}},
        BadCase{"a host address outside 198.18.0.0/15",
                withHosts("  - {name: h1, subnet: a, address: 10.0.0.1}\n"),
                {"host h1: address 10.0.0.1 is outside its subnet a"}},
        BadCase{
            "host bits set",
            "networks:\n"
            "  - {name: vpc1, cidr: 198.18.0.1/16, subnets: [{name: a, cidr: 198.18.1.0/24}]}\n",
            {"network vpc1: cidr \"198.18.0.1/16\" has host bits set (did you mean "
             "198.18.0.0/16?)"}},
        BadCase{
            "a network larger than a /16",
            "networks:\n"
            "  - {name: vpc1, cidr: 198.18.0.0/15, subnets: [{name: a, cidr: 198.18.1.0/24}]}\n",
            {"between a /16 and a /28"}},
        BadCase{"an endpoint inside a subnet",
                "networks:\n"
                "  - name: vpc1\n"
                "    cidr: 198.18.0.0/16\n"
                "    endpoint: 198.18.1.200\n"
                "    subnets: [{name: a, cidr: 198.18.1.0/24}]\n",
                {"network vpc1: endpoint 198.18.1.200", "lies inside subnet a (198.18.1.0/24)"}},
        BadCase{"the default endpoint taken by a subnet",
                "networks:\n"
                "  - name: vpc1\n"
                "    cidr: 198.18.0.0/16\n"
                "    subnets: [{name: a, cidr: 198.18.255.0/24}]\n",
                {"endpoint 198.18.255.254", "set `endpoint:` to a free address"}},
        BadCase{"an endpoint outside the network",
                "networks:\n"
                "  - name: vpc1\n"
                "    cidr: 198.18.0.0/16\n"
                "    endpoint: 198.19.0.10\n"
                "    subnets: [{name: a, cidr: 198.18.1.0/24}]\n",
                {"endpoint 198.19.0.10 must be a usable address of 198.18.0.0/16"}},
        BadCase{"an unknown key",
                "networks:\n"
                "  - {name: vpc1, cidr: 198.18.0.0/16, subnet: [{name: a, cidr: 198.18.1.0/24}]}\n",
                {"network vpc1: unknown key 'subnet' (expected name, cidr, endpoint, subnets)",
                 "network vpc1: needs at least one subnet"}},
        BadCase{"no networks", "hosts: []\n", {"'networks' is required"}},
        BadCase{"not YAML", "networks: [\n", {"not valid YAML: line"}},
        BadCase{"a bad name",
                withHosts("  - {name: Web_1, subnet: a}\n"),
                {"host Web_1: the name may hold only lowercase letters, digits and '-'"}},
        BadCase{
            "a bad lab name",
            "name: My Lab\nnetworks:\n"
            "  - {name: vpc1, cidr: 198.18.0.0/16, subnets: [{name: a, cidr: 198.18.1.0/24}]}\n",
            {"lab name \"My Lab\""}},
        BadCase{"run as a shell string",
                withHosts("  - {name: h1, subnet: a, run: ./app.sh}\n"),
                {"host h1: 'run' is an argv list (no shell)"}},
        BadCase{"register_networks not a boolean",
                "networks:\n"
                "  - {name: vpc1, cidr: 198.18.0.0/16, subnets: [{name: a, cidr: 198.18.1.0/24}]}\n"
                "control_plane: {register_networks: maybe}\n",
                {"register_networks must be true or false"}}));

TEST(TopologyTest, ReportsEveryProblemAtOnce) {
  std::string msg =
      problems(withHosts("  - {name: h1, subnet: c}\n"
                         "  - {name: h2, subnet: a, address: 198.18.9.9}\n"));
  EXPECT_NE(msg.find("2 problems in the topology:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("host h1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("host h2"), std::string::npos) << msg;
}

TEST(TopologyTest, CheckPeering) {
  auto t = parseTopology(kGood, "x");
  ASSERT_TRUE(t);
  EXPECT_TRUE(checkPeering(*t, "vpc1", "vpc2", true));
  auto again = checkPeering(*t, "vpc2", "vpc1", false);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().message, "vpc2 and vpc1 are already peered");
  auto unknown = checkPeering(*t, "vpc1", "vpc3", false);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().message, "lab crossvpc has no network \"vpc3\" (networks: vpc1, vpc2)");
}

TEST(LayoutTest, NamesFitTheKernelsLimits) {
  std::string tag = labTag("crossvpc");
  EXPECT_EQ(tag.size(), 10u);
  EXPECT_EQ(tag.substr(0, 2), "wl");
  EXPECT_EQ(tag, labTag("crossvpc"));
  EXPECT_NE(tag, labTag("crossvpc2"));
  // Interface names hold at most 15 characters.
  EXPECT_LE(rootEndpointLink(tag, kMaxNetworks - 1).size(), 15u);
  EXPECT_LE(hostPortLink(kMaxHosts - 1).size(), 15u);
  EXPECT_LE(peeringLink(kMaxNetworks - 1).size(), 15u);
  EXPECT_LE(bridgeLink(kMaxSubnetsPerNetwork - 1).size(), 15u);
  EXPECT_EQ(hostNamespace("crossvpc", "frontend-1"), "crossvpc-frontend-1");
}

}  // namespace
}  // namespace weft::lab
