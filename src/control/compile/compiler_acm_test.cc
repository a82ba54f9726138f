// ACM references in App Mesh specs, compiled with the real certificate authority: a CaApi over
// the same MemoryStore (test KEK) makes a root CA and an ACM certificate through its JSON API,
// and ca::CaCertificateSource answers the compiler. The certificate PEM, its key and the trust
// bundle are random per run, so they are checked against the CA's own answers and then replaced
// by placeholders before the golden comparison (testdata/<name>.json, WEFT_UPDATE_GOLDEN=1
// rewrites them).
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "control/ca/ca_api.h"
#include "control/ca/certificate_source.h"
#include "control/ca/pki.h"
#include "control/compile/compiler.h"
#include "control/model/appmesh_test_support.h"
#include "control/stacks/json_value.h"

namespace weft::control::compile {
namespace {

namespace pb = google::protobuf;
using appmesh::Kind;
using appmesh::testing::Harness;
using appmesh::testing::summary;
using stacks::Value;

constexpr char kAccount[] = "111122223333";

std::string testdataDir() {
  std::string file = __FILE__;
  return file.substr(0, file.rfind('/')) + "/testdata";
}

std::string str(const Value& v, std::string_view k) {
  const Value* m = v.find(k);
  return m ? std::string(m->str()) : std::string();
}

class CompilerAcmTest : public ::testing::Test {
 protected:
  CompilerAcmTest()
      : kek_(ca::Kek::fromBytes(std::string(32, 'k')).value()),
        ca_(h_.store, h_.time, kek_, ca::Options{"us-west-2", kAccount}),
        source_(ca_),
        compiler_(h_.store, CompileOptions{"us-west-2", kAccount}, &source_) {}

  void SetUp() override { ASSERT_TRUE(ca_.init()); }

