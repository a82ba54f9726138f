#include "control/api/api_router.h"

#include <gtest/gtest.h>

#include <stdexcept>

#include "control/api/sigv4.h"

namespace weft::control {
namespace {

constexpr const char* kKeyId = "WKIATESTKEY0000000001";
constexpr const char* kSecret = "test-secret";

class ApiRouterTest : public ::testing::Test {
 protected:
  ApiRouterTest()
      : router_(
            "us-west-2",
            [](std::string_view id) -> std::optional<KeyInfo> {
              if (id == kKeyId) return KeyInfo{kSecret, "111122223333"};
              return std::nullopt;
            },
            time_) {
    router_.addRoute([](std::string_view p) { return p.starts_with("/v20190125/"); }, "appmesh",
                     [this](const ApiRequest& r) {
                       last_ = r;
                       ApiResponse resp;
                       resp.body = "appmesh";
                       return resp;
                     });
    router_.addRoute([](std::string_view p) { return p.starts_with("/weft/v1/"); }, "",
                     [this](const ApiRequest& r) {
                       last_ = r;
                       if (r.path == "/weft/v1/throw") throw std::runtime_error("boom");
                       ApiResponse resp;
                       resp.body = "weft";
                       return resp;
                     });
  }

  std::string now() const {
    return sigv4::amzDate(
        std::chrono::duration_cast<std::chrono::seconds>(time_.systemNow().time_since_epoch())
            .count());
  }

  HttpRequest signedRequest(std::string method, std::string path, std::string query = "",
                            std::string body = "", std::string service = "appmesh",
                            std::string region = "us-west-2", std::string key = kKeyId,
                            std::string secret = kSecret) {
    sigv4::Request w{std::move(method),
                     std::move(path),
                     std::move(query),
                     {{"host", "127.0.0.1:7080"}, {"content-type", "application/json"}},
                     std::move(body)};
    sigv4::sign(w, {key, secret, ""}, region, service, now());
    HttpRequest r;
    r.method = w.method;
    r.path = w.path;
    r.query = w.query;
    r.body = w.body;
    for (auto& [k, v] : w.headers) {
      std::string lower = k;
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      r.headers.emplace_back(lower, v);
    }
    return r;
  }

  static std::string errorType(const ApiResponse& r) {
    for (const auto& [k, v] : r.headers)
      if (k == "x-amzn-ErrorType") return v;
    return "";
  }

