// Each HTTP/2 flood, sent as a hand-built frame sequence to a server codec: detected, counted,
// and answered with GOAWAY.

#include <gtest/gtest.h>

#include <string>

#include "common/stats.h"
#include "http/http2/codec.h"
#include "http/http2/test_peer.h"

namespace weft::http2 {
namespace {

using namespace testing;  // NOLINT: frame builders

class FloodTest : public ::testing::Test {
 protected:
  std::unique_ptr<Peer> server(Options o = {}) {
    return std::make_unique<Peer>(Mode::kServer, o, makeStats(registry, "weft_listener_http2", {}));
  }
  uint64_t count(std::string_view name) {
    return registry.counter("weft_listener_http2_" + std::string(name) + "_total")->value();
  }
  // Every counter except `name` must be zero.
  void expectOnly(std::string_view name) {
    for (const char* c : {"rapid_reset", "ping_flood", "settings_flood", "continuation_flood",
                          "empty_frame_flood"}) {
      if (c == name) continue;
      EXPECT_EQ(count(c), 0u) << "counter " << c << " should not have moved";
    }
  }
  stats::Registry registry{1};
};

// Feeds `in` in 1 KiB pieces (as a socket would) and returns the first error.
Status feedInPieces(Codec& codec, std::string_view in) {
  while (!in.empty()) {
    size_t n = std::min<size_t>(1024, in.size());
    Status s = codec.feed(in.substr(0, n));
    if (!s) return s;
    in.remove_prefix(n);
  }
  return {};
}

TEST_F(FloodTest, RapidResetEndsTheConnection) {
  Options o;
  o.reset_burst = 20;
  o.reset_rate_per_second = 5;
  auto p = server(o);
  std::string in = clientStart();
  for (uint32_t id = 1; id < 2 * 100; id += 2) {
    in += frame(kHeaders, kEndHeaders | kEndStream, id, hpackGet());
    in += frame(kRstStream, 0, id, be32(kCancel));
  }
  Status s = feedInPieces(*p->codec, in);
  ASSERT_FALSE(s) << "100 HEADERS+RST_STREAM pairs at once should exceed a burst of 20";
  EXPECT_EQ(s.error().code, static_cast<int>(ErrorCode::kFlood)) << s.error().message;
  EXPECT_EQ(count("rapid_reset"), 1u);
  expectOnly("rapid_reset");
  EXPECT_EQ(lastGoawayCode(p->out.view()), kEnhanceYourCalm);
  EXPECT_TRUE(p->codec->done());
}

TEST_F(FloodTest, ResetsAtTheRefillRateAreFine) {
  Options o;
  o.reset_burst = 20;
  o.reset_rate_per_second = 5;
  auto p = server(o);
  ASSERT_TRUE(p->codec->feed(clientStart()));
  for (uint32_t id = 1; id < 2 * 100; id += 2) {
    std::string in = frame(kHeaders, kEndHeaders | kEndStream, id, hpackGet());
    in += frame(kRstStream, 0, id, be32(kCancel));
    Status s = p->codec->feed(in);
    ASSERT_TRUE(s) << "reset " << id << " at 5/s should pass: " << s.error().message;
    p->time.advance(std::chrono::milliseconds(250));
    p->out.clear();
    p->codec->flush();
  }
  EXPECT_EQ(count("rapid_reset"), 0u);
}

TEST_F(FloodTest, PingFloodWithoutReadingIsDetected) {
  Options o;
  o.output_high_watermark = 1024;  // the peer never reads: the output stays full
  o.max_outbound_ack = 100;
  auto p = server(o);
  std::string in = clientStart();
  for (int i = 0; i < 1000; ++i) in += frame(kPing, 0, 0, "12345678");
  Status s = feedInPieces(*p->codec, in);
  ASSERT_FALSE(s) << "1000 PINGs with unread ACKs should exceed max_outbound_ack 100";
  EXPECT_EQ(s.error().code, static_cast<int>(ErrorCode::kFlood)) << s.error().message;
  EXPECT_EQ(count("ping_flood"), 1u);
  expectOnly("ping_flood");
  EXPECT_EQ(lastGoawayCode(p->out.view()), kEnhanceYourCalm);
  EXPECT_LT(p->out.size(), 1024u + 200u) << "output must stay bounded during the flood";
}

TEST_F(FloodTest, PingsThatAreReadAreFine) {
  Options o;
  o.max_outbound_ack = 100;
  auto p = server(o);
  ASSERT_TRUE(p->codec->feed(clientStart()));
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(p->codec->feed(frame(kPing, 0, 0, "12345678"))) << "ping " << i;
    p->out.clear();
  }
  EXPECT_EQ(count("ping_flood"), 0u);
}

TEST_F(FloodTest, SettingsFloodWithoutReadingIsDetected) {
  Options o;
  o.output_high_watermark = 1024;
  o.max_outbound_ack = 100;
  auto p = server(o);
  std::string in = clientStart();
  std::string entry = std::string("\x00\x03", 2) + be32(100);  // MAX_CONCURRENT_STREAMS
  for (int i = 0; i < 1000; ++i) in += frame(kSettings, 0, 0, entry);
  Status s = feedInPieces(*p->codec, in);
  ASSERT_FALSE(s) << "1000 SETTINGS with unread ACKs should exceed max_outbound_ack 100";
  EXPECT_EQ(s.error().code, static_cast<int>(ErrorCode::kFlood)) << s.error().message;
  EXPECT_EQ(count("settings_flood"), 1u);
  expectOnly("settings_flood");
  EXPECT_EQ(lastGoawayCode(p->out.view()), kEnhanceYourCalm);
}

TEST_F(FloodTest, SettingsWithTooManyEntriesIsAFlood) {
  auto p = server();
  std::string entries;
  for (int i = 0; i < 40; ++i) entries += std::string("\x00\x03", 2) + be32(100);
  std::string in = clientStart() + frame(kSettings, 0, 0, entries);
  Status s = p->codec->feed(in);
  ASSERT_FALSE(s) << "40 entries exceed max_settings_entries 32";
  EXPECT_EQ(s.error().code, static_cast<int>(ErrorCode::kFlood)) << s.error().message;
  EXPECT_EQ(count("settings_flood"), 1u);
  EXPECT_EQ(lastGoawayCode(p->out.view()), kEnhanceYourCalm);
}

TEST_F(FloodTest, EndlessContinuationIsDetected) {
  auto p = server();
  std::string in = clientStart();
  in += frame(kHeaders, 0, 1, hpackGet());  // no END_HEADERS
  for (int i = 0; i < 100; ++i) in += frame(kContinuation, 0, 1, hpackLiteral("x-a", "b"));
  Status s = feedInPieces(*p->codec, in);
  ASSERT_FALSE(s) << "100 CONTINUATION frames exceed max_continuations 8";
  EXPECT_EQ(s.error().code, static_cast<int>(ErrorCode::kFlood)) << s.error().message;
  EXPECT_EQ(count("continuation_flood"), 1u);
  expectOnly("continuation_flood");
  EXPECT_EQ(lastGoawayCode(p->out.view()), kEnhanceYourCalm);
  EXPECT_FALSE(p->rec.streams[1].kinds.size()) << "the endless block never reaches the caller";
}

TEST_F(FloodTest, EmptyDataFloodIsDetected) {
  auto p = server();
  std::string in = clientStart();
  in += frame(kHeaders, kEndHeaders, 1,
              std::string("\x83", 1) + std::string("\x86\x84") +
                  std::string("\x01\x03"
                              "a.b",
                              5));  // POST
  for (int i = 0; i < 100; ++i) in += frame(kData, 0, 1, "");
  Status s = feedInPieces(*p->codec, in);
  ASSERT_FALSE(s) << "100 empty DATA frames exceed max_consecutive_empty_data 10";
  EXPECT_EQ(s.error().code, static_cast<int>(ErrorCode::kFlood)) << s.error().message;
  EXPECT_EQ(count("empty_frame_flood"), 1u);
  expectOnly("empty_frame_flood");
  EXPECT_EQ(lastGoawayCode(p->out.view()), kEnhanceYourCalm);
}

TEST_F(FloodTest, InvalidFrameIsAProtocolError) {
  auto p = server();
  std::string in = clientStart() + frame(kWindowUpdate, 0, 0, be32(0));  // increment 0
  Status s = p->codec->feed(in);
  ASSERT_FALSE(s) << "WINDOW_UPDATE with increment 0 on the connection is PROTOCOL_ERROR";
  EXPECT_EQ(s.error().code, static_cast<int>(ErrorCode::kProtocol)) << s.error().message;
  EXPECT_GE(count("invalid_frame"), 1u);
  EXPECT_EQ(count("protocol_error"), 1u);
  EXPECT_EQ(lastGoawayCode(p->out.view()), kProtocolError);
}

TEST_F(FloodTest, InvalidRequestHeadersResetOnlyTheStream) {
  auto p = server();
  // Uppercase field name: malformed request (RFC 9113 §8.2.1), a stream error.
  std::string in = clientStart();
  in += frame(kHeaders, kEndHeaders | kEndStream, 1, hpackGet() + hpackLiteral("X-Up", "1"));
  in += frame(kHeaders, kEndHeaders | kEndStream, 3, hpackGet());
  ASSERT_TRUE(p->codec->feed(in));
  EXPECT_TRUE(p->rec.streams[1].kinds.empty());
  EXPECT_TRUE(p->rec.streams[1].closed);
  EXPECT_EQ(p->rec.streams[3].kinds.size(), 1u) << "the next stream is served";
  bool rst = false;
  for (auto& f : parseFrames(p->out.view()))
    if (f.type == kRstStream && f.stream == 1) rst = true;
  EXPECT_TRUE(rst) << "expected RST_STREAM on stream 1";
}

}  // namespace
}  // namespace weft::http2
