#include "control/model/resource_keys.h"

#include <gtest/gtest.h>

namespace weft::control::appmesh {
namespace {

TEST(ResourceKeysTest, KeysRoundTrip) {
  for (const ResourceId& id :
       {ResourceId{Kind::kMesh, "m", "", "m"}, ResourceId{Kind::kVirtualNode, "m", "", "n"},
        ResourceId{Kind::kVirtualService, "m", "", "svc.ns.local"},
        ResourceId{Kind::kRoute, "m", "r", "x"}, ResourceId{Kind::kGatewayRoute, "m", "g", "y"},
        ResourceId{Kind::kVirtualNode, "a/b%c", "", "n/1"}}) {
    auto back = parseResourceKey(resourceKey(id));
    ASSERT_TRUE(back.has_value()) << resourceKey(id);
    EXPECT_EQ(*back, id) << resourceKey(id);
  }
  EXPECT_EQ(resourceKey({Kind::kRoute, "m", "r", "x"}), "appmesh/route/m/r/x");
  EXPECT_EQ(resourceKey({Kind::kVirtualNode, "a/b", "", "n%"}), "appmesh/virtualNode/a%2Fb/n%25");
  EXPECT_FALSE(parseResourceKey("appmesh/meta/meshes").has_value());
  EXPECT_FALSE(parseResourceKey("appmesh/route/m/x").has_value());
}

TEST(ResourceKeysTest, CollectionPrefixesDoNotOverlap) {
  EXPECT_EQ(collectionPrefix(Kind::kMesh), "appmesh/mesh/");
  EXPECT_EQ(collectionPrefix(Kind::kVirtualNode, "m"), "appmesh/virtualNode/m/");
  EXPECT_EQ(collectionPrefix(Kind::kRoute, "m", "r"), "appmesh/route/m/r/");
  // "m" is not a prefix of "m2"'s collection.
  EXPECT_NE(resourceKey({Kind::kVirtualNode, "m2", "", "n"})
                .rfind(collectionPrefix(Kind::kVirtualNode, "m"), 0),
            0u);
}

TEST(ResourceKeysTest, ArnsRoundTrip) {
  for (const ResourceId& id :
       {ResourceId{Kind::kMesh, "m", "", "m"}, ResourceId{Kind::kVirtualNode, "m", "", "n"},
        ResourceId{Kind::kVirtualService, "m", "", "s.local"},
        ResourceId{Kind::kVirtualRouter, "m", "", "r"},
        ResourceId{Kind::kVirtualGateway, "m", "", "g"}, ResourceId{Kind::kRoute, "m", "r", "x"},
        ResourceId{Kind::kGatewayRoute, "m", "g", "y"}}) {
    std::string arn = resourceArn(id, "us-west-2", "123456789012");
    auto back = parseResourceArn(arn, "us-west-2", "123456789012");
    ASSERT_TRUE(back.has_value()) << arn;
    EXPECT_EQ(*back, id) << arn;
    EXPECT_FALSE(parseResourceArn(arn, "us-east-1", "123456789012").has_value()) << arn;
  }
  EXPECT_EQ(resourceArn({Kind::kGatewayRoute, "m", "g", "y"}, "us-west-2", "1"),
            "arn:aws:appmesh:us-west-2:1:mesh/m/virtualGateway/g/gatewayRoute/y");
  EXPECT_FALSE(parseResourceArn("arn:aws:appmesh:us-west-2:1:mesh/m/route/x", "us-west-2", "1"));
  EXPECT_FALSE(
      parseResourceArn("arn:aws:appmesh:us-west-2:1:mesh/m/virtualNode/", "us-west-2", "1"));
  EXPECT_FALSE(parseResourceArn("arn:aws:appmesh:us-west-2:1:mesh/m/virtualRouter/r/gatewayRoute/x",
                                "us-west-2", "1"));
}

}  // namespace
}  // namespace weft::control::appmesh
