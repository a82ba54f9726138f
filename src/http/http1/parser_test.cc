// Tests of the HTTP/1.1 codec: request/response head parsing, the chunked decoder and encoder,
// the head serializer and the well-known header lookup.

#include "http/http1/parser.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "http/headers.h"
#include "http/http1/chunked.h"
#include "http/http1/serializer.h"

namespace weft::http1 {
namespace {

using http::HeaderField;
using http::HeaderToken;

// Makes control characters visible in failure messages.
std::string escape(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string describe(const ParseResult& r) {
  switch (r.status) {
    case ParseStatus::kNeedMore:
      return "NeedMore";
    case ParseStatus::kDone:
      return "Done(consumed=" + std::to_string(r.consumed) + ")";
    case ParseStatus::kError:
      return "Error(" + std::to_string(r.error.status) + ", " + std::string(r.error.reason) + ")";
  }
  return "?";
}

std::vector<std::pair<std::string, std::string>> fieldsOf(const MessageHead& h) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const HeaderField& f : h.headers) out.emplace_back(f.name, f.value);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Requests: accepted

TEST(RequestParser, SimpleGet) {
  std::string buf =
      "GET /index.html?a=1&b=%20x HTTP/1.1\r\n"
      "Host: example.com:8080\r\n"
      "User-Agent: curl/8.0\r\n"
      "X-Custom:   padded value \t\r\n"
      "Empty:\r\n"
      "\r\n";
  RequestParser p;
  ParseResult r = p.parse(buf);
  ASSERT_TRUE(r.done()) << "expected Done, got " << describe(r);
  EXPECT_EQ(r.consumed, buf.size());
  const RequestHead& h = p.head();
  EXPECT_EQ(h.method, "GET");
  EXPECT_EQ(h.method_id, Method::kGet);
  EXPECT_EQ(h.target, "/index.html?a=1&b=%20x");
  EXPECT_EQ(h.target_form, TargetForm::kOrigin);
  EXPECT_EQ(h.path, "/index.html");
  EXPECT_EQ(h.query, "a=1&b=%20x");
  EXPECT_TRUE(h.has_query);
  EXPECT_EQ(h.version, Version::kHttp11);
  EXPECT_EQ(h.host, "example.com:8080");
  EXPECT_TRUE(h.has_host);
  EXPECT_EQ(h.body_kind, BodyKind::kNone);
  EXPECT_TRUE(h.keep_alive);
  EXPECT_FALSE(h.expect_100_continue);
  EXPECT_FALSE(h.upgrade);
  EXPECT_EQ(h.head_bytes, buf.size());
  std::vector<std::pair<std::string, std::string>> want = {{"Host", "example.com:8080"},
                                                           {"User-Agent", "curl/8.0"},
                                                           {"X-Custom", "padded value"},
                                                           {"Empty", ""}};
  EXPECT_EQ(fieldsOf(h), want);
  EXPECT_EQ(h.headers[0].token, HeaderToken::kHost);
  EXPECT_EQ(h.headers[1].token, HeaderToken::kUserAgent);
  EXPECT_EQ(h.headers[2].token, HeaderToken::kOther);
  // Zero copy: views point into the caller's buffer.
  EXPECT_EQ(h.method.data(), buf.data());
  EXPECT_EQ(h.headers[1].value.data(), buf.data() + buf.find("curl"));
  ASSERT_NE(h.find("x-custom"), nullptr);
  EXPECT_EQ(h.find("x-custom")->value, "padded value");
  ASSERT_NE(h.find(HeaderToken::kUserAgent), nullptr);
  EXPECT_EQ(h.find("absent"), nullptr);
}

TEST(RequestParser, PathWithoutQueryAndEmptyQuery) {
  RequestParser p;
  std::string a = "GET /x HTTP/1.1\r\nHost: h\r\n\r\n";
  ASSERT_TRUE(p.parse(a).done());
  EXPECT_EQ(p.head().path, "/x");
  EXPECT_EQ(p.head().query, "");
  EXPECT_FALSE(p.head().has_query);
  std::string b = "GET /x? HTTP/1.1\r\nHost: h\r\n\r\n";
  ASSERT_TRUE(p.parse(b).done());
  EXPECT_EQ(p.head().path, "/x");
  EXPECT_TRUE(p.head().has_query);
}

TEST(RequestParser, PostWithContentLength) {
  std::string head = "POST /submit HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n";
  std::string buf = head + "hello world";
  RequestParser p;
  ParseResult r = p.parse(buf);
  ASSERT_TRUE(r.done()) << describe(r);
  EXPECT_EQ(r.consumed, head.size()) << "the body must not be counted in the head";
  EXPECT_EQ(p.head().body_kind, BodyKind::kContentLength);
  EXPECT_EQ(p.head().content_length, 11u);
  EXPECT_TRUE(p.head().has_content_length);
  EXPECT_EQ(p.head().method_id, Method::kPost);
}

TEST(RequestParser, ZeroContentLengthIsStillContentLength) {
  std::string buf = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n";
  RequestParser p;
  ASSERT_TRUE(p.parse(buf).done());
  EXPECT_EQ(p.head().body_kind, BodyKind::kContentLength);
  EXPECT_EQ(p.head().content_length, 0u);
}

TEST(RequestParser, IdenticalRepeatedContentLengthIsAccepted) {
  // RFC 9110 §8.6: identical duplicates may be replaced by a single value.
  for (std::string cl : {"Content-Length: 5, 5\r\n", "Content-Length: 5\r\nContent-Length: 5\r\n",
                         "Content-Length: 5,5 , 005\r\n"}) {
    std::string buf = "POST / HTTP/1.1\r\nHost: h\r\n" + cl + "\r\n";
    RequestParser p;
    ParseResult r = p.parse(buf);
    ASSERT_TRUE(r.done()) << escape(cl) << ": " << describe(r);
    EXPECT_EQ(p.head().content_length, 5u) << escape(cl);
  }
}

TEST(RequestParser, LargestContentLength) {
  std::string buf = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775807\r\n\r\n";
  RequestParser p;
  ASSERT_TRUE(p.parse(buf).done());
  EXPECT_EQ(p.head().content_length, 9223372036854775807ull);
}

TEST(RequestParser, Chunked) {
  std::string buf =
      "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ChUnKeD\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
  RequestParser p;
  ParseResult r = p.parse(buf);
  ASSERT_TRUE(r.done()) << describe(r);
  EXPECT_EQ(p.head().body_kind, BodyKind::kChunked);
  ChunkedDecoder d;
  std::string body;
  auto s =
      d.decode(std::string_view(buf).substr(r.consumed), [&](std::string_view x) { body += x; });
  EXPECT_TRUE(s.done);
  EXPECT_EQ(body, "hello");
  EXPECT_EQ(r.consumed + s.consumed, buf.size());
}

TEST(RequestParser, ChunkedWithEmptyListElements) {
  // RFC 9110 §5.6.1.2: recipients ignore empty list elements.
  std::string buf = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: , chunked,\r\n\r\n";
  RequestParser p;
  ParseResult r = p.parse(buf);
  ASSERT_TRUE(r.done()) << describe(r);
  EXPECT_EQ(p.head().body_kind, BodyKind::kChunked);
}

TEST(RequestParser, PipelinedRequestsInOneBuffer) {
  std::string buf =
      "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
      "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz"
      "\r\n"  // a stray CRLF after a body is ignored before the next request line
      "DELETE /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
  RequestParser p;
  std::string_view rest = buf;
  std::vector<std::string> paths;
  while (!rest.empty()) {
    ParseResult r = p.parse(rest);
    ASSERT_TRUE(r.done()) << "at " << escape(rest) << ": " << describe(r);
    paths.emplace_back(p.head().path);
    rest.remove_prefix(r.consumed);
    if (p.head().body_kind == BodyKind::kContentLength) rest.remove_prefix(p.head().content_length);
  }
  EXPECT_EQ(paths, (std::vector<std::string>{"/a", "/b", "/c"}));
  EXPECT_FALSE(p.head().keep_alive);
  EXPECT_EQ(p.head().method_id, Method::kDelete);
}

TEST(RequestParser, SplitAtEveryOffset) {
  std::string buf =
      "PUT /p/q?x=y HTTP/1.1\r\n"
      "Host: example.org\r\n"
      "Content-Length: 4\r\n"
      "Connection: keep-alive, X-Hop\r\n"
      "X-Hop: 1\r\n"
      "\r\n"
      "body";
  size_t head_len = buf.size() - 4;
  for (size_t k = 0; k <= buf.size(); ++k) {
    RequestParser p;
    ParseResult first = p.parse(std::string_view(buf).substr(0, k));
    if (k < head_len) {
      ASSERT_TRUE(first.needMore()) << "prefix of " << k << " bytes: " << describe(first);
      // Re-feed from a different copy of the bytes: the parser must not keep pointers.
      std::string copy = buf;
      ParseResult second = p.parse(copy);
      ASSERT_TRUE(second.done()) << "split at " << k << ": " << describe(second);
      EXPECT_EQ(second.consumed, head_len);
      EXPECT_EQ(p.head().path, "/p/q");
      EXPECT_EQ(p.head().content_length, 4u);
      EXPECT_EQ(p.head().headers.size(), 4u);
      EXPECT_EQ(p.head().headers[3].name.data(), copy.data() + copy.find("X-Hop: 1"));
    } else {
      ASSERT_TRUE(first.done()) << "prefix of " << k << " bytes: " << describe(first);
      EXPECT_EQ(first.consumed, head_len);
    }
  }
}

TEST(RequestParser, ByteByByte) {
  std::string buf = "GET / HTTP/1.1\r\nHost: h\r\nA: b\r\n\r\n";
  RequestParser p;
  for (size_t k = 1; k < buf.size(); ++k)
    ASSERT_TRUE(p.parse(std::string_view(buf).substr(0, k)).needMore()) << "at " << k;
  ParseResult r = p.parse(buf);
  ASSERT_TRUE(r.done()) << describe(r);
  EXPECT_EQ(r.consumed, buf.size());
}

TEST(RequestParser, Http10KeepAlive) {
  struct Case {
    std::string head;
    bool keep_alive;
  };
  std::vector<Case> cases = {
      {"GET / HTTP/1.0\r\n\r\n", false},  // 1.0: no Host needed, close by default
      {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
      {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nKeep-Alive: timeout=5\r\n\r\n", true},
      {"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false},
      {"GET / HTTP/1.1\r\nHost: h\r\n\r\n", true},
      {"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", false},
      {"GET / HTTP/1.1\r\nHost: h\r\nConnection: foo\r\nConnection: CLOSE\r\n\r\n", false},
  };
  for (const Case& c : cases) {
    RequestParser p;
    ParseResult r = p.parse(c.head);
    ASSERT_TRUE(r.done()) << escape(c.head) << ": " << describe(r);
    EXPECT_EQ(p.head().keep_alive, c.keep_alive) << escape(c.head);
  }
  RequestParser p;
  ASSERT_TRUE(p.parse("GET / HTTP/1.0\r\n\r\n").done());
  EXPECT_EQ(p.head().version, Version::kHttp10);
  EXPECT_FALSE(p.head().has_host);
}

TEST(RequestParser, LeadingEmptyLinesAreSkipped) {
  std::string buf = "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
  RequestParser p;
  ParseResult r = p.parse(buf);
  ASSERT_TRUE(r.done()) << describe(r);
  EXPECT_EQ(r.consumed, buf.size());
  EXPECT_EQ(p.head().head_bytes, buf.size() - 4);
  EXPECT_EQ(p.head().method, "GET");
}

TEST(RequestParser, ConnectionNominatedHeaders) {
  std::string buf =
      "GET / HTTP/1.1\r\nHost: h\r\n"
      "Connection: keep-alive, X-Secret, TE, host, content-length\r\n"
      "X-Secret: s\r\nx-secret: t\r\nTE: trailers\r\nKeep-Alive: 5\r\nX-Public: p\r\n"
      "Content-Length: 0\r\n\r\n";
  RequestParser p;
  ASSERT_TRUE(p.parse(buf).done());
  const RequestHead& h = p.head();
  EXPECT_TRUE(h.connection_tokens.contains(HeaderToken::kKeepAlive));
  EXPECT_TRUE(h.connection_tokens.contains(HeaderToken::kTe));
  // Host and Content-Length may not be made hop-by-hop.
  EXPECT_FALSE(h.connection_tokens.contains(HeaderToken::kHost));
  EXPECT_FALSE(h.connection_tokens.contains(HeaderToken::kContentLength));
  ASSERT_EQ(h.connection_names.size(), 1u);
  EXPECT_EQ(h.connection_names[0], "X-Secret");
  std::vector<std::string> hop;
  for (const HeaderField& f : h.headers)
    if (h.isHopByHop(f)) hop.emplace_back(f.name);
  EXPECT_EQ(hop,
            (std::vector<std::string>{"Connection", "X-Secret", "x-secret", "TE", "Keep-Alive"}));
}

TEST(RequestParser, ExpectContinue) {
  RequestParser p;
  ASSERT_TRUE(
      p.parse("PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 9\r\n\r\n")
          .done());
  EXPECT_TRUE(p.head().expect_100_continue);
  // RFC 9110 §10.1.1: ignored in HTTP/1.0.
  ASSERT_TRUE(
      p.parse("PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n").done());
  EXPECT_FALSE(p.head().expect_100_continue);
}

TEST(RequestParser, Upgrade) {
  RequestParser p;
  ASSERT_TRUE(
      p.parse("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
          .done());
  EXPECT_TRUE(p.head().upgrade);
  EXPECT_EQ(p.head().upgrade_protocols, "websocket");
  // Without "upgrade" in Connection the Upgrade header is not a request to switch.
  ASSERT_TRUE(p.parse("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n").done());
  EXPECT_FALSE(p.head().upgrade);
  // RFC 9110 §7.8: ignored in HTTP/1.0.
  ASSERT_TRUE(
      p.parse("GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n").done());
  EXPECT_FALSE(p.head().upgrade);
}

TEST(RequestParser, TargetForms) {
  RequestParser p;
  ASSERT_TRUE(p.parse("GET http://example.com:81/a/b?c=d HTTP/1.1\r\nHost: x\r\n\r\n").done());
  EXPECT_EQ(p.head().target_form, TargetForm::kAbsolute);
  EXPECT_EQ(p.head().scheme, "http");
  EXPECT_EQ(p.head().authority, "example.com:81");
  EXPECT_EQ(p.head().path, "/a/b");
  EXPECT_EQ(p.head().query, "c=d");
  EXPECT_EQ(p.head().pathAndQuery(), "/a/b?c=d");

  ASSERT_TRUE(p.parse("GET https://[::1]:8443 HTTP/1.1\r\nHost: x\r\n\r\n").done());
  EXPECT_EQ(p.head().authority, "[::1]:8443");
  EXPECT_EQ(p.head().path, "");
  EXPECT_EQ(p.head().pathAndQuery(), "");

  ASSERT_TRUE(p.parse("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n").done());
  EXPECT_EQ(p.head().target_form, TargetForm::kAuthority);
  EXPECT_EQ(p.head().authority, "example.com:443");
  EXPECT_EQ(p.head().method_id, Method::kConnect);

  ASSERT_TRUE(p.parse("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n").done());
  EXPECT_EQ(p.head().target_form, TargetForm::kAsterisk);

  // An empty Host is allowed (RFC 9110 §7.2, target URI without authority).
  ASSERT_TRUE(p.parse("GET / HTTP/1.1\r\nHost:\r\n\r\n").done());
  EXPECT_TRUE(p.head().has_host);
  EXPECT_EQ(p.head().host, "");
}

TEST(RequestParser, ExtensionMethodAndObsText) {
  std::string buf = "PROPFIND /dav HTTP/1.1\r\nHost: h\r\nX-Latin: caf\xe9\r\n\r\n";
  RequestParser p;
  ParseResult r = p.parse(buf);
  ASSERT_TRUE(r.done()) << describe(r);
  EXPECT_EQ(p.head().method_id, Method::kOther);
  EXPECT_EQ(p.head().headers[1].value, "caf\xe9");
}

TEST(RequestParser, ErrorThenNewMessage) {
  RequestParser p;
  EXPECT_TRUE(p.parse("BAD\r\n\r\n").failed());
  // After an error the next call starts over.
  EXPECT_TRUE(p.parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n").done());
}

// ---------------------------------------------------------------------------------------------
// Requests: rejected

struct Reject {
  std::string input;
  int status;
  std::string reason;  // substring of the expected reason
};

void expectRequestRejected(const Reject& c, ParseLimits limits = {}) {
  RequestParser p(limits);
  ParseResult r = p.parse(c.input);
  ASSERT_TRUE(r.failed()) << "input " << escape(c.input) << ": expected Error(" << c.status << ", ~"
                          << c.reason << "), got " << describe(r);
  EXPECT_EQ(r.error.status, c.status) << "input " << escape(c.input) << ": " << describe(r);
  EXPECT_NE(r.error.reason.find(c.reason), std::string_view::npos)
      << "input " << escape(c.input) << ": expected reason containing \"" << c.reason << "\", got "
      << describe(r);
}

std::string req(std::string fields, std::string line = "GET / HTTP/1.1") {
  return line + "\r\n" + fields + "\r\n";
}

TEST(RequestParser, RejectsSmugglingVectors) {
  std::vector<Reject> cases = {
      {req("Host: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n"), 400, "conflicting"},
      {req("Host: h\r\nContent-Length: 5, 6\r\n"), 400, "conflicting"},
      {req("Host: h\r\nContent-Length: 5,\r\n"), 400, "invalid Content-Length"},
      {req("Host: h\r\nContent-Length: 5,,5\r\n"), 400, "invalid Content-Length"},
      {req("Host: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"), 400,
       "both Content-Length and Transfer-Encoding"},
      {req("Host: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n"), 400,
       "both Content-Length and Transfer-Encoding"},
      {req("Host: h\r\nTransfer-Encoding: gzip\r\n"), 400, "not the final"},
      {req("Host: h\r\nTransfer-Encoding: chunked, gzip\r\n"), 400, "not the final"},
      {req("Host: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"), 400,
       "not the final"},
      {req("Host: h\r\nTransfer-Encoding: chunked, chunked\r\n"), 400, "not the final"},
      {req("Host: h\r\nTransfer-Encoding: gzip, chunked\r\n"), 501, "unsupported transfer coding"},
      {req("Host: h\r\nTransfer-Encoding: x-custom\r\nTransfer-Encoding: chunked\r\n"), 501,
       "unsupported"},
      {req("Host: h\r\nTransfer-Encoding: chunked;q=1\r\n"), 400, "invalid Transfer-Encoding"},
      {req("Host: h\r\nTransfer-Encoding: \"chunked\"\r\n"), 400, "invalid Transfer-Encoding"},
      {req("Host: h\r\nTransfer-Encoding:\r\n"), 400, "not the final"},
      {req("Transfer-Encoding: chunked\r\n", "POST / HTTP/1.0"), 400, "HTTP/1.0"},
      {req("Host: h\r\nX: a\r\n b\r\n"), 400, "folding"},
      {req("Host: h\r\nX: a\r\n\tb\r\n"), 400, "folding"},
      {req(" Host: h\r\n"), 400, "folding"},
      {req("Host: h\r\nTransfer-Encoding : chunked\r\n"), 400, "whitespace between"},
      {req("Host: h\r\nContent-Length\t: 5\r\n"), 400, "whitespace between"},
      {req("Host: h\r\nContent-Length: +5\r\n"), 400, "invalid Content-Length"},
      {req("Host: h\r\nContent-Length: -1\r\n"), 400, "invalid Content-Length"},
      {req("Host: h\r\nContent-Length: 5a\r\n"), 400, "invalid Content-Length"},
      {req("Host: h\r\nContent-Length: 0x10\r\n"), 400, "invalid Content-Length"},
      {req("Host: h\r\nContent-Length: 5 5\r\n"), 400, "invalid Content-Length"},
      {req("Host: h\r\nContent-Length:\r\n"), 400, "invalid Content-Length"},
      {req("Host: h\r\nContent-Length: 9223372036854775808\r\n"), 400, "too large"},
      {req("Host: h\r\nContent-Length: 99999999999999999999999\r\n"), 400, "too large"},
  };
  for (const Reject& c : cases) expectRequestRejected(c);
}

TEST(RequestParser, RejectsBareCrAndLf) {
  std::vector<Reject> cases = {
      {"GET / HTTP/1.1\nHost: h\r\n\r\n", 400, "bare LF"},
      {"GET / HTTP/1.1\r\nHost: h\n\r\n", 400, "bare LF"},
      {"GET / HTTP/1.1\r\nHost: h\r\n\n", 400, "bare LF"},
      {"GET / HTTP/1.1\r\nHost: h\n\n", 400, "bare LF"},
      {"\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "bare LF"},
      {"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", 400, "invalid character in header value"},
      {"GET / HTTP/1.1\r\nHost: h\r\nX\r: a\r\n\r\n", 400, "invalid character in header name"},
      {"GET /\r HTTP/1.1\r\nHost: h\r\n\r\n", 400, "request-target"},
      {"GET / HTTP/1.1\r\r\nHost: h\r\n\r\n", 400, "version"},
      {"GET / HTTP/1.1\r\nHost: h\r\n\r\r\n\r\n", 400, "header name"},
  };
  for (const Reject& c : cases) expectRequestRejected(c);
}

TEST(RequestParser, RejectsBadRequestLine) {
  std::vector<Reject> cases = {
      {req("Host: h\r\n", "G(T / HTTP/1.1"), 400, "method"},
      {req("Host: h\r\n", "GET\t/ HTTP/1.1"), 400, "method"},
      {req("Host: h\r\n", " / HTTP/1.1"), 400, "method"},
      {req("Host: h\r\n", "GET  / HTTP/1.1"), 400, "empty request-target"},
      {req("Host: h\r\n", "GET / HTTP/1.1 "), 400, "version"},
      {req("Host: h\r\n", "GET / extra HTTP/1.1"), 400, "version"},
      {req("Host: h\r\n", "GET /"), 400, "missing HTTP version"},
      {req("Host: h\r\n", "GET"), 400, "method"},
      {req("Host: h\r\n", "GET /a\"b HTTP/1.1"), 400, "request-target"},
      {req("Host: h\r\n", "GET /a<b> HTTP/1.1"), 400, "request-target"},
      {req("Host: h\r\n", "GET /a{b} HTTP/1.1"), 400, "request-target"},
      {req("Host: h\r\n", "GET /a|b HTTP/1.1"), 400, "request-target"},
      {req("Host: h\r\n", "GET /a\\b HTTP/1.1"), 400, "request-target"},
      {req("Host: h\r\n", "GET /a#frag HTTP/1.1"), 400, "request-target"},
      {req("Host: h\r\n", "GET /caf\xc3\xa9 HTTP/1.1"), 400, "request-target"},
      {req("Host: h\r\n", "GET /a\x01 HTTP/1.1"), 400, "request-target"},
      {req("Host: h\r\n", "GET /a%zz HTTP/1.1"), 400, "percent"},
      {req("Host: h\r\n", "GET /a%4 HTTP/1.1"), 400, "percent"},
      {req("Host: h\r\n", "GET /a% HTTP/1.1"), 400, "percent"},
      {req("Host: h\r\n", "GET a/b HTTP/1.1"), 400, "request-target"},
      {req("Host: h\r\n", "GET * HTTP/1.1"), 400, "OPTIONS"},
      {req("Host: h\r\n", "CONNECT / HTTP/1.1"), 400, "authority-form"},
      {req("Host: h\r\n", "CONNECT example.com HTTP/1.1"), 400, "authority-form"},
      {req("Host: h\r\n", "CONNECT example.com:99999 HTTP/1.1"), 400, "authority-form"},
      {req("Host: h\r\n", "GET http://user@h/ HTTP/1.1"), 400, "authority"},
      {req("Host: h\r\n", "GET http:///p HTTP/1.1"), 400, "authority"},
      {req("Host: h\r\n", "GET http:/p HTTP/1.1"), 400, "request-target"},
      {req("Host: h\r\n", "GET / HTTP/1.2"), 505, "unsupported HTTP version"},
      {req("Host: h\r\n", "GET / HTTP/2.0"), 505, "unsupported HTTP version"},
      {req("Host: h\r\n", "GET / HTTP/0.9"), 505, "unsupported HTTP version"},
      {req("Host: h\r\n", "GET / http/1.1"), 400, "invalid HTTP version"},
      {req("Host: h\r\n", "GET / HTTP/1.1x"), 400, "invalid HTTP version"},
      {req("Host: h\r\n", "GET / HTTP/1"), 400, "invalid HTTP version"},
      {req("Host: h\r\n", "GET / HTTP/11.1"), 400, "invalid HTTP version"},
  };
  for (const Reject& c : cases) expectRequestRejected(c);
}

TEST(RequestParser, RejectsBadFields) {
  std::vector<Reject> cases = {
      {req("Host: h\r\nFo@o: x\r\n"), 400, "header name"},
      {req("Host: h\r\nFoo(bar): x\r\n"), 400, "header name"},
      {req("Host: h\r\n: x\r\n"), 400, "empty header name"},
      {req("Host: h\r\nNoColon\r\n"), 400, "without a colon"},
      {req("Host: h\r\nX: a\x01"
           "b\r\n"),
       400, "header value"},
      {req("Host: h\r\nX: a\x7f\r\n"), 400, "header value"},
      {req(std::string("Host: h\r\nX: a\0b\r\n", 17)), 400, "header value"},
      {req("Host: h\r\nX: \x1b[31m\r\n"), 400, "header value"},
      {req("Host: h\r\nConnection: close;x\r\n"), 400, "Connection"},
      {req("User-Agent: x\r\n"), 400, "missing Host"},
      {req("Host: a\r\nHost: a\r\n"), 400, "multiple Host"},
      {req("Host: a\r\nhost: b\r\n"), 400, "multiple Host"},
      {req("Host: a b\r\n"), 400, "invalid Host"},
      {req("Host: user@h\r\n"), 400, "invalid Host"},
      {req("Host: h/path\r\n"), 400, "invalid Host"},
      {req("Host: :80\r\n"), 400, "invalid Host"},
      {req("Host: h:8o\r\n"), 400, "invalid Host"},
      {req("Host: [::1\r\n"), 400, "invalid Host"},
  };
  for (const Reject& c : cases) expectRequestRejected(c);
}

TEST(RequestParser, HeadSizeLimit) {
  ParseLimits limits;
  limits.max_head_bytes = 64;
  std::string ok = req("Host: h\r\nX: " + std::string(64 - 32, 'a') + "\r\n");
  ASSERT_EQ(ok.size(), 64u);
  RequestParser p(limits);
  ParseResult r = p.parse(ok);
  EXPECT_TRUE(r.done()) << "a head of exactly the limit must pass: " << describe(r);

  expectRequestRejected({req("Host: h\r\nX: " + std::string(33, 'a') + "\r\n"), 431, "size limit"},
                        limits);
  // Incomplete but already over the limit: rejected without waiting for the end.
  expectRequestRejected({"GET /" + std::string(100, 'a'), 431, "size limit"}, limits);
  // Incomplete and under the limit: wait.
  RequestParser q(limits);
  EXPECT_TRUE(q.parse("GET /" + std::string(50, 'a')).needMore());
}

TEST(RequestParser, HeaderCountLimit) {
  ParseLimits limits;
  limits.max_headers = 3;
  RequestParser p(limits);
  EXPECT_TRUE(p.parse(req("Host: h\r\nA: 1\r\nB: 2\r\n")).done());
  expectRequestRejected({req("Host: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n"), 431, "too many"}, limits);
  // Detected while the head is still incomplete.
  expectRequestRejected({"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n", 431, "too many"},
                        limits);
}

// ---------------------------------------------------------------------------------------------
// Responses

ParseResult parseResponse(ResponseParser& p, std::string_view buf, Method m = Method::kGet) {
  return p.parse(buf, m);
}

TEST(ResponseParser, OkWithContentLength) {
  std::string buf = "HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 5\r\n\r\nhello";
  ResponseParser p;
  ParseResult r = parseResponse(p, buf);
  ASSERT_TRUE(r.done()) << describe(r);
  EXPECT_EQ(r.consumed, buf.size() - 5);
  const ResponseHead& h = p.head();
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.reason, "OK");
  EXPECT_EQ(h.version, Version::kHttp11);
  EXPECT_EQ(h.body_kind, BodyKind::kContentLength);
  EXPECT_EQ(h.content_length, 5u);
  EXPECT_TRUE(h.keep_alive);
  EXPECT_FALSE(h.interim);
  EXPECT_FALSE(h.tunnel);
  EXPECT_EQ(h.headers[0].token, HeaderToken::kServer);
}

TEST(ResponseParser, ChunkedAndUntilClose) {
  ResponseParser p;
  ASSERT_TRUE(parseResponse(p, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").done());
  EXPECT_EQ(p.head().body_kind, BodyKind::kChunked);
  EXPECT_TRUE(p.head().keep_alive);

  ASSERT_TRUE(parseResponse(p, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n").done());
  EXPECT_EQ(p.head().body_kind, BodyKind::kUntilClose);
  EXPECT_FALSE(p.head().keep_alive) << "a body delimited by close cannot keep the connection";

  ASSERT_TRUE(parseResponse(p, "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n").done());
  EXPECT_FALSE(p.head().keep_alive);
  ASSERT_TRUE(
      parseResponse(p, "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n")
          .done());
  EXPECT_TRUE(p.head().keep_alive);
  ASSERT_TRUE(
      parseResponse(p, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n").done());
  EXPECT_FALSE(p.head().keep_alive);
}

TEST(ResponseParser, ResponsesWithoutBody) {
  struct Case {
    std::string head;
    Method method;
  };
  std::vector<Case> cases = {
      {"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", Method::kHead},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Method::kHead},
      {"HTTP/1.1 200 OK\r\n\r\n", Method::kHead},
      {"HTTP/1.1 204 No Content\r\n\r\n", Method::kGet},
      {"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", Method::kDelete},
      {"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", Method::kGet},
      {"HTTP/1.1 304 Not Modified\r\n\r\n", Method::kGet},
  };
  for (const Case& c : cases) {
    ResponseParser p;
    ParseResult r = parseResponse(p, c.head, c.method);
    ASSERT_TRUE(r.done()) << escape(c.head) << ": " << describe(r);
    EXPECT_EQ(p.head().body_kind, BodyKind::kNone) << escape(c.head);
    EXPECT_TRUE(p.head().keep_alive) << escape(c.head);
    EXPECT_EQ(r.consumed, c.head.size());
  }
  ResponseParser p;
  ASSERT_TRUE(parseResponse(p, cases[0].head, Method::kHead).done());
  EXPECT_TRUE(p.head().has_content_length);
  EXPECT_EQ(p.head().content_length, 1234u) << "HEAD responses keep the representation length";
}

TEST(ResponseParser, InterimThenFinal) {
  std::string buf =
      "HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
      "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
  ResponseParser p;
  std::string_view rest = buf;
  std::vector<int> statuses;
  while (true) {
    ParseResult r = parseResponse(p, rest, Method::kPut);
    ASSERT_TRUE(r.done()) << escape(rest) << ": " << describe(r);
    statuses.push_back(p.head().status);
    rest.remove_prefix(r.consumed);
    if (!p.head().interim) break;
    EXPECT_EQ(p.head().body_kind, BodyKind::kNone);
  }
  EXPECT_EQ(statuses, (std::vector<int>{100, 103, 201}));
  EXPECT_EQ(rest, "ok");
}

TEST(ResponseParser, Tunnels) {
  ResponseParser p;
  ASSERT_TRUE(
      parseResponse(
          p,
          "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
          .done());
  EXPECT_TRUE(p.head().tunnel);
  EXPECT_FALSE(p.head().interim);
  EXPECT_EQ(p.head().body_kind, BodyKind::kNone);
  ASSERT_TRUE(
      parseResponse(p, "HTTP/1.1 200 Connection Established\r\n\r\n", Method::kConnect).done());
  EXPECT_TRUE(p.head().tunnel);
  EXPECT_EQ(p.head().body_kind, BodyKind::kNone);
  // A failed CONNECT is an ordinary response.
  ASSERT_TRUE(
      parseResponse(p, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", Method::kConnect)
          .done());
  EXPECT_FALSE(p.head().tunnel);
  EXPECT_EQ(p.head().body_kind, BodyKind::kContentLength);
}

TEST(ResponseParser, StatusLineVariants) {
  ResponseParser p;
  ASSERT_TRUE(parseResponse(p, "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n").done());
  EXPECT_EQ(p.head().reason, "");
  ASSERT_TRUE(parseResponse(p, "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n").done());
  EXPECT_EQ(p.head().status, 404);
  ASSERT_TRUE(
      parseResponse(p, "HTTP/1.1 500 Internal\tServer Error \xff\r\nContent-Length: 0\r\n\r\n")
          .done());
  EXPECT_EQ(p.head().reason, "Internal\tServer Error \xff");
}

TEST(ResponseParser, SplitAtEveryOffset) {
  std::string buf =
      "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-3/10\r\nContent-Length: "
      "4\r\n\r\nabcd";
  size_t head_len = buf.size() - 4;
  for (size_t k = 0; k < head_len; ++k) {
    ResponseParser p;
    ParseResult first = parseResponse(p, std::string_view(buf).substr(0, k));
    ASSERT_TRUE(first.needMore()) << "prefix of " << k << ": " << describe(first);
    ParseResult second = parseResponse(p, buf);
    ASSERT_TRUE(second.done()) << "split at " << k << ": " << describe(second);
    EXPECT_EQ(second.consumed, head_len);
    EXPECT_EQ(p.head().status, 206);
    EXPECT_EQ(p.head().content_length, 4u);
  }
}

TEST(ResponseParser, RejectsWith502) {
  std::vector<std::string> cases = {
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
      "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
      "HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
      "HTTP/1.1 200 OK\r\nX : a\r\n\r\n",
      "HTTP/1.1 200 OK\nX: a\r\n\r\n",
      "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
      "HTTP/1.1 200 OK\r\nX: \x01\r\n\r\n",
      "\r\nHTTP/1.1 200 OK\r\n\r\n",
      "HTTP/1.1 20 OK\r\n\r\n",
      "HTTP/1.1 2000 OK\r\n\r\n",
      "HTTP/1.1 099 Low\r\n\r\n",
      "HTTP/1.1 600 High\r\n\r\n",
      "HTTP/1.1 200 O\x01K\r\n\r\n",
      "HTTP/1.1  200 OK\r\n\r\n",
      "HTTP/2.0 200 OK\r\n\r\n",
      "HTTP/1.2 200 OK\r\n\r\n",
      "HTTP/1.1\r\n\r\n",
      "ICY 200 OK\r\n\r\n",
      "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
  };
  for (const std::string& c : cases) {
    ResponseParser p;
    ParseResult r = parseResponse(p, c);
    ASSERT_TRUE(r.failed()) << escape(c) << ": expected Error(502), got " << describe(r);
    EXPECT_EQ(r.error.status, 502) << escape(c) << ": " << describe(r);
  }
}

TEST(ResponseParser, LimitsAre502) {
  ParseLimits limits;
  limits.max_head_bytes = 40;
  limits.max_headers = 2;
  ResponseParser p(limits);
  ParseResult r = parseResponse(p, "HTTP/1.1 200 OK\r\nX: " + std::string(40, 'a') + "\r\n\r\n");
  EXPECT_TRUE(r.failed() && r.error.status == 502) << describe(r);
  ResponseParser q(limits);
  r = parseResponse(q, "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n");
  EXPECT_TRUE(r.failed() && r.error.status == 502) << describe(r);
}

// ---------------------------------------------------------------------------------------------
// Chunked decoding

struct Decoded {
  std::string body;
  size_t consumed = 0;
  bool done = false;
  ParseError error;
  std::vector<std::pair<std::string, std::string>> trailers;
};

// Feeds `input` in pieces cut at `cuts` (sorted offsets); stops at done or error. Each piece is
// copied into its own buffer so views into earlier pieces cannot be used by mistake.
Decoded decodeIn(std::string_view input, const std::vector<size_t>& cuts,
                 ChunkedLimits limits = {}) {
  ChunkedDecoder d(limits);
  Decoded out;
  size_t pos = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(input.size());
  for (size_t end : ends) {
    std::string piece(input.substr(pos, end - pos));
    ChunkedDecoder::Step s = d.decode(piece, [&](std::string_view data) {
      EXPECT_GE(data.data(), piece.data()) << "data must point into the input";
      EXPECT_LE(data.data() + data.size(), piece.data() + piece.size());
      out.body += data;
    });
    out.consumed += s.consumed;
    if (s.failed()) {
      out.error = s.error;
      return out;
    }
    if (s.done) {
      out.done = true;
      for (const HeaderField& f : d.trailers()) out.trailers.emplace_back(f.name, f.value);
      return out;
    }
    EXPECT_EQ(s.consumed, piece.size()) << "an unfinished decoder consumes all input";
    pos = end;
  }
  return out;
}

TEST(ChunkedDecoder, Simple) {
  std::string in = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
  Decoded d = decodeIn(in, {});
  EXPECT_TRUE(d.done);
  EXPECT_EQ(d.body, "hello world");
  EXPECT_EQ(d.consumed, in.size());
}

TEST(ChunkedDecoder, StepReturnsSpansIntoInput) {
  std::string in = "3\r\nabc\r\n0\r\n\r\nNEXT";
  ChunkedDecoder d;
  ChunkedDecoder::Step s = d.next(in);
  EXPECT_EQ(s.data, "abc");
  EXPECT_EQ(s.data.data(), in.data() + 3);
  EXPECT_EQ(s.consumed, 6u);
  ChunkedDecoder::Step t = d.next(std::string_view(in).substr(s.consumed));
  EXPECT_TRUE(t.done);
  EXPECT_EQ(s.consumed + t.consumed, in.size() - 4) << "bytes of the next message stay unconsumed";
  EXPECT_TRUE(d.done());
  EXPECT_EQ(d.bodyBytes(), 3u);
}

TEST(ChunkedDecoder, ExtensionsAndTrailers) {
  std::string in =
      "A;name=value;quoted=\"a b;c\"\r\n0123456789\r\n"
      "1 ; ext\r\nx\r\n"
      "000\r\n"
      "Checksum: abc \r\nX-Trailer:\tt\r\n"
      "\r\n";
  Decoded d = decodeIn(in, {});
  ASSERT_TRUE(d.done) << "error: " << d.error.reason;
  EXPECT_EQ(d.body, "0123456789x");
  EXPECT_EQ(d.consumed, in.size());
  std::vector<std::pair<std::string, std::string>> want = {{"Checksum", "abc"}, {"X-Trailer", "t"}};
  EXPECT_EQ(d.trailers, want);
}

TEST(ChunkedDecoder, SplitAtEveryOffsetAndByteByByte) {
  std::string in =
      "4;e=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nTrailer-A: 1\r\nB: "
      "two\r\n\r\n";
  Decoded whole = decodeIn(in, {});
  ASSERT_TRUE(whole.done) << whole.error.reason;
  EXPECT_EQ(whole.body, "Wikipedia in\r\n\r\nchunks.");
  for (size_t a = 0; a <= in.size(); ++a) {
    Decoded d = decodeIn(in, {a});
    ASSERT_TRUE(d.done) << "split at " << a << ": " << d.error.reason;
    EXPECT_EQ(d.body, whole.body) << "split at " << a;
    EXPECT_EQ(d.trailers, whole.trailers) << "split at " << a;
    EXPECT_EQ(d.consumed, in.size());
  }
  for (size_t a = 0; a <= in.size(); a += 3)
    for (size_t b = a; b <= in.size(); b += 5) {
      Decoded d = decodeIn(in, {a, b});
      ASSERT_TRUE(d.done) << "split at " << a << "," << b;
      EXPECT_EQ(d.body, whole.body);
    }
  std::vector<size_t> every;
  for (size_t i = 1; i < in.size(); ++i) every.push_back(i);
  Decoded bytes = decodeIn(in, every);
  ASSERT_TRUE(bytes.done) << bytes.error.reason;
  EXPECT_EQ(bytes.body, whole.body);
  EXPECT_EQ(bytes.trailers, whole.trailers);
}

TEST(ChunkedDecoder, LargestChunkSize) {
  ChunkedDecoder d;
  ChunkedDecoder::Step s = d.next("7fffffffffffffff\r\nabc");
  ASSERT_FALSE(s.failed()) << s.error.reason;
  EXPECT_EQ(s.data, "abc");
  ChunkedDecoder e;
  s = e.next("00000000000000000000001\r\nx");
  ASSERT_FALSE(s.failed()) << "leading zeros are valid hex: " << s.error.reason;
  EXPECT_EQ(s.data, "x");
}

TEST(ChunkedDecoder, Rejects) {
  struct Case {
    std::string input;
    std::string reason;
  };
  ChunkedLimits small;
  small.max_chunk_line_bytes = 32;
  small.max_trailer_bytes = 32;
  small.max_trailer_fields = 2;
  std::vector<Case> cases = {
      {"g\r\n", "invalid chunk size"},
      {"\r\n", "invalid chunk size"},
      {"-1\r\n", "invalid chunk size"},
      {"0x5\r\nhello\r\n", "invalid chunk size"},
      {"+5\r\nhello\r\n", "invalid chunk size"},
      {" 5\r\nhello\r\n", "invalid chunk size"},
      {"8000000000000000\r\n", "too large"},
      {"ffffffffffffffffff\r\n", "too large"},
      {"5 \r\nhello\r\n", "whitespace after chunk size"},
      {"5\nhello\r\n", "bare LF"},
      {"5;ext\nhello\r\n", "bare LF"},
      {"5\rhello\r\n", "CR without LF"},
      {"5\r\nhelloX\r\n", "not followed by CRLF"},
      {"5\r\nhello\n0\r\n\r\n", "not followed by CRLF"},
      {"5\r\nhello\r0\r\n\r\n", "not followed by CRLF"},
      {"3;a=\x01\r\nabc\r\n", "chunk extension"},
      {"3;a=\x7f\r\nabc\r\n", "chunk extension"},
      {"3;" + std::string(40, 'x') + "\r\nabc\r\n", "chunk line too long"},
      {std::string(40, '0') + "3\r\nabc\r\n", "chunk line too long"},
      {"0\r\nX: 1\n\r\n", "bare LF"},
      {"0\r\n\n", "bare LF"},
      {"0\r\n\rX", "CR without LF"},
      {"0\r\n folded: x\r\n\r\n", "folding"},
      {"0\r\nX : 1\r\n\r\n", "whitespace between"},
      {"0\r\nX: a\rb\r\n\r\n", "header value"},
      {"0\r\nNoColon\r\n\r\n", "colon"},
      {"0\r\nX: " + std::string(40, 'a') + "\r\n\r\n", "trailer section too large"},
      {"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", "too many trailer fields"},
  };
  for (const Case& c : cases) {
    for (size_t cut : {size_t{0}, c.input.size() / 2}) {
      Decoded d = decodeIn(c.input, {cut}, small);
      EXPECT_FALSE(d.done) << escape(c.input) << " split at " << cut;
      EXPECT_EQ(d.error.status, 400)
          << escape(c.input) << " split at " << cut << ": expected an error, got none";
      EXPECT_NE(std::string_view(d.error.reason).find(c.reason), std::string_view::npos)
          << escape(c.input) << " split at " << cut << ": expected \"" << c.reason << "\", got \""
          << d.error.reason << "\"";
    }
  }
}

TEST(ChunkedDecoder, ErrorsAreStickyAndResetClears) {
  ChunkedDecoder d;
  EXPECT_TRUE(d.next("zz").failed());
  EXPECT_TRUE(d.next("5\r\nhello\r\n").failed());
  d.reset();
  ChunkedDecoder::Step s = d.next("5\r\nhello\r\n");
  EXPECT_FALSE(s.failed());
  EXPECT_EQ(s.data, "hello");
}

// ---------------------------------------------------------------------------------------------
// Encoding and serializing

TEST(ChunkEncoder, HeaderAndRoundTrip) {
  EXPECT_EQ(chunkHeader(0).view(), "0\r\n");
  EXPECT_EQ(chunkHeader(255).view(), "ff\r\n");
  EXPECT_EQ(chunkHeader(0x7fffffffffffffffull).view(), "7fffffffffffffff\r\n");
  EXPECT_EQ(chunkHeader(~0ull).view(), "ffffffffffffffff\r\n");

  std::string out;
  appendChunk(out, "hello");
  appendChunk(out, "");  // nothing: an empty chunk would end the body
  appendChunk(out, std::string(300, 'z'));
  HeaderField trailers[] = {{"Grpc-Status", "0", HeaderToken::kGrpcStatus}, {"X-T", "v"}};
  appendLastChunk(out, trailers);
  EXPECT_EQ(out.substr(0, 10), "5\r\nhello\r\n");
  Decoded d = decodeIn(out, {});
  ASSERT_TRUE(d.done) << d.error.reason;
  EXPECT_EQ(d.body, "hello" + std::string(300, 'z'));
  std::vector<std::pair<std::string, std::string>> want = {{"Grpc-Status", "0"}, {"X-T", "v"}};
  EXPECT_EQ(d.trailers, want);

  std::string last;
  appendLastChunk(last);
  EXPECT_EQ(last, "0\r\n\r\n");
}

TEST(Serializer, RequestRoundTrip) {
  std::string in =
      "POST /a/b?c=d HTTP/1.1\r\nHost: h\r\nX-A:  1 \r\nConnection: keep-alive\r\n"
      "Content-Length: 3\r\n\r\n";
  RequestParser p;
  ASSERT_TRUE(p.parse(in).done());
  HeadRewrite keep_all;
  keep_all.drop.clear();
  keep_all.drop_connection_nominated = false;
  std::string out;
  appendRequestHead(out, p.head(), keep_all);
  EXPECT_EQ(out,
            "POST /a/b?c=d HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nConnection: keep-alive\r\n"
            "Content-Length: 3\r\n\r\n");
  RequestParser q;
  ParseResult r = q.parse(out);
  ASSERT_TRUE(r.done()) << describe(r);
  EXPECT_EQ(fieldsOf(q.head()), fieldsOf(p.head()));
  EXPECT_EQ(q.head().target, p.head().target);
  EXPECT_EQ(q.head().method, p.head().method);
}

TEST(Serializer, ForwardingDropsHopByHopAndAddsExtra) {
  std::string in =
      "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Private\r\nKeep-Alive: 300\r\n"
      "X-Private: secret\r\nTE: trailers\r\nUpgrade: h2c\r\nProxy-Connection: x\r\n"
      "Accept: */*\r\nContent-Length: 7, 7\r\nContent-Length: 7\r\n\r\n";
  RequestParser p;
  ParseResult r = p.parse(in);
  ASSERT_TRUE(r.done()) << describe(r);
  HeaderField extra[] = {{"Via", "1.1 weft"}, {"X-Request-Id", "abc"}};
  HeadRewrite rw;
  rw.extra = extra;
  std::string out = "prefix|";
  appendRequestHead(out, p.head(), rw);
  EXPECT_EQ(out,
            "prefix|GET / HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nContent-Length: 7\r\n"
            "Via: 1.1 weft\r\nX-Request-Id: abc\r\n\r\n");
}

TEST(Serializer, OriginFormAndVersion) {
  struct Case {
    std::string line;
    std::string want;
  };
  std::vector<Case> cases = {
      {"GET http://h/p?q=1 HTTP/1.0", "GET /p?q=1 HTTP/1.1\r\n"},
      {"GET http://h HTTP/1.0", "GET / HTTP/1.1\r\n"},
      {"GET http://h?x HTTP/1.0", "GET /?x HTTP/1.1\r\n"},
      {"OPTIONS http://h HTTP/1.0", "OPTIONS * HTTP/1.1\r\n"},
      {"GET /already HTTP/1.0", "GET /already HTTP/1.1\r\n"},
  };
  for (const Case& c : cases) {
    std::string in = c.line + "\r\n\r\n";
    RequestParser p;
    ASSERT_TRUE(p.parse(in).done()) << c.line;
    HeadRewrite rw;
    rw.origin_form = true;
    rw.version = Version::kHttp11;
    std::string out;
    appendRequestHead(out, p.head(), rw);
    EXPECT_EQ(out, c.want + "\r\n") << c.line;
  }
}

TEST(Serializer, ResponseHeadAndBuilders) {
  std::string in = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nServer: up\r\n\r\n";
  ResponseParser p;
  ASSERT_TRUE(p.parse(in, Method::kGet).done());
  HeadRewrite rw;
  rw.drop.add(HeaderToken::kServer);
  HeaderField extra[] = {{"Server", "weft"}, {"Transfer-Encoding", "chunked"}};
  rw.extra = extra;
  std::string out;
  appendResponseHead(out, p.head(), rw);
  EXPECT_EQ(out, "HTTP/1.1 200 OK\r\nServer: weft\r\nTransfer-Encoding: chunked\r\n\r\n");

  std::string built;
  appendStatusLine(built, Version::kHttp11, 404, "Not Found");
  HeaderField fields[] = {{"Content-Length", "0"}};
  appendFields(built, fields);
  EXPECT_EQ(built, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
  std::string line;
  appendRequestLine(line, "GET", "/x", Version::kHttp10);
  EXPECT_EQ(line, "GET /x HTTP/1.0\r\n");
}

// ---------------------------------------------------------------------------------------------
// Header tokens

TEST(HeaderTokens, LookupIsCaseInsensitiveAndExact) {
  for (unsigned i = 1; i < static_cast<unsigned>(HeaderToken::kCount); ++i) {
    auto t = static_cast<HeaderToken>(i);
    std::string name(http::headerTokenName(t));
    ASSERT_FALSE(name.empty()) << "token " << i << " has no name";
    EXPECT_EQ(http::lookupHeaderToken(name), t) << name;
    std::string upper = name;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    EXPECT_EQ(http::lookupHeaderToken(upper), t) << upper;
    EXPECT_EQ(http::lookupHeaderToken(name.substr(1)), HeaderToken::kOther) << name;
    EXPECT_EQ(http::lookupHeaderToken(name + "x"), HeaderToken::kOther) << name;
    // Flipping bit 5 changes the case of a letter (same token) but turns '-' into CR and '2'
    // into 0x12 (another name): case folding must be exact, not a blanket `| 0x20`.
    for (size_t i = 0; i < name.size(); ++i) {
      std::string flipped = name;
      flipped[i] = static_cast<char>(flipped[i] ^ 0x20);
      bool letter = std::isalpha(static_cast<unsigned char>(name[i])) != 0;
      EXPECT_EQ(http::lookupHeaderToken(flipped), letter ? t : HeaderToken::kOther)
          << escape(flipped);
    }
  }
  EXPECT_EQ(http::lookupHeaderToken(""), HeaderToken::kOther);
  EXPECT_EQ(http::lookupHeaderToken("Content-Lengt"), HeaderToken::kOther);
  EXPECT_EQ(http::lookupHeaderToken("Content_Length"), HeaderToken::kOther);
  EXPECT_EQ(http::lookupHeaderToken("X-Forwarded-For"), HeaderToken::kXForwardedFor);
  EXPECT_EQ(http::lookupHeaderToken("TE"), HeaderToken::kTe);
  EXPECT_EQ(http::headerTokenName(HeaderToken::kOther), "");
}

TEST(HeaderTokens, Sets) {
  http::HeaderTokenSet s{HeaderToken::kHost};
  EXPECT_TRUE(s.contains(HeaderToken::kHost));
  EXPECT_FALSE(s.contains(HeaderToken::kOther));
  s.add(HeaderToken::kOther);
  EXPECT_FALSE(s.contains(HeaderToken::kOther)) << "kOther is never a member";
  s.remove(HeaderToken::kHost);
  EXPECT_TRUE(s.empty());
  EXPECT_TRUE(http::kHopByHopHeaders.contains(HeaderToken::kTransferEncoding));
  EXPECT_FALSE(http::kHopByHopHeaders.contains(HeaderToken::kContentLength));
}

}  // namespace
}  // namespace weft::http1
