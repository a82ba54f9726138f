// Client codec <-> server codec in memory: requests, bodies, flow control, trailers, resets,
// GOAWAY, stream limits, header limits and garbage input.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "http/http2/codec.h"
#include "http/http2/test_peer.h"

namespace weft::http2 {
namespace {

using http::HeaderField;
using http::HeaderToken;
using testing::Peer;
using testing::pump;

RequestHeaders get(std::string_view path = "/", std::span<const HeaderField> fields = {}) {
  RequestHeaders r;
  r.method = "GET";
  r.scheme = "http";
  r.authority = "svc.local";
  r.path = path;
  r.fields = fields;
  return r;
}

int errorCode(const Error& e) { return e.code; }

class CodecTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(client.codec && server.codec); }
  // Connection set up: prefaces and SETTINGS exchanged.
  void handshake() {
    pump(client, server);
    ASSERT_TRUE(client.errors.empty() && server.errors.empty());
  }
  Peer client{Mode::kClient};
  Peer server{Mode::kServer};
};

TEST(PrefaceTest, MatchesThePrefaceOnly) {
  EXPECT_EQ(matchPreface("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00"), PrefaceMatch::kYes);
  EXPECT_EQ(matchPreface("PRI * HTTP/2.0\r\n"), PrefaceMatch::kPartial);
  EXPECT_EQ(matchPreface(""), PrefaceMatch::kPartial);
  EXPECT_EQ(matchPreface("GET / HTTP/1.1\r\n"), PrefaceMatch::kNo);
  EXPECT_EQ(matchPreface("PRI * HTTP/1.1"), PrefaceMatch::kNo);
}

TEST(CodecCreateTest, RejectsOutOfRangeOptions) {
  Options o;
  o.max_frame_size = 1000;
  testing::Recorder rec;
  Buffer out;
  SimTimeSource t;
  auto c = Codec::create(Mode::kServer, o, rec, out, t);
  ASSERT_FALSE(c) << "expected max_frame_size 1000 to be refused";
  EXPECT_EQ(c.error().code, static_cast<int>(ErrorCode::kInvalidArgument));
}

TEST_F(CodecTest, GetWithResponseBody) {
  HeaderField extra[] = {{"X-Trace", "abc"}, {"user-agent", "t/1"}, {"Connection", "close"}};
  server.rec.on_headers = [&](int32_t id, const HeaderBlock& b) {
    EXPECT_EQ(b.kind, HeadersKind::kRequest);
    EXPECT_TRUE(b.end_stream);
    bool ua = false;
    for (auto& f : b.fields)
      if (f.token == HeaderToken::kUserAgent) ua = true;
    EXPECT_TRUE(ua) << "user-agent should carry its token";
    HeaderField resp[] = {{"content-type", "text/plain"}};
    ASSERT_TRUE(server.codec->submitResponse(id, 200, resp, false));
    ASSERT_TRUE(server.codec->sendData(id, "hello", true));
  };
  auto id = client.codec->submitRequest(get("/a?b=1", extra), true);
  ASSERT_TRUE(id) << id.error().message;
  EXPECT_EQ(*id, 1);
  pump(client, server);

  const auto& req = server.rec.streams[1];
  EXPECT_TRUE(req.begun);
  EXPECT_EQ(req.method, "GET");
  EXPECT_EQ(req.scheme, "http");
  EXPECT_EQ(req.authority, "svc.local");
  EXPECT_EQ(req.path, "/a?b=1");
  EXPECT_EQ(req.field("x-trace"), "abc") << "names are lower-cased on the way out";
  EXPECT_EQ(req.field("connection"), "<absent>") << "connection-specific fields are dropped";
  EXPECT_TRUE(req.ended);
  EXPECT_TRUE(req.closed);
  EXPECT_EQ(req.cause, CloseCause::kComplete);

  const auto& resp = client.rec.streams[1];
  ASSERT_EQ(resp.kinds.size(), 1u);
  EXPECT_EQ(resp.kinds[0], HeadersKind::kResponse);
  EXPECT_EQ(resp.statuses, std::vector<int>{200});
  EXPECT_EQ(resp.field("content-type"), "text/plain");
  EXPECT_EQ(resp.body, "hello");
  EXPECT_TRUE(resp.ended);
  EXPECT_TRUE(resp.closed);
  EXPECT_EQ(resp.cause, CloseCause::kComplete);
  EXPECT_EQ(client.codec->openStreams(), 0u);
  EXPECT_EQ(server.codec->openStreams(), 0u);
  EXPECT_TRUE(client.errors.empty() && server.errors.empty());
}