  // ---- the CA's JSON API ----
  Value caCall(bool pca, const std::string& op, const std::string& body, int want = 200) {
    ApiRequest r;
    r.method = "POST";
    r.path = "/";
    r.headers = {{"x-amz-target", (pca ? "ACMPrivateCA." : "CertificateManager.") + op}};
    r.body = body;
    ApiResponse resp = pca ? ca_.handlePca(r) : ca_.handleAcm(r);
    EXPECT_EQ(resp.status, want) << op << ": expected " << want << ", got " << resp.status << " "
                                 << resp.body;
    auto v = stacks::parseJson(resp.body.empty() ? "{}" : resp.body);
    return v ? *v : Value::object();
  }
  // A root CA made, self-signed and imported as ACM PCA users do it; answers its ARN.
  std::string rootCa(const std::string& cn) {
    std::string arn = str(caCall(true, "CreateCertificateAuthority",
                                 R"({"CertificateAuthorityType":"ROOT",
          "CertificateAuthorityConfiguration":{"KeyAlgorithm":"EC_prime256v1",
          "SigningAlgorithm":"SHA256WITHECDSA","Subject":{"CommonName":")" +
                                     cn + R"("}}})"),
                          "CertificateAuthorityArn");
    std::string body = R"({"CertificateAuthorityArn":")" + arn + R"("})";
    std::string csr = str(caCall(true, "GetCertificateAuthorityCsr", body), "Csr");
    std::string cert_arn = str(
        caCall(true, "IssueCertificate",
               R"({"CertificateAuthorityArn":")" + arn + R"(","Csr":")" + ca::base64Encode(csr) +
                   R"(","SigningAlgorithm":"SHA256WITHECDSA","Validity":{"Value":10,"Type":"YEARS"},
                 "TemplateArn":"arn:aws:acm-pca:::template/RootCACertificate/V1"})"),
        "CertificateArn");
    std::string pem = str(caCall(true, "GetCertificate",
                                 R"({"CertificateAuthorityArn":")" + arn +
                                     R"(","CertificateArn":")" + cert_arn + R"("})"),
                          "Certificate");
    caCall(true, "ImportCertificateAuthorityCertificate",
           R"({"CertificateAuthorityArn":")" + arn + R"(","Certificate":")" +
               ca::base64Encode(pem) + R"("})");
    root_pem_[arn] = pem;
    return arn;
  }
  std::string requestCertificate(const std::string& domain, const std::string& ca_arn) {
    return str(caCall(false, "RequestCertificate",
                      R"({"DomainName":")" + domain + R"(","CertificateAuthorityArn":")" + ca_arn +
                          R"("})"),
               "CertificateArn");
  }
  std::string acmCertificatePem(const std::string& arn) {
    return str(caCall(false, "GetCertificate", R"({"CertificateArn":")" + arn + R"("})"),
               "Certificate");
  }
  static std::string idOf(const std::string& arn) { return arn.substr(arn.rfind('/') + 1); }

  // ---- App Mesh ----
  void call(const std::string& method, const std::string& path, const std::string& body) {
    ApiResponse r = h_.call(method, path, body);
    ASSERT_EQ(summary(r), "200") << method << " " << path << " " << body;
  }
  void create(const std::string& collection, const std::string& name_field, const std::string& name,
              const std::string& spec) {
    call("PUT", "/v20190125/meshes/m/" + collection,
         "{\"" + name_field + "\":\"" + name + "\",\"spec\":" + spec + "}");
  }
  void mesh() { call("PUT", "/v20190125/meshes", R"({"meshName":"m","spec":{}})"); }
  void node(const std::string& name, const std::string& spec) {
    create("virtualNodes", "virtualNodeName", name, spec);
  }
  void gateway(const std::string& name, const std::string& spec) {
    create("virtualGateways", "virtualGatewayName", name, spec);
  }
  Result<CompileResult> compileNode(const std::string& name) {
    return compiler_.compile(ProxyIdentity{Kind::kVirtualNode, "m", name});
  }
  Result<CompileResult> compileGateway(const std::string& name) {
    return compiler_.compile(ProxyIdentity{Kind::kVirtualGateway, "m", name});
  }

  // The certificate chain starts with the ACM certificate, ends with its root, and the key
  // belongs to the certificate.
  void expectServes(const v1::TlsCertificate& c, const std::string& acm_arn,
                    const std::string& ca_arn) {
    const std::string leaf = acmCertificatePem(acm_arn);
    ASSERT_FALSE(leaf.empty());
    EXPECT_EQ(c.certificate_chain_pem().substr(0, leaf.size()), leaf)
        << "the chain must start with the ACM certificate";
    EXPECT_NE(c.certificate_chain_pem().find(root_pem_[ca_arn]), std::string::npos)
        << "the chain must carry the issuing CA's certificate";
    EXPECT_TRUE(c.certificate_chain_file().empty() && c.private_key_file().empty());
    auto cert = ca::parseCert(leaf);
    auto key = ca::privateKeyFromPem(c.private_key_pem());
    ASSERT_TRUE(cert && key) << "the pushed key must be an unencrypted PEM private key";
    EXPECT_EQ(X509_check_private_key(cert->get(), key->get()), 1)
        << "the pushed key does not match the ACM certificate";
  }

  // Replaces the random PEM with stable placeholders, then compares with the golden file.
  void expectGolden(const std::string& name, v1::ProxyConfig config) {
    auto scrub = [](v1::TlsCertificate* c) {
      if (!c->certificate_chain_pem().empty()) c->set_certificate_chain_pem("(ACM chain PEM)");
      if (!c->private_key_pem().empty()) c->set_private_key_pem("(ACM private key PEM)");
    };
    for (v1::Listener& l : *config.mutable_listeners())
      if (l.has_tls() && l.tls().has_certificate()) scrub(l.mutable_tls()->mutable_certificate());
    for (v1::Cluster& c : *config.mutable_clusters()) {
      if (!c.has_tls()) continue;
      if (c.tls().has_certificate()) scrub(c.mutable_tls()->mutable_certificate());
      if (!c.tls().validation().trust_bundle_pem().empty())
        c.mutable_tls()->mutable_validation()->set_trust_bundle_pem("(ACM PCA trust bundle PEM)");
      if (!c.tls().validation().crl_pem().empty())
        c.mutable_tls()->mutable_validation()->set_crl_pem("(ACM PCA CRL PEM)");
    }
    pb::util::JsonPrintOptions o;
    o.add_whitespace = true;
    o.preserve_proto_field_names = true;
    std::string got;
    ASSERT_TRUE(pb::util::MessageToJsonString(config, &got, o).ok());
    std::string path = testdataDir() + "/" + name + ".json";
    const char* update = std::getenv("WEFT_UPDATE_GOLDEN");
    if (update && std::string(update) == "1") {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out << got;
      ASSERT_TRUE(out.good()) << "cannot write " << path;
      return;
    }
    std::ifstream in(path, std::ios::binary);
    ASSERT_TRUE(in.good()) << "missing golden file " << path
                           << " (run with WEFT_UPDATE_GOLDEN=1 to create it)";
    std::stringstream want;
    want << in.rdbuf();
    EXPECT_EQ(want.str(), got) << "compiled config differs from " << path;
  }

  Harness h_;
  ca::Kek kek_;
  ca::CaApi ca_;
  ca::CaCertificateSource source_;
  Compiler compiler_;
  std::map<std::string, std::string> root_pem_;
};

