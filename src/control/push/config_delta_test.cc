#include "control/push/config_delta.h"

#include <google/protobuf/text_format.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include "meshconfig/meshconfig.h"

namespace weft::control::push {
namespace {

v1::ProxyConfig parse(const std::string& text) {
  v1::ProxyConfig c;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &c)) << text;
  return c;
}

const char* kBase = R"(
  node: "mesh/m/virtualNode/a"
  listeners { name: "lds_egress_0.0.0.0_15001" port: 15001 }
  clusters { name: "static_b" type: STATIC endpoints { address: "10.0.0.1" port: 80 } }
  clusters { name: "dns_c" type: DNS endpoints { address: "c.local" port: 80 } }
)";

TEST(ConfigDeltaTest, EqualConfigsGiveAnEmptyDelta) {
  auto d = endpointsDelta(parse(kBase), parse(kBase));
  ASSERT_TRUE(d.has_value()) << "expected a delta for equal configs";
  EXPECT_TRUE(d->empty()) << "expected no clusters, got " << d->size();
}

TEST(ConfigDeltaTest, StaticEndpointsChangeIsADelta) {
  v1::ProxyConfig next = parse(kBase);
  next.mutable_clusters(0)->add_endpoints()->set_address("10.0.0.2");
  auto d = endpointsDelta(parse(kBase), next);
  ASSERT_TRUE(d.has_value()) << "expected an endpoints delta";
  ASSERT_EQ(d->size(), 1u);
  EXPECT_EQ((*d)[0].cluster(), "static_b");
  EXPECT_EQ((*d)[0].endpoints_size(), 2);

  v1::ServerMessage m = makeUpdate(nullptr, next, "h", 1);
  EXPECT_TRUE(m.has_config()) << "the first message must be a whole config";
  v1::ProxyConfig base = parse(kBase);
  m = makeUpdate(&base, next, "h2", 7);
  ASSERT_TRUE(m.has_endpoints()) << m.DebugString();
  EXPECT_EQ(m.endpoints().version(), 7u);
  EXPECT_EQ(m.endpoints().hash(), "h2");
  ASSERT_TRUE(meshconfig::applyEndpoints(base, m.endpoints()));
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(base, next))
      << "applying the delta should give the new config; got\n"
      << base.DebugString();
}

TEST(ConfigDeltaTest, EndpointsEmptiedIsADelta) {
  v1::ProxyConfig next = parse(kBase);
  next.mutable_clusters(0)->clear_endpoints();
  auto d = endpointsDelta(parse(kBase), next);
  ASSERT_TRUE(d.has_value());
  ASSERT_EQ(d->size(), 1u);
  EXPECT_EQ((*d)[0].endpoints_size(), 0);
}

TEST(ConfigDeltaTest, AnythingElseIsAWholeConfig) {
  v1::ProxyConfig base = parse(kBase);
  std::vector<std::pair<std::string, v1::ProxyConfig>> cases;
  v1::ProxyConfig c = base;
  c.mutable_clusters(1)->mutable_endpoints(0)->set_port(81);  // a DNS cluster's endpoint
  cases.push_back({"DNS endpoints", c});
  c = base;
  c.mutable_listeners(0)->set_port(15002);
  cases.push_back({"listener", c});
  c = base;
  c.add_clusters()->set_name("new");
  cases.push_back({"cluster added", c});
  c = base;
  c.mutable_clusters(0)->set_name("renamed");
  cases.push_back({"cluster renamed", c});
  c = base;
  c.mutable_clusters(0)->add_endpoints()->set_address("10.0.0.9");
  c.mutable_clusters(0)->set_type(v1::Cluster::DNS);
  cases.push_back({"type changed with endpoints", c});
  for (const auto& [what, next] : cases) {
    EXPECT_FALSE(endpointsDelta(base, next).has_value()) << what << ": expected no delta";
    EXPECT_TRUE(makeUpdate(&base, next, "h", 2).has_config()) << what;
  }
}

TEST(ConfigDeltaTest, ApplyRefusesUnknownOrNonStaticClusters) {
  v1::ProxyConfig base = parse(kBase);
  v1::EndpointsUpdate u;
  u.add_clusters()->set_cluster("nope");
  EXPECT_FALSE(meshconfig::applyEndpoints(base, u));
  u.mutable_clusters(0)->set_cluster("dns_c");
  EXPECT_FALSE(meshconfig::applyEndpoints(base, u));
}

}  // namespace
}  // namespace weft::control::push
