#include "control/registry/dns_message.h"

#include <gtest/gtest.h>

#include "control/registry/dns_test_support.h"

namespace weft::control::registry::dns {
namespace {

using testing::query;
using testing::u16;
using testing::wireName;

std::string header(uint16_t qd, uint16_t an = 0) {
  return u16(7) + u16(0) + u16(qd) + u16(an) + u16(0) + u16(0);
}

TEST(DnsMessage, ParsesAQueryAndLowerCasesTheName) {
  auto m = parseMessage(query("Web.Mesh.LOCAL", kTypeA));
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->id, 0x4242);
  ASSERT_EQ(m->questions.size(), 1u);
  EXPECT_EQ(m->questions[0].name, "web.mesh.local");
  EXPECT_EQ(m->questions[0].type, kTypeA);
  EXPECT_EQ(m->opt(), nullptr);
}

TEST(DnsMessage, ReadsEdnsOpt) {
  auto m = parseMessage(query("a.b", kTypeSrv, 4096));
  ASSERT_TRUE(m) << m.error().message;
  ASSERT_NE(m->opt(), nullptr);
  EXPECT_EQ(m->opt()->klass, 4096);
}

TEST(DnsMessage, FollowsBackwardCompressionPointers) {
  std::string m = header(2) + wireName("web.mesh.local") + u16(kTypeA) + u16(1);
  // second question: "x" + pointer to "mesh.local" (offset 12 + 4 = 16)
  m += std::string("\x01x\xc0\x10", 4) + u16(kTypeA) + u16(1);
  auto parsed = parseMessage(m);
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->questions[1].name, "x.mesh.local");
}

TEST(DnsMessage, RejectsPointerLoopsAndForwardPointers) {
  std::string self = header(1) + std::string("\xc0\x0c", 2) + u16(1) + u16(1);
  auto a = parseMessage(self);
  ASSERT_FALSE(a);
  EXPECT_NE(a.error().message.find("backwards"), std::string::npos) << a.error().message;
  // Two pointers pointing at each other: 12 -> 14 is forward, so refused.
  std::string pair = header(1) + std::string("\xc0\x0e\xc0\x0c", 4) + u16(1) + u16(1);
  EXPECT_FALSE(parseMessage(pair));
}

TEST(DnsMessage, RejectsLongLabelsLongNamesAndReservedLabelTypes) {
  std::string l64 = header(1) + std::string(1, 64) + std::string(64, 'a') + std::string(1, '\0') +
                    u16(1) + u16(1);
  auto a = parseMessage(l64);
  ASSERT_FALSE(a);  // 64 = 0x40 is the reserved 01 label type
  std::string l63 = header(1) + std::string(1, 63) + std::string(63, 'a') + std::string(1, '\0') +
                    u16(1) + u16(1);
  EXPECT_TRUE(parseMessage(l63));
  std::string long_name = header(1);
  for (int i = 0; i < 5; ++i) long_name += std::string(1, 60) + std::string(60, 'b');
  long_name += std::string(1, '\0') + u16(1) + u16(1);
  auto b = parseMessage(long_name);
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().message.find("255"), std::string::npos) << b.error().message;
  std::string reserved = header(1) + std::string("\x80x\0", 3) + u16(1) + u16(1);
  EXPECT_FALSE(parseMessage(reserved));
}

TEST(DnsMessage, RejectsTruncationAndTrailingBytes) {
  std::string q = query("a.b", kTypeA);
  EXPECT_FALSE(parseMessage(q.substr(0, q.size() - 1)));
  EXPECT_FALSE(parseMessage(q + "x"));
  EXPECT_FALSE(parseMessage(q.substr(0, 11)));
}

TEST(DnsMessage, EscapesOddLabelBytes) {
  std::string m = header(1) +
                  std::string(
                      "\x03"
                      "a.b\x01"
                      "c\0",
                      7) +
                  u16(1) + u16(1);
  auto parsed = parseMessage(m);
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->questions[0].name, "a\\046b.c");
  // The writer turns the escape back into the same wire label.
  MessageWriter w(1, 0);
  w.addQuestion(parsed->questions[0].name, 1, 1);
  auto again = parseMessage(w.bytes());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->questions[0].name, "a\\046b.c");
}

TEST(DnsMessage, WriterCompressesRepeatedSuffixesButNotSrvTargets) {
  MessageWriter w(9, kFlagQr);
  w.addQuestion("web.mesh.local", kTypeSrv, kClassIn);
  w.beginRecord(MessageWriter::Section::kAnswer, "web.mesh.local", kTypeSrv, kClassIn, 60);
  w.rdataU16(1);
  w.rdataU16(10);
  w.rdataU16(8080);
  w.rdataName("i-1.web.mesh.local", false);
  w.endRecord();
  w.beginRecord(MessageWriter::Section::kAdditional, "i-1.web.mesh.local", kTypeA, kClassIn, 60);
  w.rdataBytes(std::string("\x0a\x00\x00\x01", 4));
  w.endRecord();
  const std::string& bytes = w.bytes();
  auto m = parseMessage(bytes);
  ASSERT_TRUE(m) << m.error().message;
  ASSERT_EQ(m->answers.size(), 1u);
  ASSERT_EQ(m->additional.size(), 1u);
  EXPECT_EQ(m->answers[0].name, "web.mesh.local");
  // The answer owner is a 2-byte pointer to the question name.
  size_t qend = kHeaderSize + wireName("web.mesh.local").size() + 4;
  EXPECT_EQ(static_cast<uint8_t>(bytes[qend]), 0xC0);
  // The SRV target is written in full (6 bytes of fixed fields, then the uncompressed name).
  EXPECT_EQ(m->answers[0].rdata.substr(6), wireName("i-1.web.mesh.local"));
  EXPECT_EQ(m->additional[0].name, "i-1.web.mesh.local");
}

}  // namespace
}  // namespace weft::control::registry::dns