std::string gatewaySpec(const std::string& cert_arn) {
  return R"({"listeners":[{"portMapping":{"port":8443,"protocol":"http"},
      "tls":{"mode":"STRICT","certificate":{"acm":{"certificateArn":")" +
         cert_arn + R"("}}}}]})";
}

TEST_F(CompilerAcmTest, GatewayListenerWithAcmCertificate) {
  mesh();
  std::string ca = rootCa("mesh.local");
  std::string cert = requestCertificate("*.mesh.local", ca);
  gateway("gw", gatewaySpec(cert));
  auto r = compileGateway("gw");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  ASSERT_EQ(r->config.listeners_size(), 1);
  const v1::ListenerTls& tls = r->config.listeners(0).tls();
  EXPECT_EQ(tls.mode(), v1::ListenerTls::STRICT);
  expectServes(tls.certificate(), cert, ca);
  // The certificate's record and its PCA record are dependencies: a renewal or a revocation
  // recompiles the gateway.
  const std::string acm_key = "ca/acm/" + idOf(cert);
  EXPECT_NE(std::find(r->depends_on.begin(), r->depends_on.end(), acm_key), r->depends_on.end())
      << "depends_on lacks " << acm_key;
  bool has_pca = false;
  for (const std::string& d : r->depends_on)
    if (d.rfind("ca/pca-cert/" + idOf(ca) + "/", 0) == 0) has_pca = true;
  EXPECT_TRUE(has_pca) << "depends_on lacks the certificate's ca/pca-cert/ record";
  EXPECT_TRUE(std::is_sorted(r->depends_on.begin(), r->depends_on.end()));
  expectGolden("gateway_acm", r->config);
}

TEST_F(CompilerAcmTest, NodeListenerWithAcmCertificateAndAcmTrust) {
  mesh();
  std::string ca = rootCa("mesh.local");
  std::string other_ca = rootCa("other.local");
  std::string cert = requestCertificate("web.mesh.local", ca);
  node("web", R"({"listeners":[{"portMapping":{"port":8080,"protocol":"http"},
      "tls":{"mode":"STRICT","certificate":{"acm":{"certificateArn":")" +
                  cert + R"("}}}}],
      "serviceDiscovery":{"dns":{"hostname":"web.mesh.local"}}})");
  create("virtualServices", "virtualServiceName", "web.mesh.local",
         R"({"provider":{"virtualNode":{"virtualNodeName":"web"}}})");
  node("client", R"({"backends":[{"virtualService":{"virtualServiceName":"web.mesh.local"}}],
      "backendDefaults":{"clientPolicy":{"tls":{"validation":{
        "trust":{"acm":{"certificateAuthorityArns":[")" +
                     ca + R"(",")" + other_ca + R"(",")" + ca + R"("]}},
        "subjectAlternativeNames":{"match":{"exact":["web.mesh.local"]}}}}}}})");

  auto web = compileNode("web");
  ASSERT_TRUE(web.has_value()) << web.error().message;
  expectServes(web->config.listeners(0).tls().certificate(), cert, ca);

  auto client = compileNode("client");
  ASSERT_TRUE(client.has_value()) << client.error().message;
  const v1::Cluster* egress = nullptr;
  for (const v1::Cluster& c : client->config.clusters())
    if (c.has_tls()) egress = &c;
  ASSERT_NE(egress, nullptr) << "expected the provider cluster to carry client TLS";
  EXPECT_EQ(egress->tls().validation().trust_bundle_pem(), root_pem_[ca] + root_pem_[other_ca])
      << "the bundle holds each CA's certificate once, in spec order";
  EXPECT_TRUE(egress->tls().validation().trust_bundle_file().empty());
  for (const std::string& id : {idOf(ca), idOf(other_ca)}) {
    const std::string key = "ca/pca/" + id;
    EXPECT_NE(std::find(client->depends_on.begin(), client->depends_on.end(), key),
              client->depends_on.end())
        << "depends_on lacks " << key;
  }
  // The client references no certificate: it gets no key.
  EXPECT_EQ(client->config.DebugString().find("private_key_pem"), std::string::npos)
      << "a config whose spec names no ACM certificate must carry no key";
  expectGolden("node_acm_listener", web->config);
  expectGolden("client_policy_acm", client->config);
}

