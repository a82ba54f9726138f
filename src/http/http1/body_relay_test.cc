#include "http/http1/body_relay.h"

#include <gtest/gtest.h>

#include <string>

namespace weft::http1 {
namespace {

std::string drain(Buffer& b) {
  std::string s(b.view());
  b.clear();
  return s;
}

TEST(BodyRelay, LengthBodyIsCopiedAndLeavesTheNextMessage) {
  BodyRelay r;
  r.start(BodyKind::kContentLength, 5, true);
  Buffer in, out;
  in.append("hel");
  EXPECT_FALSE(r.relay(in, out).failed());
  EXPECT_FALSE(r.finished());
  EXPECT_EQ(r.remaining(), 2u);
  in.append("loGET / HTTP/1.1\r\n");
  r.relay(in, out);
  EXPECT_TRUE(r.finished());
  EXPECT_EQ(drain(out), "hello");
  EXPECT_EQ(std::string(in.view()), "GET / HTTP/1.1\r\n") << "bytes after the body must stay";
  EXPECT_EQ(r.bytes(), 5u);
}

TEST(BodyRelay, NoBodyAndZeroLengthAreFinishedAtOnce) {
  BodyRelay r;
  r.start(BodyKind::kNone, 0, true);
  EXPECT_TRUE(r.finished());
  r.start(BodyKind::kContentLength, 0, true);
  EXPECT_TRUE(r.finished());
}

TEST(BodyRelay, ChunkedIsReencodedWhateverTheSplit) {
  const std::string wire = "3;ext=1\r\nabc\r\n4\r\ndefg\r\n0\r\nx-t: 1\r\n\r\nNEXT";
  for (size_t cut = 0; cut <= wire.size(); ++cut) {
    BodyRelay r;
    r.start(BodyKind::kChunked, 0, /*chunk_output=*/true);
    Buffer in, out;
    in.append(wire.substr(0, cut));
    ASSERT_FALSE(r.relay(in, out).failed()) << "cut at " << cut;
    in.append(wire.substr(cut));
    ASSERT_FALSE(r.relay(in, out).failed()) << "cut at " << cut;
    ASSERT_TRUE(r.finished()) << "cut at " << cut;
    // Data re-chunked (extensions dropped, chunk boundaries may differ), trailers kept.
    BodyRelay check;
    check.start(BodyKind::kChunked, 0, /*chunk_output=*/false);
    Buffer plain;
    Buffer reencoded;
    reencoded.append(out.view());
    ASSERT_FALSE(check.relay(reencoded, plain).failed()) << out.view();
    EXPECT_EQ(std::string(plain.view()), "abcdefg") << "cut at " << cut;
    EXPECT_NE(std::string(out.view()).find("x-t: 1\r\n"), std::string::npos) << out.view();
    EXPECT_EQ(std::string(in.view()), "NEXT");
    EXPECT_EQ(r.bytes(), 7u);
  }
}

TEST(BodyRelay, ChunkedToAnHttp10ReceiverIsBareData) {
  BodyRelay r;
  r.start(BodyKind::kChunked, 0, /*chunk_output=*/false);
  Buffer in, out;
  in.append("5\r\nhello\r\n0\r\n\r\n");
  r.relay(in, out);
  EXPECT_TRUE(r.finished());
  EXPECT_EQ(drain(out), "hello");
}

TEST(BodyRelay, BrokenChunkSizeFails) {
  BodyRelay r;
  r.start(BodyKind::kChunked, 0, true);
  Buffer in, out;
  in.append("zz\r\nhello\r\n");
  BodyRelay::Step s = r.relay(in, out);
  EXPECT_TRUE(s.failed());
  EXPECT_NE(s.error.status, 0);
  EXPECT_FALSE(r.finished());
}

TEST(BodyRelay, UntilCloseIsChunkedAndEndsAtClose) {
  BodyRelay r;
  r.start(BodyKind::kUntilClose, 0, /*chunk_output=*/true);
  Buffer in, out;
  in.append("abc");
  r.relay(in, out);
  in.append("de");
  r.relay(in, out);
  EXPECT_FALSE(r.finished());
  r.endAtClose(out);
  EXPECT_TRUE(r.finished());
  EXPECT_EQ(drain(out), "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
  EXPECT_EQ(r.bytes(), 5u);
}

}  // namespace
}  // namespace weft::http1
