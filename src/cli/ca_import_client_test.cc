// The CLI side of `weft ca import` and `weft ca issue --validity-days` (ca_client.h): what goes
// on the wire.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cli/ca_client.h"

namespace weft::cli {
namespace {

// Records each request and answers the next scripted response.
class RecordingTransport final : public Transport {
 public:
  struct Sent {
    std::string method, path, service, target;
    Value body;
  };
  using Transport::send;
  Result<HttpResponse> send(std::string_view method, std::string_view path, std::string_view,
                            std::string_view body, std::string_view service,
                            const HeaderList& headers) override {
    Sent s{std::string(method), std::string(path), std::string(service), "", Value()};
    for (const auto& [k, v] : headers)
      if (k == "x-amz-target") s.target = v;
    if (auto parsed = parseJson(body)) s.body = *parsed;
    sent.push_back(std::move(s));
    if (answers.empty()) return makeError("no scripted answer");
    HttpResponse r = answers.front();
    answers.erase(answers.begin());
    return r;
  }
  std::vector<Sent> sent;
  std::vector<HttpResponse> answers;
};

constexpr char kCa[] =
    "arn:aws:acm-pca:us-west-2:111122223333:certificate-authority/"
    "11111111-2222-3333-4444-555555555555";

TEST(ImportCaClientTest, PostsThePemTextsToTheWeftRoute) {
  RecordingTransport t;
  t.answers.push_back(
      {200,
       {},
       std::string(R"({"CertificateAuthorityArn":")") + kCa + R"(","Type":"SUBORDINATE"})"});
  ApiClient api(t);
  auto r = ca::importCa(api, "CERT PEM", "KEY PEM", "CHAIN PEM", "pass");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->arn, kCa);
  EXPECT_EQ(r->type, "SUBORDINATE");
  ASSERT_EQ(t.sent.size(), 1u);
  EXPECT_EQ(t.sent[0].method, "POST");
  EXPECT_EQ(t.sent[0].path, "/weft/v1/certificate-authorities/import");
  EXPECT_EQ(t.sent[0].service, "weft");
  EXPECT_EQ(toJson(t.sent[0].body),
            R"({"Certificate":"CERT PEM","PrivateKey":"KEY PEM","CertificateChain":"CHAIN PEM",)"
            R"("Passphrase":"pass"})");

  // No chain and no passphrase: the members are left out; errors keep the server's words.
  t.answers.push_back({400,
                       {{"x-amzn-errortype", "CertificateMismatchException"}},
                       R"({"message":"the private key is not the key of the certificate"})"});
  auto bad = ca::importCa(api, "CERT PEM", "KEY PEM", "", "");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("CertificateMismatchException"), std::string::npos)
      << bad.error().message;
  EXPECT_EQ(toJson(t.sent[1].body), R"({"Certificate":"CERT PEM","PrivateKey":"KEY PEM"})");
}

TEST(RequestCertificateClientTest, SendsWeftValidityInDaysOnlyWhenAsked) {
  RecordingTransport t;
  const std::string acm =
      "arn:aws:acm:us-west-2:111122223333:certificate/22222222-3333-4444-5555-666666666666";
  for (int i = 0; i < 2; ++i) {
    t.answers.push_back({200, {}, R"({"CertificateArn":")" + acm + R"("})"});
    t.answers.push_back({200, {}, R"({"Certificate":{"Status":"ISSUED"}})"});
  }
  ApiClient api(t);
  ASSERT_TRUE(ca::requestCertificate(api, kCa, {"a.mesh.local"}, "", 2));
  ASSERT_TRUE(ca::requestCertificate(api, kCa, {"a.mesh.local"}, ""));
  ASSERT_EQ(t.sent.size(), 4u);
  EXPECT_EQ(t.sent[0].target, "CertificateManager.RequestCertificate");
  const Value* days = t.sent[0].body.find("WeftValidityInDays");
  ASSERT_NE(days, nullptr) << toJson(t.sent[0].body);
  EXPECT_EQ(days->text(), "2");
  EXPECT_EQ(t.sent[2].body.find("WeftValidityInDays"), nullptr)
      << "ACM's own request when no validity is asked: " << toJson(t.sent[2].body);
}

}  // namespace
}  // namespace weft::cli