TEST_F(CodecTest, PostBodiesBothWaysInPieces) {
  std::string request_body(100'000, 'q');
  for (size_t i = 0; i < request_body.size(); ++i)
    request_body[i] = static_cast<char>('a' + i % 26);
  server.rec.on_end = [&](int32_t id) {
    // Echo the request body back in three pieces.
    const std::string& body = server.rec.streams[id].body;
    ASSERT_TRUE(server.codec->submitResponse(id, 201, {}, false));
    ASSERT_TRUE(server.codec->sendData(id, std::string_view(body).substr(0, 10), false));
    ASSERT_TRUE(server.codec->sendData(id, std::string_view(body).substr(10, 50'000), false));
    ASSERT_TRUE(server.codec->sendData(id, std::string_view(body).substr(50'010), true));
  };
  RequestHeaders r = get("/upload");
  r.method = "POST";
  auto id = client.codec->submitRequest(r, false);
  ASSERT_TRUE(id);
  for (size_t off = 0; off < request_body.size(); off += 7000) {
    bool last = off + 7000 >= request_body.size();
    ASSERT_TRUE(
        client.codec->sendData(*id, std::string_view(request_body).substr(off, 7000), last));
  }
  pump(client, server);
  EXPECT_EQ(server.rec.streams[*id].method, "POST");
  EXPECT_EQ(server.rec.streams[*id].body, request_body);
  EXPECT_EQ(client.rec.streams[*id].statuses, std::vector<int>{201});
  EXPECT_EQ(client.rec.streams[*id].body, request_body);
  EXPECT_TRUE(client.rec.streams[*id].closed);
  EXPECT_EQ(client.rec.streams[*id].cause, CloseCause::kComplete);
}

TEST(CodecFlowControlTest, SlowReaderStopsTheSenderUntilConsumed) {
  Options small;
  small.initial_stream_window = 65535;
  small.initial_connection_window = 65535;
  Peer client(Mode::kClient);
  Peer server(Mode::kServer, small);
  server.rec.auto_consume = false;
  const size_t kBody = 1 << 20;
  std::string body(kBody, 'x');
  RequestHeaders r = get("/big");
  r.method = "PUT";
  auto id = client.codec->submitRequest(r, false);
  ASSERT_TRUE(id);
  auto more = client.codec->sendData(*id, body, true);
  ASSERT_TRUE(more);
  EXPECT_FALSE(*more) << "1 MiB buffered reaches the default 1 MiB send watermark";
  pump(client, server);

  // The window is exhausted: the server got 65535 bytes and the client keeps the rest.
  EXPECT_EQ(server.rec.streams[*id].body.size(), 65535u);
  EXPECT_EQ(client.codec->sendBuffered(*id), kBody - 65535);
  // Pumping again moves nothing until the reader consumes.
  pump(client, server);
  EXPECT_EQ(server.rec.streams[*id].body.size(), 65535u);

  size_t rounds = 0;
  while (!server.rec.streams[*id].ended && rounds++ < 1000) {
    size_t before = server.rec.streams[*id].body.size();
    server.rec.consumeAll();
    pump(client, server);
    size_t got = server.rec.streams[*id].body.size() - before;
    EXPECT_LE(got, 65535u) << "sender went past the window in round " << rounds;
    ASSERT_GT(got, 0u) << "consume did not reopen the window in round " << rounds;
  }
  EXPECT_EQ(server.rec.streams[*id].body.size(), kBody);
  EXPECT_TRUE(server.rec.streams[*id].ended);
  EXPECT_GT(rounds, 10u) << "expected many window-sized rounds for 1 MiB over a 64 KiB window";
}

// Several streams with slow readers on one connection: with the connection window credited on
// arrival, each stream still gets its full stream window although nothing was consumed (no
// head-of-line stall), and no stream goes past its own window.
TEST(CodecFlowControlTest, ConnectionWindowOnArrivalAvoidsHeadOfLineStall) {
  for (bool on_arrival : {false, true}) {
    SCOPED_TRACE(on_arrival ? "connection window credited on arrival" : "credited on consume");
    Options o;
    o.initial_stream_window = 65535;
    o.initial_connection_window = 65535;
    o.connection_window_on_arrival = on_arrival;
    Peer client(Mode::kClient, o);
    Peer server(Mode::kServer);
    client.rec.auto_consume = false;
    const std::string body(100'000, 'y');
    server.rec.on_end = [&](int32_t id) {
      ASSERT_TRUE(server.codec->submitResponse(id, 200, {}, false));
      ASSERT_TRUE(server.codec->sendData(id, body, true));
    };
    std::vector<int32_t> ids;
    for (int i = 0; i < 4; ++i) {
      auto id = client.codec->submitRequest(get("/s" + std::to_string(i)), true);
      ASSERT_TRUE(id);
      ids.push_back(*id);
    }
    pump(client, server);
    size_t full = 0;
    for (int32_t id : ids) {
      size_t got = client.rec.streams[id].body.size();
      EXPECT_LE(got, 65535u) << "stream " << id << " went past its window";
      if (got == 65535u) ++full;
    }
    if (on_arrival) {
      EXPECT_EQ(full, ids.size()) << "every stream should get its whole window unconsumed";
    } else {
      EXPECT_EQ(client.rec.unconsumed, 65535u) << "the connection window bounds all streams";
    }
    // Consuming reopens the streams' windows: everything arrives.
    for (int round = 0; round < 100 && client.rec.unconsumed > 0; ++round) {
      client.rec.consumeAll();
      pump(client, server);
    }
    for (int32_t id : ids) {
      EXPECT_EQ(client.rec.streams[id].body.size(), body.size()) << "stream " << id;
      EXPECT_TRUE(client.rec.streams[id].ended) << "stream " << id;
    }
  }
}

TEST(CodecFlowControlTest, SendBufferWatermarkAndWritableCallback) {
  Options o;
  o.stream_send_high_watermark = 100'000;
  Peer client(Mode::kClient, o);
  Options small;
  small.initial_stream_window = 65535;
  small.initial_connection_window = 65535;
  Peer server(Mode::kServer, small);
  server.rec.auto_consume = false;
  RequestHeaders r = get("/big");
  r.method = "POST";
  auto id = client.codec->submitRequest(r, false);
  ASSERT_TRUE(id);
  auto more = client.codec->sendData(*id, std::string(60'000, 'a'), false);
  ASSERT_TRUE(more);
  EXPECT_TRUE(*more);
  // The first 60000 bytes went out at once (the default 65535 window); these stay buffered.
  more = client.codec->sendData(*id, std::string(100'000, 'b'), false);
  ASSERT_TRUE(more);
  EXPECT_FALSE(*more) << "100000 buffered bytes reach the 100000 watermark";
  pump(client, server);
  EXPECT_TRUE(client.rec.writable.empty()) << "still above the low watermark (25000)";
  for (int i = 0; i < 10 && client.rec.writable.empty(); ++i) {
    server.rec.consumeAll();
    pump(client, server);
  }
  ASSERT_EQ(client.rec.writable, std::vector<int32_t>{*id});
  EXPECT_LE(client.codec->sendBuffered(*id), 25'000u);
}

TEST_F(CodecTest, TrailersBothWaysAndInformational) {
  server.rec.on_end = [&](int32_t id) {
    ASSERT_TRUE(server.codec->submitInformational(id, 103, {}));
    HeaderField ct[] = {{"content-type", "application/grpc"}};
    ASSERT_TRUE(server.codec->submitResponse(id, 200, ct, false));
    ASSERT_TRUE(server.codec->sendData(id, "payload", false));
    HeaderField tr[] = {{"grpc-status", "0"}, {"Grpc-Message", "ok"}};
    ASSERT_TRUE(server.codec->submitTrailers(id, tr));
  };
  HeaderField te[] = {{"te", "trailers"}, {"content-type", "application/grpc"}};
  RequestHeaders r = get("/pkg.Svc/Call", te);
  r.method = "POST";
  auto id = client.codec->submitRequest(r, false);
  ASSERT_TRUE(id);
  ASSERT_TRUE(client.codec->sendData(*id, "req", false));
  HeaderField req_tr[] = {{"x-checksum", "42"}};
  ASSERT_TRUE(client.codec->submitTrailers(*id, req_tr));
  pump(client, server);

  const auto& sreq = server.rec.streams[*id];
  EXPECT_EQ(sreq.field("te"), "trailers");
  EXPECT_EQ(sreq.body, "req");
  ASSERT_EQ(sreq.trailers.size(), 1u);
  EXPECT_EQ(sreq.trailers[0].first, "x-checksum");
  EXPECT_EQ(sreq.kinds.back(), HeadersKind::kTrailers);

  const auto& cresp = client.rec.streams[*id];
  ASSERT_EQ(cresp.kinds.size(), 3u);
  EXPECT_EQ(cresp.kinds[0], HeadersKind::kInformational);
  EXPECT_EQ(cresp.kinds[1], HeadersKind::kResponse);
  EXPECT_EQ(cresp.kinds[2], HeadersKind::kTrailers);
  EXPECT_EQ(cresp.statuses, (std::vector<int>{103, 200}));
  EXPECT_EQ(cresp.body, "payload");
  ASSERT_EQ(cresp.trailers.size(), 2u);
  EXPECT_EQ(cresp.trailers[0], (std::pair<std::string, std::string>{"grpc-status", "0"}));
  EXPECT_EQ(cresp.trailers[1], (std::pair<std::string, std::string>{"grpc-message", "ok"}));
  EXPECT_TRUE(cresp.ended);
  EXPECT_EQ(cresp.cause, CloseCause::kComplete);
}

TEST_F(CodecTest, ClientResetReachesServer) {
  RequestHeaders r = get();
  r.method = "POST";
  auto id = client.codec->submitRequest(r, false);
  ASSERT_TRUE(id);
  pump(client, server);
  ASSERT_TRUE(server.rec.streams[*id].begun);
  ASSERT_TRUE(client.codec->resetStream(*id, kCancel));
  pump(client, server);
  EXPECT_TRUE(client.rec.streams[*id].closed);
  EXPECT_EQ(client.rec.streams[*id].cause, CloseCause::kLocalReset);
  EXPECT_TRUE(server.rec.streams[*id].closed);
  EXPECT_EQ(server.rec.streams[*id].cause, CloseCause::kPeerReset);
  EXPECT_EQ(server.rec.streams[*id].error_code, kCancel);
  auto again = client.codec->sendData(*id, "x", true);
  ASSERT_FALSE(again);
  EXPECT_EQ(errorCode(again.error()), static_cast<int>(ErrorCode::kNoStream));
}

TEST_F(CodecTest, ServerResetReachesClient) {
  server.rec.on_headers = [&](int32_t id, const HeaderBlock&) {
    ASSERT_TRUE(server.codec->resetStream(id, kInternalError));
  };
  auto id = client.codec->submitRequest(get(), true);
  ASSERT_TRUE(id);
  pump(client, server);
  EXPECT_EQ(server.rec.streams[*id].cause, CloseCause::kLocalReset);
  EXPECT_TRUE(client.rec.streams[*id].closed);
  EXPECT_EQ(client.rec.streams[*id].cause, CloseCause::kPeerReset);
  EXPECT_EQ(client.rec.streams[*id].error_code, kInternalError);
}

TEST_F(CodecTest, GracefulDrainLetsInFlightStreamsFinish) {
  handshake();
  auto a = client.codec->submitRequest(get("/a"), true);
  auto b = client.codec->submitRequest(get("/b"), true);
  ASSERT_TRUE(a && b);
  pump(client, server);
  ASSERT_TRUE(server.rec.streams[*a].ended && server.rec.streams[*b].ended);

  ASSERT_TRUE(server.codec->drain());
  pump(client, server);
  EXPECT_EQ(client.rec.goaways, 1);
  EXPECT_EQ(client.rec.goaway_last_stream, *b);
  EXPECT_EQ(client.rec.goaway_code, kNoError);
  auto c = client.codec->submitRequest(get("/c"), true);
  ASSERT_FALSE(c) << "a new request after GOAWAY should be refused";
  EXPECT_EQ(c.error().code, static_cast<int>(ErrorCode::kGoingAway));
  EXPECT_TRUE(client.codec->goingAway());
  EXPECT_FALSE(server.codec->done()) << "two streams are still in flight";

  for (int32_t id : {*a, *b}) {
    ASSERT_TRUE(server.codec->submitResponse(id, 200, {}, false));
    ASSERT_TRUE(server.codec->sendData(id, "done", true));
  }
  pump(client, server);
  EXPECT_EQ(client.rec.streams[*a].body, "done");
  EXPECT_EQ(client.rec.streams[*b].body, "done");
  EXPECT_EQ(client.rec.streams[*b].cause, CloseCause::kComplete);
  EXPECT_TRUE(server.codec->done()) << "drained server should be done once streams finished";
  EXPECT_TRUE(client.codec->done());
  EXPECT_TRUE(client.errors.empty() && server.errors.empty());
}

TEST_F(CodecTest, StreamsAboveGoawayLastStreamAreRefused) {
  handshake();
  auto a = client.codec->submitRequest(get("/a"), true);
  ASSERT_TRUE(a);
  pump(client, server);
  // The server drains before it sees stream 3.
  ASSERT_TRUE(server.codec->drain());
  auto b = client.codec->submitRequest(get("/b"), true);
  ASSERT_TRUE(b);
  pump(client, server);
  EXPECT_FALSE(server.rec.streams.count(*b)) << "stream " << *b << " is above last_stream_id";
  EXPECT_TRUE(client.rec.streams[*b].closed);
  EXPECT_EQ(client.rec.streams[*b].cause, CloseCause::kRefused);
  EXPECT_FALSE(client.rec.streams[*a].closed);
}

TEST_F(CodecTest, ImmediateGoaway) {
  handshake();
  auto a = client.codec->submitRequest(get("/a"), true);
  ASSERT_TRUE(a);
  pump(client, server);
  server.codec->terminate(kNoError);
  pump(client, server);
  EXPECT_EQ(client.rec.goaways, 1);
  EXPECT_TRUE(server.codec->done());
  EXPECT_TRUE(server.errors.empty());
}

TEST(CodecLimitsTest, ClientRefusesBeyondPeerMaxConcurrentStreams) {
  Options o;
  o.max_concurrent_streams = 2;
  Peer client(Mode::kClient);
  Peer server(Mode::kServer, o);
  pump(client, server);
  auto a = client.codec->submitRequest(get("/a"), true);
  auto b = client.codec->submitRequest(get("/b"), true);
  ASSERT_TRUE(a && b);
  EXPECT_TRUE(client.codec->atStreamLimit());
  auto c = client.codec->submitRequest(get("/c"), true);
  ASSERT_FALSE(c) << "a third stream should be refused locally";
  EXPECT_EQ(c.error().code, static_cast<int>(ErrorCode::kStreamLimit));
  pump(client, server);
  ASSERT_TRUE(server.codec->submitResponse(*a, 204, {}, true));
  pump(client, server);
  EXPECT_TRUE(client.rec.streams[*a].closed);
  EXPECT_FALSE(client.codec->atStreamLimit());
  auto d = client.codec->submitRequest(get("/d"), true);
  EXPECT_TRUE(d) << "a slot freed up";
}

TEST(CodecLimitsTest, ServerRefusesStreamsOverItsLimit) {
  Options o;
  o.max_concurrent_streams = 1;
  Peer server(Mode::kServer, o);
  std::string in = testing::clientStart();
  in += testing::frame(testing::kHeaders, testing::kEndHeaders, 1, testing::hpackGet());
  in += testing::frame(testing::kHeaders, testing::kEndHeaders, 3, testing::hpackGet());
  ASSERT_TRUE(server.codec->feed(in));
  EXPECT_TRUE(server.rec.streams[1].begun);
  EXPECT_FALSE(server.rec.streams.count(3)) << "stream 3 exceeds max_concurrent_streams=1";
  bool refused = false;
  for (auto& f : testing::parseFrames(server.out.view()))
    if (f.type == testing::kRstStream && f.stream == 3 &&
        f.payload == testing::be32(kRefusedStream))
      refused = true;
  EXPECT_TRUE(refused) << "expected RST_STREAM(REFUSED_STREAM) on stream 3";
}

TEST(CodecLimitsTest, OversizedRequestHeadersGet431) {
  stats::Registry registry(1);
  Options o;
  o.max_header_list_bytes = 1024;
  Peer client(Mode::kClient);
  Peer server(Mode::kServer, o, makeStats(registry, "weft_listener_http2", {}));
  std::string big(2000, 'v');
  HeaderField f[] = {{"x-big", big}};
  auto id = client.codec->submitRequest(get("/", f), true);
  ASSERT_TRUE(id);
  pump(client, server);
  const auto& s = server.rec.streams[*id];
  EXPECT_TRUE(s.begun);
  EXPECT_TRUE(s.kinds.empty()) << "oversized headers must not reach the caller";
  EXPECT_TRUE(s.closed);
  EXPECT_EQ(s.cause, CloseCause::kHeadersTooLarge);
  EXPECT_EQ(client.rec.streams[*id].statuses, std::vector<int>{431});
  EXPECT_EQ(registry.counter("weft_listener_http2_header_overflow_total")->value(), 1u);
  // The connection stays usable.
  auto ok = client.codec->submitRequest(get("/small"), true);
  ASSERT_TRUE(ok);
  pump(client, server);
  EXPECT_EQ(server.rec.streams[*ok].path, "/small");
}

TEST(CodecLimitsTest, TooManyHeaderFieldsCountsAsOverflow) {
  Options o;
  o.max_header_fields = 10;
  Peer client(Mode::kClient);
  Peer server(Mode::kServer, o);
  std::vector<std::string> names;
  std::vector<HeaderField> fields;
  for (int i = 0; i < 20; ++i) names.push_back("x-h" + std::to_string(i));
  for (auto& n : names) fields.push_back({n, "v"});
  auto id = client.codec->submitRequest(get("/", fields), true);
  ASSERT_TRUE(id);
  pump(client, server);
  EXPECT_EQ(server.rec.streams[*id].cause, CloseCause::kHeadersTooLarge);
  EXPECT_EQ(client.rec.streams[*id].statuses, std::vector<int>{431});
}

TEST(CodecLimitsTest, OversizedResponseHeadersResetTheClientStream) {
  Options o;
  o.max_header_list_bytes = 1024;
  Peer client(Mode::kClient, o);
  Peer server(Mode::kServer);
  std::string big(4000, 'v');
  server.rec.on_headers = [&](int32_t id, const HeaderBlock&) {
    HeaderField f[] = {{"x-big", big}};
    ASSERT_TRUE(server.codec->submitResponse(id, 200, f, true));
  };
  auto id = client.codec->submitRequest(get(), true);
  ASSERT_TRUE(id);
  pump(client, server);
  EXPECT_TRUE(client.rec.streams[*id].kinds.empty());
  EXPECT_TRUE(client.rec.streams[*id].closed);
  EXPECT_EQ(client.rec.streams[*id].cause, CloseCause::kHeadersTooLarge);
}

TEST(CodecErrorTest, Http1BytesOnAServerCodecAreAnError) {
  stats::Registry registry(1);
  Peer server(Mode::kServer, {}, makeStats(registry, "weft_listener_http2", {}));
  Status s = server.codec->feed("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_FALSE(s) << "HTTP/1 bytes are not an HTTP/2 preface";
  EXPECT_EQ(s.error().code, static_cast<int>(ErrorCode::kProtocol)) << s.error().message;
  EXPECT_EQ(testing::lastGoawayCode(server.out.view()), kProtocolError);
  EXPECT_TRUE(server.codec->done());
  EXPECT_FALSE(server.codec->feed("more")) << "a failed codec stays failed";
  EXPECT_EQ(registry.counter("weft_listener_http2_protocol_error_total")->value(), 1u);
}

TEST(CodecErrorTest, OversizedFrameAfterPrefaceIsAConnectionError) {
  Peer server(Mode::kServer);
  std::string in = testing::clientStart();
  in += testing::frame(testing::kHeaders, testing::kEndHeaders, 1, std::string(20000, '\x82'));
  Status s = server.codec->feed(in);
  ASSERT_FALSE(s) << "a 20000-byte frame exceeds SETTINGS_MAX_FRAME_SIZE 16384";
  EXPECT_EQ(s.error().code, static_cast<int>(ErrorCode::kProtocol));
  EXPECT_EQ(testing::lastGoawayCode(server.out.view()), NGHTTP2_FRAME_SIZE_ERROR);
  EXPECT_TRUE(server.codec->done());
}

TEST(CodecErrorTest, GarbageToAClientCodecIsAnError) {
  Peer client(Mode::kClient);
  auto id = client.codec->submitRequest(get(), true);
  ASSERT_TRUE(id);
  Status s = client.codec->feed(std::string(64, '\xff'));
  ASSERT_FALSE(s) << "64 bytes of 0xff are not a SETTINGS frame";
  EXPECT_GE(testing::lastGoawayCode(client.out.view()), 1);
}

TEST(CodecModeTest, WrongModeCallsAreRefused) {
  Peer server(Mode::kServer);
  auto r = server.codec->submitRequest(get(), true);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, static_cast<int>(ErrorCode::kInvalidArgument));
  Peer client(Mode::kClient);
  Status s = client.codec->submitResponse(1, 200, {}, true);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, static_cast<int>(ErrorCode::kInvalidArgument));
  HeaderField bad[] = {{":path", "/x"}};
  auto r2 = client.codec->submitRequest(get("/", bad), true);
  ASSERT_FALSE(r2) << "pseudo-headers among fields must be refused";
}

TEST(CodecOutputTest, OutputStopsAtTheWatermarkAndResumesOnFlush) {
  Options o;
  o.output_high_watermark = 20'000;
  Peer client(Mode::kClient);
  Peer server(Mode::kServer, o);
  server.rec.on_headers = [&](int32_t id, const HeaderBlock&) {
    ASSERT_TRUE(server.codec->submitResponse(id, 200, {}, false));
    ASSERT_TRUE(server.codec->sendData(id, std::string(200'000, 'z'), true));
  };
  auto id = client.codec->submitRequest(get(), true);
  ASSERT_TRUE(id);
  std::string bytes(client.out.view());
  client.out.clear();
  ASSERT_TRUE(server.codec->feed(bytes));
  EXPECT_GE(server.out.size(), 20'000u);
  EXPECT_LT(server.out.size(), 20'000u + 17'000u) << "at most one frame past the watermark";
  pump(client, server);
  EXPECT_EQ(client.rec.streams[*id].body.size(), 200'000u);
}

}  // namespace
}  // namespace weft::http2
