#include "cli/client.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <thread>

namespace weft::cli {
namespace {

EnvLookup envOf(std::map<std::string, std::string> vars) {
  return [vars](const char* name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(ClientConfigTest, Endpoints) {
  auto a = parseEndpoint("http://127.0.0.1:7080");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 7080);
  EXPECT_EQ(a->host_header, "127.0.0.1:7080");
  auto b = parseEndpoint("http://[::1]:9/x");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->host, "::1");
  EXPECT_EQ(b->host_header, "[::1]:9");
  auto c = parseEndpoint("localhost");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->port, 80);
  EXPECT_EQ(c->host_header, "localhost");
  EXPECT_FALSE(parseEndpoint("https://x"));
  EXPECT_FALSE(parseEndpoint("http://x:99999"));
  EXPECT_FALSE(parseEndpoint("http://:80"));
  EXPECT_FALSE(parseEndpoint("ftp://x"));
}

TEST(ClientConfigTest, CredentialsFile) {
  auto p = parseCredentialsFile(
      "# c\n[default]\naws_access_key_id = A\naws_secret_access_key=S\n\n[profile weft]\n"
      " aws_access_key_id = W \n");
  EXPECT_EQ(p["default"]["aws_access_key_id"], "A");
  EXPECT_EQ(p["default"]["aws_secret_access_key"], "S");
  EXPECT_EQ(p["weft"]["aws_access_key_id"], "W");
}

class ResolveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    file_ = ::testing::TempDir() + "/weft-cli-creds-" + std::to_string(::getpid());
    std::ofstream(file_) << "[weft]\naws_access_key_id = WK\naws_secret_access_key = WS\n"
                            "[dev]\naws_access_key_id = DK\naws_secret_access_key = DS\n"
                            "aws_session_token = DT\n";
  }
  void TearDown() override { std::remove(file_.c_str()); }
  std::string file_;
};

TEST_F(ResolveTest, Precedence) {
  // Defaults; no [default] profile, so the [weft] one.
  auto d = resolveConfig({}, envOf({{"AWS_SHARED_CREDENTIALS_FILE", file_}}));
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->endpoint_url, "http://127.0.0.1:7080");
  EXPECT_EQ(d->region, "us-west-2");
  EXPECT_EQ(d->credentials.access_key_id, "WK");
  // Environment keys beat the file; WEFT_ENDPOINT and AWS_REGION apply.
  auto e = resolveConfig({}, envOf({{"AWS_SHARED_CREDENTIALS_FILE", file_},
                                    {"AWS_ACCESS_KEY_ID", "EK"},
                                    {"AWS_SECRET_ACCESS_KEY", "ES"},
                                    {"AWS_SESSION_TOKEN", "ET"},
                                    {"WEFT_ENDPOINT", "http://h:1"},
                                    {"AWS_DEFAULT_REGION", "eu-west-1"},
                                    {"AWS_REGION", "eu-central-1"}}));
  ASSERT_TRUE(e) << e.error().message;
  EXPECT_EQ(e->credentials.access_key_id, "EK");
  EXPECT_EQ(e->credentials.session_token, "ET");
  EXPECT_EQ(e->endpoint.host, "h");
  EXPECT_EQ(e->region, "eu-central-1");
  // --profile beats the environment; flags beat variables.
  auto f = resolveConfig({"http://x:2", "dev", "ap-south-1"},
                         envOf({{"AWS_SHARED_CREDENTIALS_FILE", file_},
                                {"AWS_ACCESS_KEY_ID", "EK"},
                                {"AWS_SECRET_ACCESS_KEY", "ES"},
                                {"WEFT_ENDPOINT", "http://h:1"}}));
  ASSERT_TRUE(f) << f.error().message;
  EXPECT_EQ(f->credentials.access_key_id, "DK");
  EXPECT_EQ(f->credentials.session_token, "DT");
  EXPECT_EQ(f->endpoint.port, 2);
  EXPECT_EQ(f->region, "ap-south-1");
  // AWS_PROFILE.
  auto g =
      resolveConfig({}, envOf({{"AWS_SHARED_CREDENTIALS_FILE", file_}, {"AWS_PROFILE", "dev"}}));
  ASSERT_TRUE(g);
  EXPECT_EQ(g->credentials.access_key_id, "DK");
  auto missing = resolveConfig({"", "nope", ""}, envOf({{"AWS_SHARED_CREDENTIALS_FILE", file_}}));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message, "no profile [nope] in " + file_);
  auto nofile = resolveConfig({}, envOf({{"AWS_SHARED_CREDENTIALS_FILE", file_ + ".x"}}));
  ASSERT_FALSE(nofile);
  EXPECT_NE(nofile.error().message.find("cannot read"), std::string::npos);
}

