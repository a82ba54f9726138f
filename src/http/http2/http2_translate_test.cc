// HTTP/1 <-> HTTP/2 head translation, alone and end to end through two codecs.

#include <gtest/gtest.h>

#include <string>

#include "http/http1/serializer.h"
#include "http/http2/test_peer.h"
#include "http/http2/translate.h"

namespace weft::http2 {
namespace {

using http::HeaderField;
using http::HeaderToken;

struct Parsed {
  std::string buf;
  http1::RequestParser parser;
  const http1::RequestHead& head() const { return parser.head(); }
};

std::unique_ptr<Parsed> parse(std::string text) {
  auto p = std::make_unique<Parsed>();
  p->buf = std::move(text);
  auto r = p->parser.parse(p->buf);
  EXPECT_TRUE(r.done()) << "test request did not parse: " << r.error.reason;
  return p;
}

std::string fieldsOf(const std::vector<HeaderField>& fields) {
  std::string s;
  for (auto& f : fields) s += std::string(f.name) + "=" + std::string(f.value) + ";";
  return s;
}

TEST(TranslateTest, OriginFormRequestToHttp2) {
  auto p = parse(
      "POST /api/v1?x=1 HTTP/1.1\r\nHost: svc.local:8080\r\nConnection: keep-alive, X-Hop\r\n"
      "Keep-Alive: timeout=5\r\nX-Hop: 1\r\nTE: gzip, trailers;q=0.5\r\nUpgrade: h2c\r\n"
      "Proxy-Connection: x\r\nContent-Length: 3\r\nX-Keep: yes\r\n\r\n");
  auto r = requestFromHttp1(p->head(), "https");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->method, "POST");
  EXPECT_EQ(r->scheme, "https");
  EXPECT_EQ(r->authority, "svc.local:8080");
  EXPECT_EQ(r->path, "/api/v1?x=1");
  EXPECT_EQ(fieldsOf(r->fields), "Content-Length=3;X-Keep=yes;te=trailers;")
      << "hop-by-hop, Connection-nominated and Host fields must go; TE becomes te: trailers";
}

TEST(TranslateTest, AbsoluteFormAndConnectAndAsterisk) {
  auto a = parse("GET http://other.example?q=1 HTTP/1.1\r\nHost: ignored\r\n\r\n");
  auto r = requestFromHttp1(a->head(), "http");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->scheme, "http");
  EXPECT_EQ(r->authority, "other.example") << "absolute-form authority wins over Host";
  EXPECT_EQ(r->view().path, "/?q=1");

  auto c = parse("CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n");
  auto rc = requestFromHttp1(c->head(), "http");
  ASSERT_TRUE(rc);
  EXPECT_EQ(rc->authority, "db.internal:5432");
  EXPECT_TRUE(rc->scheme.empty() && rc->path.empty()) << "CONNECT has no :scheme or :path";