  SimTimeSource time_;
  ApiRouter router_;
  ApiRequest last_;
};

TEST_F(ApiRouterTest, RoutesAuthenticatedRequestsWithDecodedPathAndQuery) {
  auto r = router_.handle(signedRequest("GET", "/v20190125/meshes/my%20mesh/virtualNodes",
                                        "limit=2&nextToken=a%2Fb%3D%3D&flag"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, "appmesh");
  EXPECT_EQ(last_.path, "/v20190125/meshes/my mesh/virtualNodes");
  ASSERT_EQ(last_.query.size(), 3u);
  EXPECT_EQ(last_.query[0], (std::pair<std::string, std::string>{"limit", "2"}));
  EXPECT_EQ(last_.query[1], (std::pair<std::string, std::string>{"nextToken", "a/b=="}));
  EXPECT_EQ(last_.query[2], (std::pair<std::string, std::string>{"flag", ""}));
  EXPECT_EQ(last_.access_key_id, kKeyId);
  EXPECT_EQ(last_.account_id, "111122223333");
  ASSERT_NE(last_.header("content-type"), nullptr);

  auto w = router_.handle(signedRequest("POST", "/weft/v1/stacks", "", "{}", "weft"));
  EXPECT_EQ(w.status, 200) << w.body;
  EXPECT_EQ(w.body, "weft");
}

TEST_F(ApiRouterTest, AuthenticationFailuresAreAwsShaped403s) {
  struct Case {
    const char* what;
    HttpRequest request;
    const char* type;
  };
  HttpRequest unsigned_req;
  unsigned_req.method = "GET";
  unsigned_req.path = "/v20190125/meshes";
  unsigned_req.headers = {{"host", "h"}};
  HttpRequest tampered = signedRequest("PUT", "/v20190125/meshes", "", "{\"meshName\":\"a\"}");
  tampered.body = "{\"meshName\":\"b\"}";
  HttpRequest garbage = signedRequest("GET", "/v20190125/meshes");
  for (auto& [k, v] : garbage.headers)
    if (k == "authorization") v = "AWS4-HMAC-SHA256 nonsense";
  std::vector<Case> cases;
  cases.push_back({"no signature", unsigned_req, "MissingAuthenticationTokenException"});
  cases.push_back({"unknown key",
                   signedRequest("GET", "/v20190125/meshes", "", "", "appmesh", "us-west-2",
                                 "WKIAUNKNOWN", kSecret),
                   "UnrecognizedClientException"});
  cases.push_back(
      {"wrong secret",
       signedRequest("GET", "/v20190125/meshes", "", "", "appmesh", "us-west-2", kKeyId, "wrong"),
       "InvalidSignatureException"});
  cases.push_back({"tampered body", tampered, "InvalidSignatureException"});
  cases.push_back({"malformed header", garbage, "IncompleteSignatureException"});
  cases.push_back({"wrong region",
                   signedRequest("GET", "/v20190125/meshes", "", "", "appmesh", "eu-central-1"),
                   "InvalidSignatureException"});
  cases.push_back({"wrong service for App Mesh",
                   signedRequest("GET", "/v20190125/meshes", "", "", "weft"),
                   "InvalidSignatureException"});
  for (const Case& c : cases) {
    auto r = router_.handle(c.request);
    EXPECT_EQ(r.status, 403) << c.what << ": " << r.body;
    EXPECT_EQ(errorType(r), c.type) << c.what << ": " << r.body;
  }
}

TEST_F(ApiRouterTest, ClockSkew) {
  HttpRequest r = signedRequest("GET", "/v20190125/meshes");
  time_.advance(std::chrono::minutes(16));
  auto resp = router_.handle(r);
  EXPECT_EQ(resp.status, 403);
  EXPECT_EQ(errorType(resp), "InvalidSignatureException");
  EXPECT_NE(resp.body.find("Signature expired"), std::string::npos) << resp.body;
}

TEST_F(ApiRouterTest, UnknownPathsAndBadEncoding) {
  auto r = router_.handle(signedRequest("GET", "/nothing/here"));
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(errorType(r), "UnknownOperationException");
  auto bad = router_.handle(signedRequest("GET", "/v20190125/meshes/%zz"));
  EXPECT_EQ(bad.status, 400) << bad.body;
  auto nul = router_.handle(signedRequest("GET", "/v20190125/meshes/a%00b"));
  EXPECT_EQ(nul.status, 400) << nul.body;
  auto badq = router_.handle(signedRequest("GET", "/v20190125/meshes", "limit=%4"));
  EXPECT_EQ(badq.status, 400) << badq.body;
}

TEST_F(ApiRouterTest, HandlerExceptionBecomes500) {
  auto r = router_.handle(signedRequest("GET", "/weft/v1/throw", "", "", "weft"));
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(errorType(r), "InternalServerErrorException");
}

// Regression (review item 4): SigV4 canonicalization removes dot and empty segments, so a path
// with them would be signed as one path and routed as another; they are refused before verifying.
TEST_F(ApiRouterTest, DotAndEmptySegmentsAreRefusedBeforeVerifying) {
  for (const char* path :
       {"/v20190125/meshes/a/../b", "/v20190125/meshes/./a", "/v20190125//meshes",
        "/v20190125/meshes/%2E%2E", "/v20190125/meshes/%2e"}) {
    auto r = router_.handle(signedRequest("GET", path));
    EXPECT_EQ(r.status, 400) << path << ": expected 400, got " << r.status << " " << r.body;
    EXPECT_EQ(errorType(r), "BadRequestException") << path;
    auto head = router_.checkHead(signedRequest("GET", path));
    ASSERT_TRUE(head.refuse) << path << ": checkHead must refuse it too";
    EXPECT_EQ(head.refuse->status, 400) << path;
  }
  auto trailing = router_.handle(signedRequest("GET", "/weft/v1/stacks/"));
  EXPECT_EQ(trailing.status, 200) << "a trailing '/' is allowed: " << trailing.body;
}

// Regression (review item 3): the raw path is split first, then each segment decoded, so an
// encoded '/' stays inside its segment.
TEST_F(ApiRouterTest, EncodedSlashStaysInItsSegment) {
  auto r = router_.handle(signedRequest("GET", "/v20190125/meshes/a%2Fb/virtualNodes"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(last_.path_segments,
            (std::vector<std::string>{"v20190125", "meshes", "a/b", "virtualNodes"}));
  EXPECT_EQ(last_.segments(), last_.path_segments);
}

// Regression (review item 1): the head alone is authenticated as far as it can be.
TEST_F(ApiRouterTest, CheckHeadAuthenticatesWithoutTheBody) {
  router_.addLargeBodyPrefix("/weft/v1/stacks", 8 << 20);
  HttpRequest good = signedRequest("PUT", "/v20190125/meshes", "", "{\"meshName\":\"a\"}");
  good.body.clear();  // the head as the server sees it before the body
  auto ok = router_.checkHead(good);
  EXPECT_FALSE(ok.refuse) << ok.refuse->body;
  EXPECT_EQ(ok.max_body_bytes, 0u) << "default limit on App Mesh paths";
  EXPECT_EQ(
      router_.checkHead(signedRequest("PUT", "/weft/v1/stacks/s", "", "{}", "weft")).max_body_bytes,
      8u << 20);

  HttpRequest none;
  none.method = "PUT";
  none.path = "/v20190125/meshes";
  none.headers = {{"host", "h"}, {"content-length", "8000000"}};
  auto r = router_.checkHead(none);
  ASSERT_TRUE(r.refuse);
  EXPECT_EQ(errorType(*r.refuse), "MissingAuthenticationTokenException");

  auto unknown = router_.checkHead(signedRequest("GET", "/v20190125/meshes", "", "", "appmesh",
                                                 "us-west-2", "WKIAUNKNOWN", kSecret));
  ASSERT_TRUE(unknown.refuse);
  EXPECT_EQ(errorType(*unknown.refuse), "UnrecognizedClientException");

  HttpRequest garbage = signedRequest("GET", "/v20190125/meshes");
  for (auto& [k, v] : garbage.headers)
    if (k == "authorization") v = "AWS4-HMAC-SHA256 nonsense";
  auto g = router_.checkHead(garbage);
  ASSERT_TRUE(g.refuse);
  EXPECT_EQ(errorType(*g.refuse), "IncompleteSignatureException");

  HttpRequest old = signedRequest("GET", "/v20190125/meshes");
  time_.advance(std::chrono::minutes(16));
  auto skew = router_.checkHead(old);
  ASSERT_TRUE(skew.refuse);
  EXPECT_EQ(errorType(*skew.refuse), "InvalidSignatureException");
}

// Regression (review item 2): deeply nested JSON is refused before any handler parses it.
TEST_F(ApiRouterTest, DeeplyNestedJsonBodiesAreRefused) {
  std::string deep = std::string(65, '[') + std::string(65, ']');
  auto r = router_.handle(signedRequest("POST", "/weft/v1/credentials", "", deep, "weft"));
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("nested more than 64"), std::string::npos) << r.body;
  std::string ok = std::string(64, '[') + std::string(64, ']');
  EXPECT_EQ(router_.handle(signedRequest("POST", "/weft/v1/x", "", ok, "weft")).status, 200);
}

TEST(DecodeTest, PathAndQuery) {
  EXPECT_EQ(*decodePath("/a%2Fb%20c"), "/a/b c");
  EXPECT_FALSE(decodePath("/a%"));
  EXPECT_FALSE(decodePath("/a%2"));
  EXPECT_FALSE(decodePath("/a%g0"));
  auto q = decodeQuery("a=1&&b=x+y&c=%3D&=v");
  ASSERT_TRUE(q);
  ASSERT_EQ(q->size(), 4u);
  EXPECT_EQ((*q)[1].second, "x+y");
  EXPECT_EQ((*q)[2].second, "=");
  EXPECT_EQ((*q)[3].first, "");
  EXPECT_TRUE(decodeQuery("")->empty());
}

}  // namespace
}  // namespace weft::control

namespace weft::control {
namespace {

TEST(ApiRouterTargetTest, JsonRpcRequestsRouteByTargetPrefixBeforePaths) {
  SimTimeSource time;
  ApiRouter router(
      "us-west-2",
      [](std::string_view id) -> std::optional<KeyInfo> {
        if (id == "AKIDTARGET") return KeyInfo{"secret", "111122223333"};
        return std::nullopt;
      },
      time);
  std::string hit;
  router.addRoute([](std::string_view) { return true; }, "",
                  [&](const ApiRequest&) {
                    hit = "path";
                    return ApiResponse{};
                  });
  router.addTargetRoute("ACMPrivateCA.", "acm-pca", [&](const ApiRequest& r) {
    hit = "pca:" + *r.header("x-amz-target");
    return ApiResponse{};
  });
  auto request = [&](std::string target, std::string service) {
    sigv4::Request w{"POST", "/", "", {{"host", "127.0.0.1:7080"}}, "{}"};
    if (!target.empty()) w.headers.emplace_back("x-amz-target", target);
    auto secs =
        std::chrono::duration_cast<std::chrono::seconds>(time.systemNow().time_since_epoch())
            .count();
    sigv4::sign(w, {"AKIDTARGET", "secret", ""}, "us-west-2", service, sigv4::amzDate(secs));
    HttpRequest r{w.method, w.path, w.query, {}, w.body};
    for (auto& [k, v] : w.headers) {
      std::string lower = k;
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      r.headers.emplace_back(lower, v);
    }
    return router.handle(r);
  };
  EXPECT_EQ(request("ACMPrivateCA.IssueCertificate", "acm-pca").status, 200);
  EXPECT_EQ(hit, "pca:ACMPrivateCA.IssueCertificate");
  EXPECT_EQ(request("", "weft").status, 200);
  EXPECT_EQ(hit, "path");
  auto unknown = request("Nope_2020.DoThing", "weft");
  EXPECT_EQ(unknown.status, 400);
  EXPECT_NE(unknown.body.find("Nope_2020.DoThing"), std::string::npos) << unknown.body;
  EXPECT_EQ(request("ACMPrivateCA.IssueCertificate", "appmesh").status, 403)
      << "the credential scope must name the route's service";
}

}  // namespace
}  // namespace weft::control
