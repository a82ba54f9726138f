#include "cli/ca_client.h"

#include <gtest/gtest.h>

#include <deque>
#include <functional>

#include "cli/registry_client.h"
#include "cli/stack_resources.h"
#include "control/ca/pki.h"

namespace weft::cli {
namespace {

// A transport that answers JSON 1.1 calls from a script keyed by X-Amz-Target and records them.
class ScriptedTransport final : public Transport {
 public:
  struct Call {
    std::string service, target, content_type;
    Value body;
  };
  using Handler = std::function<HttpResponse(const Value& body)>;

  void on(const std::string& target, Handler h) { handlers_[target].push_back(std::move(h)); }
  void onJson(const std::string& target, const std::string& json) {
    on(target, [json](const Value&) { return HttpResponse{200, {}, json}; });
  }

  using Transport::send;
  Result<HttpResponse> send(std::string_view method, std::string_view path, std::string_view,
                            std::string_view body, std::string_view service,
                            const HeaderList& headers) override {
    Call c;
    c.service = std::string(service);
    for (const auto& [k, v] : headers) {
      if (k == "x-amz-target") c.target = v;
      if (k == "content-type") c.content_type = v;
    }
    auto parsed = parseJson(body);
    c.body = parsed ? *parsed : Value();
    calls.push_back(c);
    if (method != "POST" || path != "/") return makeError("expected POST /");
    auto it = handlers_.find(c.target);
    if (it == handlers_.end() || it->second.empty())
      return HttpResponse{400,
                          {{"x-amzn-errortype", "UnknownOperationException"}},
                          R"({"message":"unscripted )" + c.target + "\"}"};
    Handler h = it->second.front();
    if (it->second.size() > 1) it->second.pop_front();
    return h(c.body);
  }

  std::vector<Call> calls;

 private:
  std::map<std::string, std::deque<Handler>> handlers_;
};

HttpResponse error(const std::string& type, const std::string& message) {
  return HttpResponse{400, {{"x-amzn-errortype", type}}, R"({"message":")" + message + "\"}"};
}

const std::string kCa = "arn:aws:acm-pca:us-west-2:111122223333:certificate-authority/" +
                        std::string("11111111-2222-3333-4444-555555555555");

TEST(ParseSubjectTest, KeysValuesAndEscapes) {
  auto s = ca::parseSubject("CN=example.local, o=Acme\\, Inc.,C=US,OU=Mesh");
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(toJson(*s),
            R"({"CommonName":"example.local","Organization":"Acme, Inc.","Country":"US",)"
            R"("OrganizationalUnit":"Mesh"})");
  EXPECT_FALSE(ca::parseSubject("CN"));
  EXPECT_NE(ca::parseSubject("XX=1").error().message.find("unknown attribute 'XX'"),
            std::string::npos);
  EXPECT_NE(ca::parseSubject("CN=").error().message.find("empty value"), std::string::npos);
  EXPECT_NE(ca::parseSubject("CN=a,CN=b").error().message.find("appears twice"), std::string::npos);
}

TEST(ArnKindTest, TellsCaAndCertificateArns) {
  EXPECT_EQ(ca::arnKind(kCa), "ca");
  EXPECT_EQ(ca::arnKind(kCa + "/certificate/0a1b"), "pca-certificate");
  EXPECT_EQ(ca::arnKind("arn:aws:acm:us-west-2:111122223333:certificate/abc"), "acm-certificate");
  EXPECT_EQ(ca::arnKind("arn:aws:s3:::bucket"), "");
  EXPECT_EQ(ca::arnKind("certificate-authority/x"), "");
  EXPECT_EQ(ca::defaultSigningAlgorithm("RSA_4096"), "SHA256WITHRSA");
  EXPECT_EQ(ca::defaultSigningAlgorithm("EC_secp384r1"), "SHA384WITHECDSA");
  EXPECT_FALSE(ca::defaultSigningAlgorithm("DSA"));
}