  auto o = parse("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
  auto ro = requestFromHttp1(o->head(), "http");
  ASSERT_TRUE(ro);
  EXPECT_EQ(ro->path, "*");
}

TEST(TranslateTest, RequestWithoutAuthorityIsRefused) {
  auto p = parse("GET / HTTP/1.0\r\n\r\n");
  auto r = requestFromHttp1(p->head(), "http");
  EXPECT_FALSE(r) << "an HTTP/1.0 request without Host has no :authority";
}

TEST(TranslateTest, Http2RequestToHttp1JoinsCookiesAndAddsHost) {
  HeaderField fields[] = {{"cookie", "a=1", HeaderToken::kCookie},
                          {"accept", "*/*", HeaderToken::kAccept},
                          {"cookie", "b=2", HeaderToken::kCookie},
                          {"host", "stale", HeaderToken::kHost}};
  HeaderBlock b;
  b.method = "GET";
  b.scheme = "https";
  b.authority = "svc:443";
  b.path = "/p?q";
  b.fields = fields;
  b.end_stream = true;
  std::string arena;
  auto h = requestToHttp1(b, arena);
  ASSERT_TRUE(h) << h.error().message;
  EXPECT_EQ(h->target, "/p?q");
  EXPECT_EQ(h->path, "/p");
  EXPECT_EQ(h->query, "q");
  EXPECT_EQ(h->host, "svc:443");
  EXPECT_EQ(fieldsOf(h->headers), "host=svc:443;cookie=a=1; b=2;accept=*/*;");
  EXPECT_EQ(h->body_kind, http1::BodyKind::kNone);

  std::string out;
  http1::appendRequestHead(out, *h);
  EXPECT_EQ(out, "GET /p?q HTTP/1.1\r\nhost: svc:443\r\ncookie: a=1; b=2\r\naccept: */*\r\n\r\n");
}

TEST(TranslateTest, Http2RequestBodyFraming) {
  HeaderBlock b;
  b.method = "POST";
  b.authority = "h";
  b.path = "/";
  std::string arena;
  auto chunked = requestToHttp1(b, arena);
  ASSERT_TRUE(chunked);
  EXPECT_EQ(chunked->body_kind, http1::BodyKind::kChunked)
      << "a body of unknown length must be chunked towards HTTP/1";
  HeaderField cl[] = {{"content-length", "12", HeaderToken::kContentLength}};
  b.fields = cl;
  auto fixed = requestToHttp1(b, arena);
  ASSERT_TRUE(fixed);
  EXPECT_EQ(fixed->body_kind, http1::BodyKind::kContentLength);
  EXPECT_EQ(fixed->content_length, 12u);
  HeaderField bad[] = {{"content-length", "1x", HeaderToken::kContentLength}};
  b.fields = bad;
  EXPECT_FALSE(requestToHttp1(b, arena));
  b.fields = {};
  b.authority = "";
  EXPECT_FALSE(requestToHttp1(b, arena)) << "no :authority and no host";
}

TEST(TranslateTest, ResponsesBothWays) {
  std::string buf =
      "HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n"
      "Content-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n";
  http1::ResponseParser parser;
  ASSERT_TRUE(parser.parse(buf, http1::Method::kGet).done());
  TranslatedResponse r = responseFromHttp1(parser.head());
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(fieldsOf(r.fields), "Content-Type=text/plain;Set-Cookie=a=1;Set-Cookie=b=2;");

  HeaderField fields[] = {{"content-length", "5", HeaderToken::kContentLength}};
  HeaderBlock b;
  b.kind = HeadersKind::kResponse;
  b.status = 404;
  b.fields = fields;
  http1::ResponseHead h = responseToHttp1(b);
  EXPECT_EQ(h.reason, "Not Found");
  EXPECT_EQ(h.body_kind, http1::BodyKind::kContentLength);
  std::string out;
  http1::appendResponseHead(out, h);
  EXPECT_EQ(out, "HTTP/1.1 404 Not Found\r\ncontent-length: 5\r\n\r\n");
}

// END_STREAM on the response HEADERS without content-length (an empty 200, a gRPC trailers-only
// reply): HTTP/1 gets an explicit empty body, except where a status never has one.
TEST(TranslateTest, EndStreamOnHeadersIsAnEmptyFramedBody) {
  HeaderBlock b;
  b.kind = HeadersKind::kResponse;
  b.status = 200;
  b.end_stream = true;
  http1::ResponseHead h = responseToHttp1(b);
  EXPECT_EQ(h.body_kind, http1::BodyKind::kContentLength)
      << "an empty 200 must be framed, else the HTTP/1 client cannot find its end";
  EXPECT_EQ(h.content_length, 0u);
  for (int status : {204, 304, 103}) {
    b.status = status;
    EXPECT_EQ(responseToHttp1(b).body_kind, http1::BodyKind::kNone) << "status " << status;
  }
  b.status = 200;
  b.end_stream = false;
  EXPECT_EQ(responseToHttp1(b).body_kind, http1::BodyKind::kChunked);
}

// HTTP/1 request -> HTTP/2 (client codec) -> server codec -> HTTP/1 again: same request.
TEST(TranslateTest, RoundTripThroughTwoCodecs) {
  auto p = parse(
      "PUT /items/7?force=true HTTP/1.1\r\nHost: store.mesh\r\nContent-Length: 4\r\n"
      "X-Request-Id: r1\r\nConnection: close\r\nCookie: s=1\r\n\r\n");
  auto req = requestFromHttp1(p->head(), "http");
  ASSERT_TRUE(req);
  testing::Peer client(Mode::kClient);
  testing::Peer server(Mode::kServer);
  std::string rebuilt;
  server.rec.on_headers = [&](int32_t, const HeaderBlock& b) {
    std::string arena;
    auto h = requestToHttp1(b, arena);
    ASSERT_TRUE(h) << h.error().message;
    http1::appendRequestHead(rebuilt, *h);
  };
  auto id = client.codec->submitRequest(req->view(), false);
  ASSERT_TRUE(id);
  ASSERT_TRUE(client.codec->sendData(*id, "body", true));
  testing::pump(client, server);
  EXPECT_EQ(rebuilt,
            "PUT /items/7?force=true HTTP/1.1\r\nhost: store.mesh\r\ncontent-length: 4\r\n"
            "x-request-id: r1\r\ncookie: s=1\r\n\r\n");
  EXPECT_EQ(server.rec.streams[*id].body, "body");
}

}  // namespace
}  // namespace weft::http2