// A one-shot HTTP server on 127.0.0.1:0 answering a canned response.
class CannedServer {
 public:
  explicit CannedServer(std::string response) : response_(std::move(response)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(fd_, 1), 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      char buf[8192];
      while (request_.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        request_.append(buf, static_cast<size_t>(n));
      }
      size_t head_end = request_.find("\r\n\r\n") + 4;
      size_t cl = request_.find("content-length: ");
      size_t want = cl == std::string::npos ? 0 : std::stoul(request_.substr(cl + 16));
      while (request_.size() < head_end + want) {
        ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        request_.append(buf, static_cast<size_t>(n));
      }
      for (char ch : response_) ::send(c, &ch, 1, 0);  // byte by byte: exercises re-parsing
      ::close(c);
    });
  }
  ~CannedServer() {
    thread_.join();
    ::close(fd_);
  }
  uint16_t port() const { return port_; }
  const std::string& request() const { return request_; }  // after the response was read

 private:
  std::string response_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::string request_;
};

ClientConfig configFor(uint16_t port) {
  ClientConfig c;
  c.endpoint_url = "http://127.0.0.1:" + std::to_string(port);
  c.endpoint = *parseEndpoint(c.endpoint_url);
  c.credentials = {"AKID", "SECRET", ""};
  c.region = "us-west-2";
  return c;
}

TEST(HttpTransportTest, ChunkedResponseAndSignedRequest) {
  std::string resp =
      "HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: application/json\r\n\r\n"
      "5\r\n{\"a\":\r\n3;ext=1\r\n 1}\r\n0\r\n\r\n";
  std::string request;
  {
    CannedServer server(resp);
    HttpTransport t(configFor(server.port()));
    auto r = t.send("PUT", "/v20190125/meshes", "x=1", R"({"meshName":"m"})", "appmesh");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "{\"a\": 1}");
    ASSERT_NE(r->header("content-type"), nullptr);
    EXPECT_EQ(*r->header("content-type"), "application/json");
  }
}

TEST(HttpTransportTest, ErrorsBecomeApiErrors) {
  std::string body = R"({"message":"Mesh m not found"})";
  std::string resp =
      "HTTP/1.1 404 Not Found\r\nx-amzn-ErrorType: NotFoundException:http://x\r\n"
      "content-length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  CannedServer server(resp);
  HttpTransport t(configFor(server.port()));
  ApiClient api(t);
  auto r = api.call("GET", "/v20190125/meshes/m");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, 404);
  EXPECT_EQ(r.error().message, "NotFoundException: Mesh m not found");
}

TEST(HttpTransportTest, ConnectionRefusedSaysWhere) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  uint16_t port = ntohs(addr.sin_port);
  ::close(fd);  // bound then closed: nothing listens there
  HttpTransport t(configFor(port));
  auto r = t.send("GET", "/", "", "", "weft");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("cannot connect to weft server at http://127.0.0.1:"),
            std::string::npos)
      << r.error().message;
}

}  // namespace
}  // namespace weft::cli