TEST(CreateCaTest, RootIsSelfSignedWithTheRootTemplateAndImported) {
  ScriptedTransport t;
  ApiClient api(t);
  t.onJson("ACMPrivateCA.CreateCertificateAuthority",
           R"({"CertificateAuthorityArn":")" + kCa + "\"}");
  t.onJson("ACMPrivateCA.GetCertificateAuthorityCsr", R"({"Csr":"-----CSR-----\n"})");
  t.onJson("ACMPrivateCA.IssueCertificate",
           R"({"CertificateArn":")" + kCa + R"(/certificate/01"})");
  t.on("ACMPrivateCA.GetCertificate", [](const Value&) {
    return error("RequestInProgressException", "still issuing");  // retried
  });
  t.onJson("ACMPrivateCA.GetCertificate", R"({"Certificate":"-----CERT-----\n"})");
  t.onJson("ACMPrivateCA.ImportCertificateAuthorityCertificate", "");
  ca::CreateCaOptions o;
  o.subject = *ca::parseSubject("CN=root.local");
  o.key_algorithm = "EC_prime256v1";
  auto arn = ca::createCa(api, o);
  ASSERT_TRUE(arn) << arn.error().message;
  EXPECT_EQ(*arn, kCa);
  std::vector<std::string> targets;
  for (const auto& c : t.calls) {
    targets.push_back(c.target);
    EXPECT_EQ(c.service, "acm-pca");
    EXPECT_EQ(c.content_type, "application/x-amz-json-1.1");
  }
  EXPECT_EQ(targets, (std::vector<std::string>{
                         "ACMPrivateCA.CreateCertificateAuthority",
                         "ACMPrivateCA.GetCertificateAuthorityCsr", "ACMPrivateCA.IssueCertificate",
                         "ACMPrivateCA.GetCertificate", "ACMPrivateCA.GetCertificate",
                         "ACMPrivateCA.ImportCertificateAuthorityCertificate"}));
  const Value& create = t.calls[0].body;
  EXPECT_EQ(toJson(*create.find("CertificateAuthorityConfiguration")),
            R"({"KeyAlgorithm":"EC_prime256v1","SigningAlgorithm":"SHA256WITHECDSA",)"
            R"("Subject":{"CommonName":"root.local"}})");
  EXPECT_EQ(create.find("CertificateAuthorityType")->text(), "ROOT");
  const Value& issue = t.calls[2].body;
  EXPECT_EQ(issue.find("CertificateAuthorityArn")->text(), kCa);
  EXPECT_EQ(issue.find("TemplateArn")->text(), "arn:aws:acm-pca:::template/RootCACertificate/V1");
  EXPECT_EQ(*control::ca::base64Decode(issue.find("Csr")->text()), "-----CSR-----\n");
  EXPECT_EQ(toJson(*issue.find("Validity")), R"({"Type":"YEARS","Value":10})");
  const Value& import = t.calls[5].body;
  EXPECT_EQ(*control::ca::base64Decode(import.find("Certificate")->text()), "-----CERT-----\n");
  EXPECT_EQ(import.find("CertificateChain"), nullptr);
}

TEST(CreateCaTest, SubordinateIsSignedByItsParentAndAFailureNamesThePendingCa) {
  ScriptedTransport t;
  ApiClient api(t);
  const std::string parent = kCa;
  const std::string child = kCa.substr(0, kCa.size() - 4) + "9999";
  t.onJson("ACMPrivateCA.DescribeCertificateAuthority",
           R"({"CertificateAuthority":{"Status":"ACTIVE","NotAfter":4102444800,)"
           R"("CertificateAuthorityConfiguration":{"SigningAlgorithm":"SHA384WITHRSA"}}})");
  t.onJson("ACMPrivateCA.CreateCertificateAuthority",
           R"({"CertificateAuthorityArn":")" + child + "\"}");
  t.onJson("ACMPrivateCA.GetCertificateAuthorityCsr", R"({"Csr":"csr"})");
  t.on("ACMPrivateCA.IssueCertificate",
       [](const Value&) { return error("InvalidArgsException", "validity too long"); });
  ca::CreateCaOptions o;
  o.subject = *ca::parseSubject("CN=sub");
  o.parent_arn = parent;
  o.path_len = 2;
  o.validity_days = 90;
  auto arn = ca::createCa(api, o);
  ASSERT_FALSE(arn);
  EXPECT_NE(arn.error().message.find(child + " was created but not activated"), std::string::npos)
      << arn.error().message;
  EXPECT_NE(arn.error().message.find("InvalidArgsException: validity too long"), std::string::npos);
  const Value& issue = t.calls[3].body;
  EXPECT_EQ(issue.find("CertificateAuthorityArn")->text(), parent);
  EXPECT_EQ(issue.find("SigningAlgorithm")->text(), "SHA384WITHRSA");
  EXPECT_EQ(issue.find("TemplateArn")->text(),
            "arn:aws:acm-pca:::template/SubordinateCACertificate_PathLen2/V1");
  EXPECT_EQ(toJson(*issue.find("Validity")), R"({"Type":"DAYS","Value":90})");
}

