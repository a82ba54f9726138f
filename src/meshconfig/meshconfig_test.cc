#include "meshconfig/meshconfig.h"

#include <gtest/gtest.h>

namespace weft::meshconfig {
namespace {

TEST(ProxyResourceTest, ParsesEveryAcceptedForm) {
  auto n = parseProxyResource("mesh/shop/virtualNode/cart");
  ASSERT_TRUE(n) << n.error().message;
  EXPECT_EQ(*n, (ProxyResource{"shop", "cart", false}));
  EXPECT_EQ(n->normalized(), "mesh/shop/virtualNode/cart");
  auto g = parseProxyResource("arn:aws:appmesh:eu-west-1:111122223333:mesh/shop/virtualGateway/gw");
  ASSERT_TRUE(g) << g.error().message;
  EXPECT_EQ(*g, (ProxyResource{"shop", "gw", true}));
  EXPECT_EQ(g->normalized(), "mesh/shop/virtualGateway/gw");
  EXPECT_TRUE(parseProxyResource("arn:aws-cn:appmesh:cn-north-1:1:mesh/m/virtualNode/n"));
}

TEST(ProxyResourceTest, RefusesWithTheReasonAndTheAcceptedForms) {
  const std::pair<const char*, const char*> cases[] = {
      {"mesh/shop/virtualRouter/r", "names a \"virtualRouter\", not a virtualNode or"},
      {"mesh/shop/virtualNode/", "a name is empty or too long"},
      {"mesh/shop/virtualNode/a/b", "the wrong shape"},
      {"shop/cart", "the wrong shape"},
      {"arn:aws:s3:::bucket/x", "not an App Mesh ARN (service \"s3\")"},
      {"arn:aws:appmesh:r", "not a complete ARN"},
  };
  for (const auto& [text, why] : cases) {
    auto r = parseProxyResource(text);
    ASSERT_FALSE(r) << text << " must be refused";
    EXPECT_NE(r.error().message.find(why), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("expected mesh/MESH/virtualNode/NAME"), std::string::npos)
        << r.error().message;
  }
  EXPECT_FALSE(parseProxyResource("mesh/" + std::string(256, 'm') + "/virtualNode/n"));
}

TEST(ConfigHashTest, SameConfigSameHashAnyChangeAnother) {
  v1::ProxyConfig a;
  a.set_node("mesh/m/virtualNode/a");
  v1::ProxyConfig b = a;
  EXPECT_EQ(configHash(a), configHash(b));
  EXPECT_EQ(configHash(a).size(), 64u);
  EXPECT_EQ(configHash(v1::ProxyConfig()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
      << "the empty config serializes to no bytes: sha256 of nothing";
  b.set_node("mesh/m/virtualNode/b");
  EXPECT_NE(configHash(a), configHash(b));
}

}  // namespace
}  // namespace weft::meshconfig