// The CRLs of the trusted CAs go with the trust bundle, and a revocation recompiles the client
// with the new CRL (docs/ca.md, "CRLs").
TEST_F(CompilerAcmTest, TrustCarriesCrlsAndARevocationChangesThem) {
  mesh();
  std::string ca = rootCa("mesh.local");
  std::string other_ca = rootCa("other.local");
  std::string cert = requestCertificate("web.mesh.local", ca);
  node("web", R"({"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}],
      "serviceDiscovery":{"dns":{"hostname":"web.mesh.local"}}})");
  create("virtualServices", "virtualServiceName", "web.mesh.local",
         R"({"provider":{"virtualNode":{"virtualNodeName":"web"}}})");
  node("client", R"({"backends":[{"virtualService":{"virtualServiceName":"web.mesh.local"}}],
      "backendDefaults":{"clientPolicy":{"tls":{"validation":{
        "trust":{"acm":{"certificateAuthorityArns":[")" +
                     ca + R"(",")" + other_ca + R"("]}}}}}}})");
  auto egressOf = [](const CompileResult& r) -> const v1::Cluster* {
    for (const v1::Cluster& c : r.config.clusters())
      if (c.has_tls()) return &c;
    return nullptr;
  };
  auto crlsOf = [](const std::string& pem) {
    std::vector<ca::CrlPtr> out;
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    while (X509_CRL* crl = PEM_read_bio_X509_CRL(bio, nullptr, nullptr, nullptr))
      out.emplace_back(crl);
    BIO_free(bio);
    ERR_clear_error();
    return out;
  };

  auto a = compileNode("client");
  ASSERT_TRUE(a.has_value()) << a.error().message;
  const v1::Cluster* egress = egressOf(*a);
  ASSERT_NE(egress, nullptr) << "expected the provider cluster to carry client TLS";
  std::vector<ca::CrlPtr> crls = crlsOf(egress->tls().validation().crl_pem());
  ASSERT_EQ(crls.size(), 2u) << "one CRL per trusted CA, got:\n"
                             << egress->tls().validation().crl_pem();
  auto ca_cert = ca::parseCert(root_pem_[ca]);
  auto other_cert = ca::parseCert(root_pem_[other_ca]);
  ASSERT_TRUE(ca_cert && other_cert);
  EXPECT_EQ(
      X509_NAME_cmp(X509_CRL_get_issuer(crls[0].get()), X509_get_subject_name(ca_cert->get())), 0)
      << "the CRLs come in the bundle's order";
  EXPECT_EQ(X509_CRL_verify(crls[1].get(), X509_get0_pubkey(other_cert->get())), 1);
  for (const std::string& id : {idOf(ca), idOf(other_ca)}) {
    const std::string key = "ca/pca-crl/" + id;
    EXPECT_NE(std::find(a->depends_on.begin(), a->depends_on.end(), key), a->depends_on.end())
        << "depends_on lacks " << key;
  }
  auto again = compileNode("client");
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(configHash(a->config), configHash(again->config)) << "same store, same bytes";

  // Revoke the web certificate: the CA's CRL changes and lists it; the client's config follows.
  Value described = caCall(false, "DescribeCertificate", R"({"CertificateArn":")" + cert + R"("})");
  const Value* detail = described.find("Certificate");
  ASSERT_NE(detail, nullptr);
  std::string serial = str(*detail, "Serial");
  caCall(true, "RevokeCertificate",
         R"({"CertificateAuthorityArn":")" + ca + R"(","CertificateSerial":")" + serial +
             R"(","RevocationReason":"KEY_COMPROMISE"})");
  auto b = compileNode("client");
  ASSERT_TRUE(b.has_value()) << b.error().message;
  EXPECT_NE(configHash(a->config), configHash(b->config))
      << "a revocation must change the trusting client's config";
  std::vector<ca::CrlPtr> after = crlsOf(egressOf(*b)->tls().validation().crl_pem());
  ASSERT_EQ(after.size(), 2u);
  auto web_cert = ca::parseCert(acmCertificatePem(cert));
  ASSERT_TRUE(web_cert);
  X509_REVOKED* entry = nullptr;
  EXPECT_EQ(X509_CRL_get0_by_cert(after[0].get(), &entry, web_cert->get()), 1)
      << "the pushed CRL must list the revoked certificate";
  EXPECT_EQ(X509_CRL_get0_by_cert(crls[0].get(), &entry, web_cert->get()), 0)
      << "the earlier CRL did not list it";
}