TEST(RegistryClientTest, WaitsForOperationsAndReportsFailures) {
  ScriptedTransport t;
  ApiClient api(t);
  t.onJson("Route53AutoNaming_v20170314.GetOperation", R"({"Operation":{"Status":"PENDING"}})");
  t.onJson("Route53AutoNaming_v20170314.GetOperation",
           R"({"Operation":{"Status":"SUCCESS","Targets":{"NAMESPACE":"ns-1"}}})");
  auto targets = registry::waitForOperation(api, "op-1");
  ASSERT_TRUE(targets) << targets.error().message;
  EXPECT_EQ(targets->find("NAMESPACE")->text(), "ns-1");
  EXPECT_EQ(t.calls[0].service, "servicediscovery");
  EXPECT_EQ(t.calls[0].body.find("OperationId")->text(), "op-1");

  ScriptedTransport f;
  ApiClient api2(f);
  f.onJson("Route53AutoNaming_v20170314.GetOperation",
           R"({"Operation":{"Status":"FAIL","Type":"CREATE_NAMESPACE","ErrorCode":"CONFLICT",)"
           R"("ErrorMessage":"zone exists"}})");
  auto failed = registry::waitForOperation(api2, "op-2");
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().message,
            "operation op-2 (CREATE_NAMESPACE) failed: CONFLICT: zone exists");
}

TEST(StackResourcesTest, PrivateDnsNamespaceWaitsAndAnswersRefAndAttributes) {
  ScriptedTransport t;
  ApiClient api(t);
  t.onJson("Route53AutoNaming_v20170314.CreatePrivateDnsNamespace", R"({"OperationId":"op"})");
  t.onJson("Route53AutoNaming_v20170314.GetOperation",
           R"({"Operation":{"Status":"SUCCESS","Targets":{"NAMESPACE":"ns-abc"}}})");
  t.onJson("Route53AutoNaming_v20170314.GetNamespace",
           R"({"Namespace":{"Id":"ns-abc","Arn":"arn:ns","Properties":)"
           R"({"DnsProperties":{"HostedZoneId":"Z123"}}}})");
  Value props = *parseJson(
      R"({"Name":"a.local","Vpc":"vpc-1","Properties":{"DnsProperties":{"SOA":{"TTL":"60"}}},)"
      R"("Tags":[{"Key":"k","Value":"v"}]})");
  auto made =
      stack::createResource(api, "AWS::ServiceDiscovery::PrivateDnsNamespace", "Ns", props, "s-Ns");
  ASSERT_TRUE(made) << made.error().message;
  EXPECT_EQ(made->ref.text(), "ns-abc");
  EXPECT_EQ(toJson(made->attributes), R"({"Id":"ns-abc","Arn":"arn:ns","HostedZoneId":"Z123"})");
  EXPECT_EQ(toJson(t.calls[0].body),
            R"({"Name":"a.local","Vpc":"vpc-1","Properties":{"DnsProperties":{"SOA":{"TTL":60}}},)"
            R"("Tags":[{"Key":"k","Value":"v"}]})");

  auto missing = stack::createResource(api, "AWS::ServiceDiscovery::PrivateDnsNamespace", "Ns",
                                       *parseJson(R"({"Name":"a.local"})"), "s-Ns");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message, "Ns: missing property Vpc");
  auto unknown = stack::createResource(api, "AWS::ServiceDiscovery::HttpNamespace", "H",
                                       *parseJson(R"({"Name":"h","Vpc":"vpc-1"})"), "s-H");
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("H: unknown property Vpc"), std::string::npos);
  EXPECT_TRUE(stack::handlesType("AWS::ACMPCA::CertificateAuthorityActivation"));
  EXPECT_FALSE(stack::handlesType("AWS::EC2::VPC"));
}

TEST(StackResourcesTest, ActivationImportsAndAnswersTheChain) {
  ScriptedTransport t;
  ApiClient api(t);
  t.onJson("ACMPrivateCA.ImportCertificateAuthorityCertificate", "");
  t.onJson("ACMPrivateCA.UpdateCertificateAuthority", "");
  Value props = *parseJson(R"({"CertificateAuthorityArn":")" + kCa +
                           R"(","Certificate":"CERT\n","CertificateChain":"CHAIN\n",)"
                           R"("Status":"DISABLED"})");
  auto made =
      stack::createResource(api, "AWS::ACMPCA::CertificateAuthorityActivation", "A", props, "s-A");
  ASSERT_TRUE(made) << made.error().message;
  EXPECT_EQ(made->ref.text(), kCa);
  EXPECT_EQ(made->attributes.find("CompleteCertificateChain")->text(), "CERT\nCHAIN\n");
  ASSERT_EQ(t.calls.size(), 2u);
  EXPECT_EQ(*control::ca::base64Decode(t.calls[0].body.find("CertificateChain")->text()),
            "CHAIN\n");
  EXPECT_EQ(t.calls[1].body.find("Status")->text(), "DISABLED");
}

}  // namespace
}  // namespace weft::cli
