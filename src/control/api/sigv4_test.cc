#include "control/api/sigv4.h"

#include <gtest/gtest.h>

namespace weft::control::sigv4 {
namespace {

// The AWS Signature Version 4 test suite's credentials, instant and scope.
constexpr const char* kKeyId = "AKIDEXAMPLE";
constexpr const char* kSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
constexpr const char* kDate = "20150830T123600Z";

SecretLookup exampleLookup() {
  return [](std::string_view id) -> std::optional<std::string> {
    if (id == kKeyId) return std::string(kSecret);
    return std::nullopt;
  };
}

struct Vector {
  const char* name;
  const char* method;
  const char* path;
  const char* query;
  std::vector<std::pair<std::string, std::string>> extra_headers;
  const char* body;
  const char* signed_headers;
  const char* signature;
};

// Published vectors (aws-sig-v4-test-suite), each verified with the Authorization header AWS
// publishes for it: verify() succeeding proves the canonical request is built byte for byte.
const std::vector<Vector>& vectors() {
  static const std::vector<Vector> v = {
      {"get-vanilla",
       "GET",
       "/",
       "",
       {},
       "",
       "host;x-amz-date",
       "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
      {"post-vanilla",
       "POST",
       "/",
       "",
       {},
       "",
       "host;x-amz-date",
       "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
      {"get-unreserved",
       "GET",
       "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
       "",
       {},
       "",
       "host;x-amz-date",
       "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"},
      {"get-slashes",
       "GET",
       "//example//",
       "",
       {},
       "",
       "host;x-amz-date",
       "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84"},
      {"get-vanilla-query-order-key-case",
       "GET",
       "/",
       "Param2=value2&Param1=value1",
       {},
       "",
       "host;x-amz-date",
       "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
      {"get-vanilla-query-order-value",
       "GET",
       "/",
       "Param1=value2&Param1=value1",
       {},
       "",
       "host;x-amz-date",
       "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694"},
      {"get-vanilla-utf8-query",
       "GET",
       "/",
       "\xe1\x88\xb4=bar",
       {},
       "",
       "host;x-amz-date",
       "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"},
      {"get-header-value-order",
       "GET",
       "/",
       "",
       {{"My-Header1", "value4"},
        {"My-Header1", "value1"},
        {"My-Header1", "value3"},
        {"My-Header1", "value2"}},
       "",
       "host;my-header1;x-amz-date",
       "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01"},
      {"get-header-key-duplicate",
       "GET",
       "/",
       "",
       {{"My-Header1", "value2"}, {"My-Header1", "value2"}, {"My-Header1", "value1"}},
       "",
       "host;my-header1;x-amz-date",
       "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"},
      {"get-header-value-trim",
       "GET",
       "/",
       "",
       {{"My-Header1", " value1"}, {"My-Header2", "\"a   b   c\""}},
       "",
       "host;my-header1;my-header2;x-amz-date",
       "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"},
      {"post-x-www-form-urlencoded",
       "POST",
       "/",
       "",
       {{"Content-Type", "application/x-www-form-urlencoded"}},
       "Param1=value1",
       "content-type;host;x-amz-date",
       "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"},
      {"post-sts-header-after",
       "GET",
       "/",
       "",
       {{"X-Amz-Security-Token",
         "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"}},
       "",
       "host;x-amz-date;x-amz-security-token",
       "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"},
  };
  return v;
}

Request vectorRequest(const Vector& v) {
  Request r;
  r.method = v.method;
  r.path = v.path;
  r.query = v.query;
  r.body = v.body;
  r.headers = {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", kDate}};
  for (const auto& h : v.extra_headers) r.headers.push_back(h);
  r.headers.emplace_back(
      "Authorization",
      std::string("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
                  "aws4_request, SignedHeaders=") +
          v.signed_headers + ", Signature=" + v.signature);
  return r;
}

TEST(SigV4Test, PublishedVectorsVerify) {
  for (const Vector& v : vectors()) {
    auto r = verify(vectorRequest(v), exampleLookup(), kDate);
    ASSERT_TRUE(r) << v.name
                   << ": expected the published signature to verify, got: " << r.error().message;
    EXPECT_EQ(r->access_key_id, kKeyId) << v.name;
    EXPECT_EQ(r->region, "us-east-1") << v.name;
    EXPECT_EQ(r->service, "service") << v.name;
  }
}

TEST(SigV4Test, PublishedVectorsFailWithOneBitChanged) {
  for (const Vector& v : vectors()) {
    Request r = vectorRequest(v);
    r.method = r.method == "GET" ? "PUT" : "GET";
    auto res = verify(r, exampleLookup(), kDate);
    ASSERT_FALSE(res) << v.name << ": expected a changed method to fail verification";
    EXPECT_EQ(res.error().code, kSignatureMismatch) << v.name << ": " << res.error().message;
  }
}

TEST(SigV4Test, CanonicalRequestOfGetVanilla) {
  Request r = vectorRequest(vectors()[0]);
  EXPECT_EQ(canonicalRequest(r, {"host", "x-amz-date"}),
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
            "host;x-amz-date\n"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(SigV4Test, CanonicalUriAndQuery) {
  struct Case {
    const char* path;
    const char* query;
    const char* want_uri;
    const char* want_query;
  };
  const Case cases[] = {
      {"", "", "/", ""},
      {"//example//", "", "/example/", ""},
      {"/a/./b/../c", "", "/a/c", ""},
      {"/example%20space/", "", "/example%2520space/", ""},  // AWS double-encodes (not S3)
      {"/v20190125/meshes/m-1_x", "limit=1&nextToken=a%2Fb%3D", "/v20190125/meshes/m-1_x",
       "limit=1&nextToken=a%2Fb%3D"},
      {"/", "b&a=1", "/", "a=1&b="},
      {"/", "q=a+b", "/", "q=a%2Bb"},
      {"/", "a=1=2", "/", "a=1%3D2"},
      {"/", "x=a.b&x=a%2Fb", "/", "x=a%2Fb&x=a.b"},
      {"/", "q=%zz", "/", "q=%25zz"},
  };
  for (const Case& c : cases) {
    Request r;
    r.method = "GET";
    r.path = c.path;
    r.query = c.query;
    std::string cr = canonicalRequest(r, {});
    std::string want = std::string("GET\n") + c.want_uri + "\n" + c.want_query + "\n";
    EXPECT_EQ(cr.substr(0, want.size()), want)
        << "path '" << c.path << "' query '" << c.query << "'";
  }
}

Request signedRequest(std::string body = "{\"meshName\":\"m1\"}") {
  Request r;
  r.method = "PUT";
  r.path = "/v20190125/meshes";
  r.query = "";
  r.body = std::move(body);
  r.headers = {{"Host", "127.0.0.1:7080"}, {"Content-Type", "application/json"}};
  sign(r, {kKeyId, kSecret, ""}, "us-west-2", "appmesh", kDate);
  return r;
}

TEST(SigV4Test, SignThenVerifyRoundTrips) {
  Request r = signedRequest();
  auto v = verify(r, exampleLookup(), kDate);
  ASSERT_TRUE(v) << v.error().message;
  EXPECT_EQ(v->access_key_id, kKeyId);
  EXPECT_EQ(v->region, "us-west-2");
  EXPECT_EQ(v->service, "appmesh");
  // Signing again replaces the earlier headers instead of adding a second set.
  sign(r, {kKeyId, kSecret, ""}, "us-west-2", "appmesh", kDate);
  int auth_headers = 0;
  for (const auto& [k, val] : r.headers) auth_headers += (k == "authorization");
  EXPECT_EQ(auth_headers, 1);
  EXPECT_TRUE(verify(r, exampleLookup(), kDate));
}

TEST(SigV4Test, SignWithSessionTokenSignsIt) {
  Request r;
  r.method = "GET";
  r.path = "/";
  r.headers = {{"host", "h"}};
  sign(r, {kKeyId, kSecret, "tok"}, "us-west-2", "weft", kDate);
  auto auth = parseAuthorization(r.headers.back().second);
  ASSERT_TRUE(auth);
  EXPECT_EQ(auth->signed_headers, (std::vector<std::string>{"host", "x-amz-content-sha256",
                                                            "x-amz-date", "x-amz-security-token"}));
  EXPECT_TRUE(verify(r, exampleLookup(), kDate));
}

TEST(SigV4Test, TamperedRequestsFail) {
  auto expectCode = [](const Request& r, int code, const char* what) {
    auto v = verify(r, exampleLookup(), kDate);
    ASSERT_FALSE(v) << what << ": expected failure";
    EXPECT_EQ(v.error().code, code) << what << ": " << v.error().message;
  };
  {
    Request r = signedRequest();
    r.body = "{\"meshName\":\"m2\"}";
    expectCode(r, kSignatureMismatch, "changed body");
  }
  {
    Request r = signedRequest();
    r.path = "/v20190125/meshes/x";
    expectCode(r, kSignatureMismatch, "changed path");
  }
  {
    Request r = signedRequest();
    r.query = "limit=5";
    expectCode(r, kSignatureMismatch, "added query");
  }
  {
    Request r = signedRequest();
    for (auto& [k, v] : r.headers)
      if (k == "Content-Type") v = "text/plain";
    expectCode(r, kSignatureMismatch, "changed signed header");
  }
  {
    Request r = signedRequest();
    std::erase_if(r.headers, [](const auto& kv) { return kv.first == "Content-Type"; });
    expectCode(r, kIncompleteSignature, "removed signed header");
  }
  {
    Request r = signedRequest();
    auto& auth = r.headers.back().second;
    auth.back() = auth.back() == '0' ? '1' : '0';
    expectCode(r, kSignatureMismatch, "changed signature");
  }
  {
    Request r = signedRequest();
    auto v = verify(
        r,
        [](std::string_view) -> std::optional<std::string> {
          return std::string("another-secret");
        },
        kDate);
    ASSERT_FALSE(v);
    EXPECT_EQ(v.error().code, kSignatureMismatch) << v.error().message;
  }
  {
    Request r = signedRequest();
    auto v = verify(
        r, [](std::string_view) -> std::optional<std::string> { return std::nullopt; }, kDate);
    ASSERT_FALSE(v);
    EXPECT_EQ(v.error().code, kUnknownAccessKey) << v.error().message;
  }
  {
    Request r = signedRequest();
    r.headers.pop_back();
    expectCode(r, kMissingAuthentication, "no authorization header");
  }
  {
    Request r = signedRequest();
    r.headers.back().second = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1";
    expectCode(r, kIncompleteSignature, "truncated authorization header");
  }
}

TEST(SigV4Test, ClockSkewOver15MinutesFails) {
  Request r = signedRequest();
  // 20150830T123600Z + 14 min and + 16 min; - 16 min.
  EXPECT_TRUE(verify(r, exampleLookup(), "20150830T125000Z"));
  auto late = verify(r, exampleLookup(), "20150830T125200Z");
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, kClockSkew);
  EXPECT_NE(late.error().message.find("Signature expired"), std::string::npos)
      << late.error().message;
  auto early = verify(r, exampleLookup(), "20150830T122000Z");
  ASSERT_FALSE(early);
  EXPECT_EQ(early.error().code, kClockSkew);
}

TEST(SigV4Test, UnsignedHostOrDateIsRejected) {
  Request r;
  r.method = "GET";
  r.path = "/";
  r.headers = {{"x-amz-date", kDate}};
  sign(r, {kKeyId, kSecret, ""}, "us-east-1", "service", kDate);  // no host header to sign
  auto v = verify(r, exampleLookup(), kDate);
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code, kIncompleteSignature) << v.error().message;
}

TEST(SigV4Test, ParseAuthorization) {
  auto a = parseAuthorization(
      "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/service/aws4_request, "
      "SignedHeaders=host;x-amz-date, Signature=" +
      std::string(64, 'a'));
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->access_key_id, "AK");
  EXPECT_EQ(a->date, "20150830");
  EXPECT_EQ(a->region, "us-east-1");
  EXPECT_EQ(a->service, "service");
  EXPECT_EQ(a->signed_headers, (std::vector<std::string>{"host", "x-amz-date"}));
  for (const char* bad :
       {"", "AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1 Credential=a",
        "AWS4-HMAC-SHA256 Credential=AK/2015/us/s/aws4_request, "
        "SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 Credential=AK/20150830/r/s/other, SignedHeaders=host, "
        "Signature=0000000000000000000000000000000000000000000000000000000000000000",
        "AWS4-HMAC-SHA256 Foo=bar"}) {
    auto r = parseAuthorization(bad);
    EXPECT_FALSE(r) << "expected '" << bad << "' to be rejected";
    if (!r) {
      EXPECT_EQ(r.error().code, kIncompleteSignature);
    }
  }
}

TEST(SigV4Test, AmzDate) {
  EXPECT_EQ(amzDate(1440938160), "20150830T123600Z");
  EXPECT_EQ(amzDate(0), "19700101T000000Z");
}

}  // namespace
}  // namespace weft::control::sigv4