TEST_F(CompilerAcmTest, RenewalChangesTheConfigAndDeterminism) {
  mesh();
  std::string ca = rootCa("mesh.local");
  std::string cert = requestCertificate("*.mesh.local", ca);
  gateway("gw", gatewaySpec(cert));
  auto a = compileGateway("gw");
  auto b = compileGateway("gw");
  ASSERT_TRUE(a.has_value() && b.has_value());
  EXPECT_EQ(configHash(a->config), configHash(b->config)) << "same store, same bytes";
  EXPECT_EQ(a->depends_on, b->depends_on);

  caCall(false, "RenewCertificate", R"({"CertificateArn":")" + cert + R"("})");
  auto c = compileGateway("gw");
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_NE(configHash(a->config), configHash(c->config)) << "a renewal must change the config";
  const v1::TlsCertificate& renewed = c->config.listeners(0).tls().certificate();
  expectServes(renewed, cert, ca);
  EXPECT_NE(renewed.private_key_pem(), a->config.listeners(0).tls().certificate().private_key_pem())
      << "RenewCertificate makes a new key";
}

TEST_F(CompilerAcmTest, UnusableReferencesFailNamingTheArn) {
  mesh();
  std::string ca = rootCa("mesh.local");
  // Unknown certificate.
  const std::string unknown = std::string("arn:aws:acm:us-west-2:") + kAccount + ":certificate/" +
                              "00000000-0000-4000-8000-000000000000";
  gateway("gw", gatewaySpec(unknown));
  auto r = compileGateway("gw");
  ASSERT_FALSE(r.has_value()) << "an unknown ACM certificate must fail the compilation";
  EXPECT_EQ(r.error().code, kCompileUnsupported);
  EXPECT_NE(r.error().message.find("spec.listeners[0].tls.certificate.acm.certificateArn"),
            std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find(unknown), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("does not exist"), std::string::npos) << r.error().message;

  // A FAILED certificate (its CA does not exist).
  const std::string gone_ca = std::string("arn:aws:acm-pca:us-west-2:") + kAccount +
                              ":certificate-authority/11111111-1111-4111-8111-111111111111";
  std::string failed = requestCertificate("a.mesh.local", gone_ca);
  call("PUT", "/v20190125/meshes/m/virtualGateways/gw", R"({"spec":)" + gatewaySpec(failed) + "}");
  r = compileGateway("gw");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, kCompileUnsupported);
  EXPECT_NE(r.error().message.find(failed + " is FAILED (PCA_RESOURCE_NOT_FOUND), not ISSUED"),
            std::string::npos)
      << r.error().message;

  // A revoked certificate.
  std::string cert = requestCertificate("b.mesh.local", ca);
  Value described = caCall(false, "DescribeCertificate", R"({"CertificateArn":")" + cert + R"("})");
  std::string serial = str(*described.find("Certificate"), "Serial");
  caCall(true, "RevokeCertificate",
         R"({"CertificateAuthorityArn":")" + ca + R"(","CertificateSerial":")" + serial +
             R"(","RevocationReason":"KEY_COMPROMISE"})");
  call("PUT", "/v20190125/meshes/m/virtualGateways/gw", R"({"spec":)" + gatewaySpec(cert) + "}");
  r = compileGateway("gw");
  ASSERT_FALSE(r.has_value()) << "a revoked certificate must not be pushed";
  EXPECT_NE(r.error().message.find(cert + " is REVOKED"), std::string::npos) << r.error().message;

  // Trust in a CA that has no certificate yet, and in a malformed ARN.
  std::string pending = str(caCall(true, "CreateCertificateAuthority",
                                   R"({"CertificateAuthorityType":"ROOT",
          "CertificateAuthorityConfiguration":{"KeyAlgorithm":"EC_prime256v1",
          "SigningAlgorithm":"SHA256WITHECDSA","Subject":{"CommonName":"pending"}}})"),
                            "CertificateAuthorityArn");
  gateway("gw2", R"({"listeners":[{"portMapping":{"port":8080,"protocol":"http"}}],
      "backendDefaults":{"clientPolicy":{"tls":{"validation":{"trust":{"acm":{
        "certificateAuthorityArns":[")" +
                     pending + R"("]}}}}}}})");
  node("n", R"({"listeners":[{"portMapping":{"port":80,"protocol":"http"}}],
      "serviceDiscovery":{"dns":{"hostname":"n.local"}}})");
  create("virtualServices", "virtualServiceName", "s",
         R"({"provider":{"virtualNode":{"virtualNodeName":"n"}}})");
  create("virtualGateway/gw2/gatewayRoutes", "gatewayRouteName", "r",
         R"({"httpRoute":{"match":{"prefix":"/"},
             "action":{"target":{"virtualService":{"virtualServiceName":"s"}}}}})");
  r = compileGateway("gw2");
  ASSERT_FALSE(r.has_value()) << "trust in a CA without a certificate must fail";
  EXPECT_EQ(r.error().code, kCompileUnsupported);
  EXPECT_NE(r.error().message.find("trust.acm.certificateAuthorityArns"), std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find(pending + " has no certificate yet (PENDING_CERTIFICATE)"),
            std::string::npos)
      << r.error().message;
}

