#include "upstream/host_set.h"

#include <gtest/gtest.h>

namespace weft::upstream {
namespace {

net::Address addr(const std::string& ip, uint16_t port) {
  auto a = net::parseAddress(ip, port);
  EXPECT_TRUE(a.has_value()) << ip;
  return *a;
}

TEST(AddressCompareTest, EqualityIgnoresPaddingAndComparesPort) {
  net::Address a = addr("10.0.0.1", 80);
  net::Address b = addr("10.0.0.1", 80);
  // Garbage past the meaningful bytes must not matter.
  reinterpret_cast<unsigned char*>(&b.storage)[sizeof(b.storage) - 1] = 0xff;
  EXPECT_TRUE(addressEqual(a, b));
  EXPECT_EQ(AddressHash{}(a), AddressHash{}(b));
  EXPECT_FALSE(addressEqual(a, addr("10.0.0.1", 81)));
  EXPECT_FALSE(addressEqual(a, addr("10.0.0.2", 80)));
  EXPECT_FALSE(addressEqual(addr("::1", 80), addr("::2", 80)));
  EXPECT_TRUE(addressEqual(addr("::1", 80), addr("0::1", 80)));
}

TEST(AddressCompareTest, OrderIsV4ThenV6ThenIpThenPort) {
  EXPECT_TRUE(addressLess(addr("10.0.0.9", 80), addr("::1", 1)));
  EXPECT_FALSE(addressLess(addr("::1", 1), addr("10.0.0.9", 80)));
  EXPECT_TRUE(addressLess(addr("10.0.0.1", 90), addr("10.0.0.2", 80)));
  EXPECT_TRUE(addressLess(addr("10.0.0.1", 80), addr("10.0.0.1", 90)));
  EXPECT_FALSE(addressLess(addr("10.0.0.1", 80), addr("10.0.0.1", 80)));
}

TEST(HostSetTest, HostFormatsAddressOnce) {
  Host h(addr("::1", 8080), "svc.local");
  EXPECT_EQ(h.addressString(), "[::1]:8080");
  EXPECT_EQ(h.hostname(), "svc.local");
  EXPECT_TRUE(h.healthy()) << "hosts are healthy until a health checker says otherwise";
}

TEST(HostSetTest, IndexOfAndFind) {
  HostSet set({Host(addr("10.0.0.1", 80)), Host(addr("10.0.0.2", 80))});
  HostSet other({Host(addr("10.0.0.1", 80))});
  EXPECT_EQ(set.indexOf(set[1]), 1u);
  EXPECT_EQ(set.indexOf(other[0]), HostSet::kNpos) << "a host of another set is not a member";
  EXPECT_EQ(set.find(addr("10.0.0.2", 80)), 1u);
  EXPECT_EQ(set.find(addr("10.0.0.2", 81)), HostSet::kNpos);
}

}  // namespace
}  // namespace weft::upstream
