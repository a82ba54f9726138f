#include "proxy/exchange.h"

#include <gtest/gtest.h>

#include <string>

namespace weft::proxy {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(GrpcStatusForHttp, EnvoyMapping) {
  EXPECT_EQ(grpcStatusForHttp(400), 13) << "400 -> INTERNAL";
  EXPECT_EQ(grpcStatusForHttp(401), 16) << "401 -> UNAUTHENTICATED";
  EXPECT_EQ(grpcStatusForHttp(403), 7) << "403 -> PERMISSION_DENIED";
  EXPECT_EQ(grpcStatusForHttp(404), 12) << "404 -> UNIMPLEMENTED";
  EXPECT_EQ(grpcStatusForHttp(429), 14) << "429 -> UNAVAILABLE";
  EXPECT_EQ(grpcStatusForHttp(502), 14) << "502 -> UNAVAILABLE";
  EXPECT_EQ(grpcStatusForHttp(503), 14) << "503 -> UNAVAILABLE";
  EXPECT_EQ(grpcStatusForHttp(504), 4) << "504 -> DEADLINE_EXCEEDED";
  EXPECT_EQ(grpcStatusForHttp(500), 2) << "others -> UNKNOWN";
  EXPECT_EQ(grpcStatusForHttp(413), 2);
}

TEST(ParseGrpcTimeout, Units) {
  EXPECT_EQ(parseGrpcTimeout("1H"), Duration(std::chrono::hours(1)));
  EXPECT_EQ(parseGrpcTimeout("2M"), Duration(std::chrono::minutes(2)));
  EXPECT_EQ(parseGrpcTimeout("3S"), Duration(seconds(3)));
  EXPECT_EQ(parseGrpcTimeout("250m"), Duration(milliseconds(250)));
  EXPECT_EQ(parseGrpcTimeout("99999999u"), Duration(std::chrono::microseconds(99999999)));
  EXPECT_EQ(parseGrpcTimeout("5n"), Duration(5));
}

TEST(ParseGrpcTimeout, Malformed) {
  EXPECT_FALSE(parseGrpcTimeout("")) << "empty";
  EXPECT_FALSE(parseGrpcTimeout("S")) << "no digits";
  EXPECT_FALSE(parseGrpcTimeout("10")) << "no unit";
  EXPECT_FALSE(parseGrpcTimeout("10s")) << "lower-case s is not a unit";
  EXPECT_FALSE(parseGrpcTimeout("123456789S")) << "more than 8 digits";
  EXPECT_FALSE(parseGrpcTimeout("-1S")) << "sign";
  EXPECT_FALSE(parseGrpcTimeout("1 S")) << "space";
}

TEST(ParseGrpcStatus, Values) {
  EXPECT_EQ(parseGrpcStatus("0"), 0);
  EXPECT_EQ(parseGrpcStatus("14"), 14);
  EXPECT_EQ(parseGrpcStatus(""), -1);
  EXPECT_EQ(parseGrpcStatus("1x"), -1);
  EXPECT_EQ(parseGrpcStatus("-1"), -1);
}

TEST(IsGrpcContentType, Variants) {
  EXPECT_TRUE(isGrpcContentType("application/grpc"));
  EXPECT_TRUE(isGrpcContentType("application/grpc+proto"));
  EXPECT_TRUE(isGrpcContentType("Application/GRPC;charset=utf-8"));
  EXPECT_FALSE(isGrpcContentType("application/grpc-web"));
  EXPECT_FALSE(isGrpcContentType("application/json"));
  EXPECT_FALSE(isGrpcContentType("application/grp"));
}

// Parses `head` (a complete request head) and returns upgradeToForward's answer.
std::string upgradeOf(const std::string& head) {
  http1::RequestParser p(http1::ParseLimits{64 << 10, 100});
  http1::ParseResult r = p.parse(head);
  EXPECT_TRUE(r.done()) << "test request did not parse: " << head;
  if (!r.done()) return "<unparsed>";
  return std::string(upgradeToForward(p.head()));
}

TEST(UpgradeToForward, WebSocketHandshakeIsForwarded) {
  EXPECT_EQ(upgradeOf("GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                      "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n"),
            "websocket");
  EXPECT_EQ(upgradeOf("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, upgrade\r\n"
                      "Upgrade: foo/2\r\nContent-Length: 0\r\n\r\n"),
            "foo/2")
      << "an empty Content-Length body is no body";
}

TEST(UpgradeToForward, PlainRequestsAreNotUpgrades) {
  EXPECT_EQ(upgradeOf("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"), "")
      << "Upgrade without Connection: upgrade";
  EXPECT_EQ(upgradeOf("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n"), "")
      << "Connection: upgrade without Upgrade";
  EXPECT_EQ(upgradeOf("GET / HTTP/1.0\r\nHost: a\r\nConnection: upgrade\r\n"
                      "Upgrade: websocket\r\n\r\n"),
            "")
      << "HTTP/1.0 has no Upgrade";
  EXPECT_EQ(upgradeOf("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                      "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"),
            "")
      << "h2c is not passed on";
  EXPECT_EQ(upgradeOf("POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n"
                      "Upgrade: websocket\r\nContent-Length: 5\r\n\r\n"),
            "")
      << "a request with a body is proxied as a plain request";
  EXPECT_EQ(upgradeOf("POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n"
                      "Upgrade: websocket\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "");
}

TEST(ForEachH2ResponseField, ReplacesServerAndAddsServiceTime) {
  ListenerInfo li;
  li.server_name = "weft";
  std::vector<http::HeaderField> fields = {
      {"content-type", "application/grpc", http::HeaderToken::kContentType},
      {"server", "backend", http::HeaderToken::kServer},
      {"x-weft-upstream-service-time", "99", http::HeaderToken::kOther},
      {"grpc-status", "0", http::HeaderToken::kGrpcStatus}};
  std::string scratch;
  std::vector<std::pair<std::string, std::string>> out;
  auto emit = [&](std::string_view n, std::string_view v) { out.emplace_back(n, v); };
  forEachH2ResponseField(fields, li, 7, scratch, emit);
  std::vector<std::pair<std::string, std::string>> want = {{"content-type", "application/grpc"},
                                                           {"grpc-status", "0"},
                                                           {"server", "weft"},
                                                           {"x-weft-upstream-service-time", "7"}};
  EXPECT_EQ(out, want);
  out.clear();
  forEachH2ResponseField(fields, li, -1, scratch, emit);  // trailers: nothing added
  EXPECT_EQ(out.size(), 2u);
  li.preserve_upstream_server = true;
  out.clear();
  forEachH2ResponseField(fields, li, 1, scratch, emit);
  EXPECT_EQ(out[1], (std::pair<std::string, std::string>{"server", "backend"}))
      << "preserve_upstream_server keeps the upstream's server and adds none";
  EXPECT_EQ(out.size(), 4u);
}

TEST(UpstreamH2Request, ViewPointsAtTheOwnedStrings) {
  UpstreamH2Request r;
  r.method = "POST";
  r.scheme = "http";
  r.authority = "svc:8080";
  r.path = "/pkg.Svc/Call";
  r.fields = {{"te", "trailers"}, {"content-type", "application/grpc"}};
  http2::RequestHeaders v = r.view();
  EXPECT_EQ(v.method, "POST");
  EXPECT_EQ(v.authority, "svc:8080");
  EXPECT_EQ(v.path, "/pkg.Svc/Call");
  ASSERT_EQ(v.fields.size(), 2u);
  EXPECT_EQ(v.fields[0].name, "te");
  EXPECT_EQ(v.fields[1].value, "application/grpc");
}

}  // namespace
}  // namespace weft::proxy
