// The pure parts of `weft demo`: the page's lines, the state file, which app a host runs, and
// the HTTP answers its client reads. The whole sequence runs for real in
// test/integration/test_demo.py.
#include "demo/demo.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "demo/http_client.h"
#include "demo/page.h"
#include "demo/state.h"

namespace weft::demo {
namespace {

constexpr char kPage[] =
    "<!DOCTYPE html><html><head><meta http-equiv=\"refresh\" content=\"3\"></head><body>\n"
    "<p id=\"frontend\">Rails frontend: Hello! from 198.18.1.10 in us-west-2a</p>\n"
    "<p id=\"nodejs\">Node.js backend: Hello! from 198.19.2.30 in us-west-2b</p>\n"
    "<p id=\"crystal\">\n  Crystal backend: Hello! from 198.18.2.20 in us-west-2b &amp; co\n</p>\n"
    "</body></html>\n";

TEST(DemoPage, ReadsTheThreeLines) {
  PageLines p = parsePage(kPage);
  EXPECT_EQ(p.frontend, "Rails frontend: Hello! from 198.18.1.10 in us-west-2a");
  EXPECT_EQ(p.nodejs, "Node.js backend: Hello! from 198.19.2.30 in us-west-2b");
  EXPECT_EQ(p.crystal, "Crystal backend: Hello! from 198.18.2.20 in us-west-2b & co")
      << "entities decoded, surrounding space trimmed";
  EXPECT_TRUE(pageComplete(p));
  EXPECT_EQ(pageProblems(p), "");
  EXPECT_EQ(lineAddress(p.nodejs), "198.19.2.30");
  EXPECT_EQ(lineAddress("no backend found"), "");
}

TEST(DemoPage, SaysWhatIsMissing) {
  std::string html = kPage;
  html.replace(html.find("Node.js backend: Hello! from 198.19.2.30 in us-west-2b"),
               std::string("Node.js backend: Hello! from 198.19.2.30 in us-west-2b").size(),
               "no backend found");
  PageLines p = parsePage(html);
  EXPECT_FALSE(pageComplete(p));
  EXPECT_EQ(pageProblems(p), "nodejs: no backend found");
  PageLines none = parsePage("no healthy upstream");
  EXPECT_EQ(pageProblems(none), "frontend: missing; nodejs: missing; crystal: missing");
}

TEST(DemoHosts, AppFromTheHostName) {
  EXPECT_EQ(nodeForHost("frontend-1"), "frontend");
  EXPECT_EQ(nodeForHost("frontend"), "frontend");
  EXPECT_EQ(nodeForHost("crystal-12"), "crystal");
  EXPECT_EQ(nodeForHost("nodejs-2"), "nodejs");
  EXPECT_EQ(nodeForHost("frontendx"), "") << "the name must be NODE or NODE-...";
  EXPECT_EQ(nodeForHost("probe"), "");
  EXPECT_EQ(nodeForHost("outsider"), "");
}

TEST(DemoState, RoundTrips) {
  DemoState s;
  s.name = "crossvpc";
  s.complete = true;
  s.created_at = 1764291832;
  s.topology = "/x/lab.yaml";
  s.lab_state_dir = "/run/weft/demo/lab";
  s.data_dir = "/run/weft/demo/data";
  s.api_url = "http://127.0.0.1:7080";
  s.stream_port = 7081;
  s.dns_port = 7053;
  s.gateway_port = 8080;
  s.gateway_url = "http://127.0.0.1:8080/";
  s.processes = {{"server", "", "", 42, 1234567, "/l/server.log"},
                 {"workload", "frontend-1", "mesh/m/virtualNode/frontend", 43, 99, "/l/f.log"}};
  auto back = stateFromJson(stateToJson(s));
  ASSERT_TRUE(back.has_value()) << back.error().message;
  EXPECT_EQ(stateToJson(*back), stateToJson(s));
  EXPECT_EQ(back->processes.size(), 2u);
  EXPECT_EQ(back->processes[1].host, "frontend-1");
  EXPECT_EQ(back->processes[0].start_ticks, 1234567u);
  EXPECT_TRUE(back->complete);
}

TEST(DemoState, RefusesWhatItCannotRead) {
  EXPECT_FALSE(stateFromJson("not json").has_value());
  EXPECT_FALSE(stateFromJson("[]").has_value());
  auto v2 = stateFromJson(R"({"version": 2, "name": "x"})");
  ASSERT_FALSE(v2.has_value());
  EXPECT_NE(v2.error().message.find("version 2"), std::string::npos) << v2.error().message;
  EXPECT_FALSE(stateFromJson(R"({"version": 1})").has_value()) << "a state needs its name";
}

TEST(DemoHttp, ParsesLengthChunkedAndCloseDelimitedBodies) {
  auto a = parseResponse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello");
  ASSERT_TRUE(a.has_value()) << a.error().message;
  EXPECT_EQ(a->status, 200);
  EXPECT_EQ(a->body, "hello");
  ASSERT_EQ(a->headers.size(), 2u);
  EXPECT_EQ(a->headers[0].first, "content-length");

  auto b = parseResponse(
      "HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n"
      "4\r\nno h\r\n0f;x=y\r\nealthy upstream\r\n0\r\n\r\n");
  ASSERT_TRUE(b.has_value()) << b.error().message;
  EXPECT_EQ(b->status, 503);
  EXPECT_EQ(b->body, "no healthy upstream");

  auto c = parseResponse("HTTP/1.0 200 OK\r\n\r\nuntil close");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->body, "until close");

  EXPECT_FALSE(parseResponse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort").has_value());
  EXPECT_FALSE(parseResponse("HTTP/1.1 200 OK\r\n").has_value()) << "no end of head";
  EXPECT_FALSE(parseResponse("SSH-2.0-OpenSSH\r\n\r\n").has_value());
  EXPECT_FALSE(
      parseResponse("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n").has_value());
}

TEST(DemoHttp, ConnectFailureIsAnError) {
  // Port 1 on loopback: nothing listens there on a test machine (refused at once).
  auto r = httpRequest("127.0.0.1", 1, "GET", "/", {}, "", std::chrono::seconds(2));
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("http://127.0.0.1:1"), std::string::npos) << r.error().message;
  EXPECT_FALSE(httpRequest("not-an-ip", 80, "GET", "/", {}, "", std::chrono::seconds(1)));
}

}  // namespace
}  // namespace weft::demo