TEST_F(CompilerAcmTest, WithoutASourceAcmStaysAClearError) {
  mesh();
  std::string ca = rootCa("mesh.local");
  gateway("gw", gatewaySpec(requestCertificate("*.mesh.local", ca)));
  Compiler plain(h_.store, CompileOptions{"us-west-2", kAccount});
  auto r = plain.compile(ProxyIdentity{Kind::kVirtualGateway, "m", "gw"});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, kCompileUnsupported);
  EXPECT_NE(r.error().message.find("spec.listeners[0].tls.certificate.acm.certificateArn"),
            std::string::npos)
      << r.error().message;
}

TEST_F(CompilerAcmTest, RedactSecretsHidesOnlyTheKey) {
  mesh();
  std::string ca = rootCa("mesh.local");
  std::string cert = requestCertificate("*.mesh.local", ca);
  gateway("gw", gatewaySpec(cert));
  auto r = compileGateway("gw");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  v1::ProxyConfig shown = r->config;
  redactSecrets(shown);
  EXPECT_EQ(shown.listeners(0).tls().certificate().private_key_pem(), "[redacted]");
  EXPECT_EQ(shown.listeners(0).tls().certificate().certificate_chain_pem(),
            r->config.listeners(0).tls().certificate().certificate_chain_pem());
  EXPECT_EQ(shown.DebugString().find("PRIVATE KEY"), std::string::npos);
}

}  // namespace
}  // namespace weft::control::compile
