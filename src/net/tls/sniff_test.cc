#include "net/tls/sniff.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "net/tls/tls_test_util.h"

namespace weft::net::tls {
namespace {

std::string bytes(std::initializer_list<unsigned char> b) {
  return std::string(b.begin(), b.end());
}

TEST(Sniff, ClientHelloRecordHeaders) {
  // TLS 1.0 record version (what OpenSSL, curl and browsers send), TLS 1.2, and SSL 3.0.
  EXPECT_EQ(sniffClientHello(bytes({0x16, 0x03, 0x01, 0x02, 0x00, 0x01})), Sniff::kTls);
  EXPECT_EQ(sniffClientHello(bytes({0x16, 0x03, 0x03})), Sniff::kTls);
  EXPECT_EQ(sniffClientHello(bytes({0x16, 0x03, 0x00})), Sniff::kTls);
  EXPECT_TRUE(looksLikeTlsClientHello(bytes({0x16, 0x03, 0x01})));
}

TEST(Sniff, PlaintextIsRecognisedFromTheFirstByte) {
  EXPECT_EQ(sniffClientHello("GET / HTTP/1.1\r\n"), Sniff::kPlain);
  EXPECT_EQ(sniffClientHello("P"), Sniff::kPlain);
  EXPECT_EQ(sniffClientHello("PRI * HTTP/2.0\r\n"), Sniff::kPlain);
  EXPECT_EQ(sniffClientHello(bytes({0x16, 0x02, 0x01})), Sniff::kPlain);
  EXPECT_EQ(sniffClientHello(bytes({0x16, 0x03, 0x05})), Sniff::kPlain);
  EXPECT_EQ(sniffClientHello(bytes({0x17, 0x03, 0x03})), Sniff::kPlain)
      << "application data is not a connection start";
  EXPECT_FALSE(looksLikeTlsClientHello("GET / HTTP/1.1"));
}

TEST(Sniff, ShortPrefixesConsistentWithTlsNeedMore) {
  EXPECT_EQ(sniffClientHello(""), Sniff::kNeedMore);
  EXPECT_EQ(sniffClientHello(bytes({0x16})), Sniff::kNeedMore);
  EXPECT_EQ(sniffClientHello(bytes({0x16, 0x03})), Sniff::kNeedMore);
  EXPECT_FALSE(looksLikeTlsClientHello(bytes({0x16, 0x03})))
      << "fewer than kMinSniffBytes bytes never count as TLS";
}

TEST(Sniff, PeekDoesNotConsume) {
  testing::FdPair p = testing::socketPair();
  EXPECT_EQ(peekClientHello(p.b), Sniff::kNeedMore) << "nothing sent yet";
  ASSERT_EQ(::send(p.a, "\x16\x03", 2, 0), 2);
  EXPECT_EQ(peekClientHello(p.b), Sniff::kNeedMore);
  ASSERT_EQ(::send(p.a, "\x01\x00", 2, 0), 2);
  EXPECT_EQ(peekClientHello(p.b), Sniff::kTls);
  char buf[8];
  ASSERT_EQ(::recv(p.b, buf, sizeof(buf), 0), 4) << "peek must leave all bytes in the socket";
  EXPECT_EQ(std::string(buf, 4), std::string("\x16\x03\x01\x00", 4));

  ASSERT_EQ(::send(p.a, "GET", 3, 0), 3);
  EXPECT_EQ(peekClientHello(p.b), Sniff::kPlain);
  ASSERT_EQ(::recv(p.b, buf, sizeof(buf), 0), 3);
  ::shutdown(p.a, SHUT_WR);
  EXPECT_EQ(peekClientHello(p.b), Sniff::kClosed);
}

}  // namespace
}  // namespace weft::net::tls
