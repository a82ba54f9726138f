#include "net/socket.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

namespace weft::net {
namespace {

Address addr(const char* ip, uint16_t port = 80) {
  auto a = parseAddress(ip, port);
  EXPECT_TRUE(a.has_value()) << ip;
  return *a;
}

TEST(Cidr, ContainsByPrefix) {
  auto c = parseCidr("10.1.0.0/16");
  ASSERT_TRUE(c.has_value());
  EXPECT_TRUE(c->contains(addr("10.1.200.3")));
  EXPECT_FALSE(c->contains(addr("10.2.0.1")));
  EXPECT_FALSE(c->contains(addr("::ffff:10.1.0.1"))) << "families never mix";

  auto odd = parseCidr("198.18.0.0/15");  // prefix not on a byte boundary
  ASSERT_TRUE(odd.has_value());
  EXPECT_TRUE(odd->contains(addr("198.19.255.255")));
  EXPECT_FALSE(odd->contains(addr("198.20.0.0")));

  auto v6 = parseCidr("fd00::/8");
  ASSERT_TRUE(v6.has_value());
  EXPECT_TRUE(v6->contains(addr("fd12::1")));
  EXPECT_FALSE(v6->contains(addr("fe80::1")));

  auto host = parseCidr("127.0.0.1");
  ASSERT_TRUE(host.has_value());
  EXPECT_EQ(host->prefix_len, 32);
  EXPECT_TRUE(host->contains(addr("127.0.0.1", 9)));
  EXPECT_FALSE(host->contains(addr("127.0.0.2")));

  auto all = parseCidr("0.0.0.0/0");
  ASSERT_TRUE(all.has_value());
  EXPECT_TRUE(all->contains(addr("203.0.113.9")));
}

TEST(Cidr, RejectsMalformedText) {
  for (const char* bad : {"", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0/8", "x/8",
                          "10.0.0.0/-1", "10.0.0.0/8/8", "10.0.0.0/1234"}) {
    EXPECT_FALSE(parseCidr(bad).has_value()) << bad;
  }
}

TEST(OriginalDestination, FailsClearlyOnASocketThatWasNotRedirected) {
  // A plain TCP listener's accepted socket has no NAT entry; without conntrack the kernel answers
  // an error, with it the local address. Either way the caller can tell it was not redirected.
  auto l = listenTcp(addr("127.0.0.1", 0));
  ASSERT_TRUE(l.has_value());
  Address bound = localAddress(*l);
  auto c = connectTcp(bound);
  ASSERT_TRUE(c.has_value());
  pollfd p{*l, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10'000), 1) << "the loopback connect never arrived";
  int fd = ::accept(*l, nullptr, nullptr);
  ASSERT_GE(fd, 0);
  auto dst = originalDestination(fd);
  if (dst.has_value()) {
    EXPECT_EQ(dst->toString(), localAddress(fd).toString());
  } else {
    EXPECT_NE(dst.error().message.find("redirected"), std::string::npos) << dst.error().message;
  }
  ::close(fd);
  ::close(*c);
  ::close(*l);
}

}  // namespace
}  // namespace weft::net
