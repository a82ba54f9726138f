#include "control/ca/ca_api.h"

#include <gtest/gtest.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <string>

#include "common/time.h"
#include "control/ca/pki.h"
#include "control/stacks/json_value.h"
#include "control/store/memory_store.h"

namespace weft::control::ca {
namespace {

using stacks::Value;

class CaApiTest : public ::testing::Test {
 protected:
  CaApiTest()
      : kek_(Kek::fromBytes(std::string(32, 'K')).value()),
        api_(store_, time_, kek_, Options{"us-west-2", "123456789012"}) {}

  void SetUp() override { ASSERT_TRUE(api_.init()); }

  int64_t now() const {
    return std::chrono::duration_cast<std::chrono::seconds>(time_.systemNow().time_since_epoch())
        .count();
  }

  // Calls an operation; answers (status, parsed body, error type).
  struct Answer {
    int status;
    Value body;
    std::string type;
  };
  Answer call(bool pca, const std::string& op, const std::string& body) {
    ApiRequest r;
    r.method = "POST";
    r.path = "/";
    r.headers = {{"x-amz-target", (pca ? "ACMPrivateCA." : "CertificateManager.") + op}};
    r.body = body;
    ApiResponse resp = pca ? api_.handlePca(r) : api_.handleAcm(r);
    Answer a{resp.status, Value::object(), ""};
    auto v = stacks::parseJson(resp.body.empty() ? "{}" : resp.body);
    EXPECT_TRUE(v) << resp.body;
    if (v) a.body = *v;
    for (const auto& [k, val] : resp.headers)
      if (k == "x-amzn-ErrorType") a.type = val;
    return a;
  }
  Value ok(bool pca, const std::string& op, const std::string& body) {
    Answer a = call(pca, op, body);
    EXPECT_EQ(a.status, 200) << op << " expected 200, got " << a.type << ": "
                             << stacks::toJson(a.body);
    return a.body;
  }
  std::string err(bool pca, const std::string& op, const std::string& body) {
    Answer a = call(pca, op, body);
    EXPECT_EQ(a.status, 400) << op << ": " << stacks::toJson(a.body);
    return a.type;
  }
  static std::string s(const Value& v, std::string_view k) {
    const Value* m = v.find(k);
    return m ? std::string(m->str()) : std::string();
  }
  static std::string b64(std::string_view bytes) { return base64Encode(bytes); }

  std::string createCa(const std::string& type, const std::string& key_alg = "RSA_2048",
                       const std::string& sign = "SHA256WITHRSA", const std::string& cn = "ca") {
    Value v = ok(true, "CreateCertificateAuthority",
                 R"({"CertificateAuthorityType":")" + type +
                     R"(","CertificateAuthorityConfiguration":{"KeyAlgorithm":")" + key_alg +
                     R"(","SigningAlgorithm":")" + sign + R"(","Subject":{"CommonName":")" + cn +
                     R"(","Organization":"Weft"}}})");
    return s(v, "CertificateAuthorityArn");
  }
  std::string caArnBody(const std::string& arn) {
    return R"({"CertificateAuthorityArn":")" + arn + R"("})";
  }
  std::string issueBody(const std::string& ca, const std::string& csr_pem, const std::string& alg,
                        const std::string& tmpl, const std::string& validity) {
    std::string b = R"({"CertificateAuthorityArn":")" + ca + R"(","Csr":")" + b64(csr_pem) +
                    R"(","SigningAlgorithm":")" + alg + R"(","Validity":)" + validity;
    if (!tmpl.empty()) b += R"(,"TemplateArn":"arn:aws:acm-pca:::template/)" + tmpl + "\"";
    return b + "}";
  }

  // The full ACM PCA root flow; answers the root certificate PEM.
  std::string activateRoot(const std::string& arn, const std::string& alg = "SHA256WITHRSA") {
    std::string csr = s(ok(true, "GetCertificateAuthorityCsr", caArnBody(arn)), "Csr");
    std::string cert_arn =
        s(ok(true, "IssueCertificate",
             issueBody(arn, csr, alg, "RootCACertificate/V1", R"({"Value":10,"Type":"YEARS"})")),
          "CertificateArn");
    std::string pem = s(ok(true, "GetCertificate",
                           R"({"CertificateAuthorityArn":")" + arn + R"(","CertificateArn":")" +
                               cert_arn + R"("})"),
                        "Certificate");
    ok(true, "ImportCertificateAuthorityCertificate",
       R"({"CertificateAuthorityArn":")" + arn + R"(","Certificate":")" + b64(pem) + R"("})");
    return pem;
  }

  // X509_verify_cert of `leaf` against `root` (+ intermediates), at the simulated time.
  std::string verify(const std::string& leaf_pem, const std::string& root_pem,
                     const std::string& chain_pem = "") {
    auto leaf = parseCert(leaf_pem);
    auto root = parseCert(root_pem);
    X509_STORE* store = X509_STORE_new();
    X509_STORE_add_cert(store, root->get());
    STACK_OF(X509)* untrusted = sk_X509_new_null();
    std::vector<CertPtr> chain;
    if (!chain_pem.empty()) {
      auto c = parseCertChain(chain_pem);
      if (c) chain = std::move(*c);
    }
    for (auto& c : chain) sk_X509_push(untrusted, c.get());
    X509_STORE_CTX* ctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(ctx, store, leaf->get(), untrusted);
    X509_STORE_CTX_set_time(ctx, 0, static_cast<time_t>(now()));
    std::string result = X509_verify_cert(ctx) == 1
                             ? "ok"
                             : X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
    X509_STORE_CTX_free(ctx);
    sk_X509_free(untrusted);
    X509_STORE_free(store);
    return result;
  }

  std::string leafCsr(const std::string& cn, KeyPtr* key_out = nullptr) {
    auto key = generateKey(KeyAlgorithm::kEcP256);
    auto name = makeName({{"CN", cn}});
    auto csr = makeCsr(key->get(), name->get(), *parseSigningAlgorithm("SHA256WITHECDSA"));
    std::string pem = csrToPem(csr->get());
    if (key_out) *key_out = std::move(*key);
    return pem;
  }

  MemoryStore store_;
  SimTimeSource time_;
  Kek kek_;
  CaApi api_;
};

TEST_F(CaApiTest, RootFlowAndStatuses) {
  std::string arn = createCa("ROOT");
  EXPECT_EQ(arn.rfind("arn:aws:acm-pca:us-west-2:123456789012:certificate-authority/", 0), 0u)
      << arn;
  Value d = ok(true, "DescribeCertificateAuthority", caArnBody(arn));
  EXPECT_EQ(s(*d.find("CertificateAuthority"), "Status"), "PENDING_CERTIFICATE");
  EXPECT_EQ(err(true, "GetCertificateAuthorityCertificate", caArnBody(arn)),
            "InvalidStateException");
  std::string root = activateRoot(arn);
  d = ok(true, "DescribeCertificateAuthority", caArnBody(arn));
  const Value& ca = *d.find("CertificateAuthority");
  EXPECT_EQ(s(ca, "Status"), "ACTIVE");
  EXPECT_EQ(s(*ca.find("CertificateAuthorityConfiguration"), "KeyAlgorithm"), "RSA_2048");
  EXPECT_NE(s(ca, "Serial"), "");
  auto cert = parseCert(root);
  ASSERT_TRUE(cert);
  EXPECT_TRUE(isCaCert(cert->get()));
  EXPECT_EQ(verify(root, root), "ok");
  // Ten years, as asked.
  EXPECT_NEAR(static_cast<double>(certNotAfter(cert->get()) - now()), 10 * 365.25 * 86400,
              3 * 86400);
  Value list = ok(true, "ListCertificateAuthorities", "{}");
  EXPECT_EQ(list.find("CertificateAuthorities")->items().size(), 1u);
}

TEST_F(CaApiTest, AcmWildcardChainVerifiesAndExportDecrypts) {
  std::string ca = createCa("ROOT", "EC_prime256v1", "SHA256WITHECDSA");
  std::string root = activateRoot(ca, "SHA256WITHECDSA");
  Value r = ok(false, "RequestCertificate",
               R"({"DomainName":"*.appmeshworkshop.hosted.local","CertificateAuthorityArn":")" +
                   ca + R"("})");
  std::string arn = s(r, "CertificateArn");
  EXPECT_EQ(arn.rfind("arn:aws:acm:us-west-2:123456789012:certificate/", 0), 0u) << arn;
  Value d = *ok(false, "DescribeCertificate", R"({"CertificateArn":")" + arn + R"("})")
                 .find("Certificate");
  EXPECT_EQ(s(d, "Status"), "ISSUED");
  EXPECT_EQ(s(d, "KeyAlgorithm"), "RSA_2048");
  Value got = ok(false, "GetCertificate", R"({"CertificateArn":")" + arn + R"("})");
  std::string leaf = s(got, "Certificate");
  EXPECT_EQ(verify(leaf, root), "ok");
  auto cert = parseCert(leaf);
  EXPECT_EQ(X509_check_host(cert->get(), "app.appmeshworkshop.hosted.local", 0, 0, nullptr), 1)
      << "the wildcard covers one label";
  EXPECT_NE(X509_check_host(cert->get(), "a.b.appmeshworkshop.hosted.local", 0, 0, nullptr), 1);
  EXPECT_NEAR(static_cast<double>(certNotAfter(cert->get()) - now()), 395 * 86400.0, 7200);

  Value exp =
      ok(false, "ExportCertificate",
         R"({"CertificateArn":")" + arn + R"(","Passphrase":")" + b64("passw0rd") + R"("})");
  std::string enc = s(exp, "PrivateKey");
  EXPECT_NE(enc.find("BEGIN ENCRYPTED PRIVATE KEY"), std::string::npos);
  auto key = decryptPrivateKeyPem(enc, "passw0rd");
  ASSERT_TRUE(key) << key.error().message;
  EXPECT_TRUE(samePublicKey(key->get(), X509_get0_pubkey(cert->get())));
  EXPECT_FALSE(decryptPrivateKeyPem(enc, "wrong")) << "a wrong passphrase must not decrypt";
  EXPECT_EQ(s(exp, "CertificateChain"), root);

  // Keys at rest: nothing in the store holds a PEM private key.
  auto all = store_.list("", "", 0);
  ASSERT_TRUE(all);
  for (const KeyValue& kv : *all) {
    EXPECT_EQ(kv.value.find("PRIVATE KEY"), std::string::npos) << kv.key;
    if (kv.key.rfind("ca/acm/", 0) == 0 || kv.key.rfind("ca/pca/", 0) == 0) {
      auto rec = stacks::parseJson(kv.value);
      EXPECT_EQ(s(*rec, "Key").rfind("gcm1:", 0), 0u) << kv.key << ": the key is sealed";
    }
  }
}

TEST_F(CaApiTest, SubordinateFlowRevokeAndCrl) {
  std::string root_arn = createCa("ROOT");
  std::string root = activateRoot(root_arn);
  std::string sub = createCa("SUBORDINATE", "EC_secp384r1", "SHA384WITHECDSA", "sub");
  std::string csr = s(ok(true, "GetCertificateAuthorityCsr", caArnBody(sub)), "Csr");
  EXPECT_EQ(
      err(true, "IssueCertificate",
          issueBody(sub, leafCsr("x"), "SHA384WITHECDSA", "", R"({"Value":1,"Type":"DAYS"})")),
      "InvalidStateException")
      << "a pending CA cannot issue";
  std::string sub_cert_arn =
      s(ok(true, "IssueCertificate",
           issueBody(root_arn, csr, "SHA256WITHRSA", "SubordinateCACertificate_PathLen0/V1",
                     R"({"Value":5,"Type":"YEARS"})")),
        "CertificateArn");
  Value got = ok(true, "GetCertificate",
                 R"({"CertificateAuthorityArn":")" + root_arn + R"(","CertificateArn":")" +
                     sub_cert_arn + R"("})");
  std::string sub_pem = s(got, "Certificate");
  EXPECT_EQ(s(got, "CertificateChain"), root);
  EXPECT_EQ(err(true, "ImportCertificateAuthorityCertificate",
                R"({"CertificateAuthorityArn":")" + sub + R"(","Certificate":")" + b64(sub_pem) +
                    R"("})"),
            "InvalidRequestException")
      << "a subordinate needs its chain";
  ok(true, "ImportCertificateAuthorityCertificate",
     R"({"CertificateAuthorityArn":")" + sub + R"(","Certificate":")" + b64(sub_pem) +
         R"(","CertificateChain":")" + b64(root) + R"("})");

  // The subordinate (pathlen 0) issues leaves but no further CA.
  std::string leaf_arn = s(ok(true, "IssueCertificate",
                              issueBody(sub, leafCsr("svc.local"), "SHA384WITHECDSA", "",
                                        R"({"Value":30,"Type":"DAYS"})")),
                           "CertificateArn");
  EXPECT_EQ(err(true, "IssueCertificate",
                issueBody(sub, leafCsr("ca2"), "SHA384WITHECDSA",
                          "SubordinateCACertificate_PathLen0/V1", R"({"Value":1,"Type":"DAYS"})")),
            "InvalidArgsException");
  Value leaf =
      ok(true, "GetCertificate",
         R"({"CertificateAuthorityArn":")" + sub + R"(","CertificateArn":")" + leaf_arn + R"("})");
  EXPECT_EQ(verify(s(leaf, "Certificate"), root, s(leaf, "CertificateChain")), "ok");
  EXPECT_NE(verify(s(leaf, "Certificate"), root), "ok") << "without the subordinate: no chain";

  // Validity beyond the issuer's own is refused.
  EXPECT_EQ(
      err(true, "IssueCertificate",
          issueBody(sub, leafCsr("long"), "SHA384WITHECDSA", "", R"({"Value":20,"Type":"YEARS"})")),
      "InvalidArgsException");

  // Revoke -> the CRL holds the serial.
  std::string serial_hex = leaf_arn.substr(leaf_arn.rfind('/') + 1);
  ok(true, "RevokeCertificate",
     R"({"CertificateAuthorityArn":")" + sub + R"(","CertificateSerial":")" +
         serialColonHex(*parseSerialHex(serial_hex)) + R"(","RevocationReason":"KEY_COMPROMISE"})");
  EXPECT_EQ(err(true, "RevokeCertificate",
                R"({"CertificateAuthorityArn":")" + sub + R"(","CertificateSerial":")" +
                    serial_hex + R"(","RevocationReason":"KEY_COMPROMISE"})"),
            "RequestAlreadyProcessedException");
  std::string id = sub.substr(sub.rfind('/') + 1);
  auto crl_kv = store_.get("ca/pca-crl/" + id);
  ASSERT_TRUE(crl_kv && crl_kv->has_value());
  auto crl_rec = stacks::parseJson((*crl_kv)->value);
  auto der = base64Decode(s(*crl_rec, "Der"));
  auto crl = parseCrlDer(*der);
  ASSERT_TRUE(crl);
  auto sub_cert = parseCert(sub_pem);
  EXPECT_EQ(X509_CRL_verify(crl->get(), X509_get0_pubkey(sub_cert->get())), 1);
  auto serial_bytes = parseSerialHex(serial_hex);
  BIGNUM* bn = BN_bin2bn(reinterpret_cast<const unsigned char*>(serial_bytes->data()),
                         static_cast<int>(serial_bytes->size()), nullptr);
  ASSERT_NE(bn, nullptr);
  ASN1_INTEGER* ai = BN_to_ASN1_INTEGER(bn, nullptr);
  X509_REVOKED* found = nullptr;
  EXPECT_EQ(X509_CRL_get0_by_serial(crl->get(), &found, ai), 1) << "the CRL lists the serial";
  ASN1_INTEGER_free(ai);
  BN_free(bn);
  EXPECT_NE(s(*crl_rec, "Pem").find("BEGIN X509 CRL"), std::string::npos);
}

// What the compiler gets for ACM PCA trust: the certificates and the CRLs of the CA and of the
// weft CAs above it, and the store keys a revocation rewrites.
TEST_F(CaApiTest, ProxyTrustBundleCarriesTheChainsCrls) {
  std::string root_arn = createCa("ROOT");
  std::string root = activateRoot(root_arn);
  std::string sub = createCa("SUBORDINATE", "EC_prime256v1", "SHA256WITHECDSA", "sub");
  std::string csr = s(ok(true, "GetCertificateAuthorityCsr", caArnBody(sub)), "Csr");
  std::string sub_cert_arn =
      s(ok(true, "IssueCertificate",
           issueBody(root_arn, csr, "SHA256WITHRSA", "SubordinateCACertificate_PathLen0/V1",
                     R"({"Value":5,"Type":"YEARS"})")),
        "CertificateArn");
  std::string sub_pem = s(ok(true, "GetCertificate",
                             R"({"CertificateAuthorityArn":")" + root_arn +
                                 R"(","CertificateArn":")" + sub_cert_arn + R"("})"),
                          "Certificate");
  ok(true, "ImportCertificateAuthorityCertificate",
     R"({"CertificateAuthorityArn":")" + sub + R"(","Certificate":")" + b64(sub_pem) +
         R"(","CertificateChain":")" + b64(root) + R"("})");
  const std::string root_id = root_arn.substr(root_arn.rfind('/') + 1);
  const std::string sub_id = sub.substr(sub.rfind('/') + 1);
  auto crlPem = [&](const std::string& id) {
    auto kv = store_.get("ca/pca-crl/" + id);
    EXPECT_TRUE(kv && kv->has_value()) << "no CRL record for CA " << id;
    if (!kv || !kv->has_value()) return std::string();
    return s(*stacks::parseJson((*kv)->value), "Pem");
  };
  auto has = [](const std::vector<std::string>& v, const std::string& x) {
    return std::find(v.begin(), v.end(), x) != v.end();
  };

  // The root alone: its certificate and its CRL; no listing of every CA.
  auto r = api_.proxyTrustBundle({root_arn});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->crl_pem, crlPem(root_id));
  EXPECT_TRUE(has(r->depends_on, "ca/pca-crl/" + root_id));
  EXPECT_FALSE(has(r->depends_on, "ca/pca/")) << "no chain: no dependency on every CA";

  // The subordinate: its CRL, then the root's (found through its chain).
  auto b = api_.proxyTrustBundle({sub});
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_NE(b->pem.find(root), std::string::npos) << "the bundle carries the chain";
  const std::string want = crlPem(sub_id) + crlPem(root_id);
  EXPECT_EQ(b->crl_pem, want) << "the subordinate's CRL then its issuer's";
  for (const std::string& key :
       {"ca/pca-crl/" + sub_id, "ca/pca-crl/" + root_id, std::string("ca/pca/")})
    EXPECT_TRUE(has(b->depends_on, key)) << "depends_on lacks " << key;
  EXPECT_TRUE(std::is_sorted(b->depends_on.begin(), b->depends_on.end()));

  // Both named: each CRL once.
  auto both = api_.proxyTrustBundle({sub, root_arn});
  ASSERT_TRUE(both) << both.error().message;
  EXPECT_EQ(both->crl_pem, want);

  // A revocation by the subordinate changes what the trust carries.
  std::string leaf_arn = s(ok(true, "IssueCertificate",
                              issueBody(sub, leafCsr("svc.local"), "SHA256WITHECDSA", "",
                                        R"({"Value":30,"Type":"DAYS"})")),
                           "CertificateArn");
  std::string serial_hex = leaf_arn.substr(leaf_arn.rfind('/') + 1);
  ok(true, "RevokeCertificate",
     R"({"CertificateAuthorityArn":")" + sub + R"(","CertificateSerial":")" + serial_hex +
         R"(","RevocationReason":"KEY_COMPROMISE"})");
  auto after = api_.proxyTrustBundle({sub});
  ASSERT_TRUE(after) << after.error().message;
  EXPECT_NE(after->crl_pem, b->crl_pem) << "the revocation must reach the trust's CRLs";
  EXPECT_EQ(after->crl_pem, crlPem(sub_id) + crlPem(root_id));
  auto again = api_.proxyTrustBundle({sub});
  ASSERT_TRUE(again);
  EXPECT_EQ(again->crl_pem, after->crl_pem) << "deterministic";
  EXPECT_EQ(again->depends_on, after->depends_on);
}

TEST_F(CaApiTest, DeleteRestoreAndWindow) {
  std::string arn = createCa("ROOT");
  activateRoot(arn);
  EXPECT_EQ(err(true, "DeleteCertificateAuthority", caArnBody(arn)), "InvalidStateException");
  ok(true, "UpdateCertificateAuthority",
     R"({"CertificateAuthorityArn":")" + arn + R"(","Status":"DISABLED"})");
  EXPECT_EQ(err(true, "DeleteCertificateAuthority",
                R"({"CertificateAuthorityArn":")" + arn + R"(","PermanentDeletionTimeInDays":3})"),
            "ValidationException");
  ok(true, "DeleteCertificateAuthority",
     R"({"CertificateAuthorityArn":")" + arn + R"(","PermanentDeletionTimeInDays":7})");
  Value d = ok(true, "DescribeCertificateAuthority", caArnBody(arn));
  EXPECT_EQ(s(*d.find("CertificateAuthority"), "Status"), "DELETED");
  ok(true, "RestoreCertificateAuthority", caArnBody(arn));
  d = ok(true, "DescribeCertificateAuthority", caArnBody(arn));
  EXPECT_EQ(s(*d.find("CertificateAuthority"), "Status"), "DISABLED");
  ok(true, "DeleteCertificateAuthority",
     R"({"CertificateAuthorityArn":")" + arn + R"(","PermanentDeletionTimeInDays":7})");
  time_.advance(std::chrono::hours(24 * 7 + 1));
  EXPECT_EQ(err(true, "DescribeCertificateAuthority", caArnBody(arn)), "ResourceNotFoundException")
      << "past the restore window the CA is gone";
  EXPECT_EQ(
      ok(true, "ListCertificateAuthorities", "{}").find("CertificateAuthorities")->items().size(),
      0u);
}

TEST_F(CaApiTest, AcmRenewRevokeDeleteAndList) {
  std::string ca = createCa("ROOT");
  activateRoot(ca);
  std::string arn = s(
      ok(false, "RequestCertificate",
         R"({"DomainName":"a.example.com","SubjectAlternativeNames":["b.example.com","a.example.com"],"CertificateAuthorityArn":")" +
             ca + R"(","KeyAlgorithm":"EC_prime256v1"})"),
      "CertificateArn");
  Value d1 = *ok(false, "DescribeCertificate", R"({"CertificateArn":")" + arn + R"("})")
                  .find("Certificate");
  EXPECT_EQ(stacks::toJson(*d1.find("SubjectAlternativeNames")),
            R"(["a.example.com","b.example.com"])");
  ok(false, "RenewCertificate", R"({"CertificateArn":")" + arn + R"("})");
  Value d2 = *ok(false, "DescribeCertificate", R"({"CertificateArn":")" + arn + R"("})")
                  .find("Certificate");
  EXPECT_NE(s(d1, "Serial"), s(d2, "Serial"));
  EXPECT_EQ(s(*d2.find("RenewalSummary"), "RenewalStatus"), "SUCCESS");
  auto list = ok(false, "ListCertificates", R"({"Includes":{"keyTypes":["EC_prime256v1"]}})");
  EXPECT_EQ(list.find("CertificateSummaryList")->items().size(), 1u);
  EXPECT_EQ(ok(false, "ListCertificates", "{}").find("CertificateSummaryList")->items().size(), 0u)
      << "ACM lists RSA_2048 certificates unless keyTypes says otherwise";
  // Revoking through ACM PCA shows in ACM.
  ok(true, "RevokeCertificate",
     R"({"CertificateAuthorityArn":")" + ca + R"(","CertificateSerial":")" + s(d2, "Serial") +
         R"(","RevocationReason":"SUPERSEDED"})");
  Value d3 = *ok(false, "DescribeCertificate", R"({"CertificateArn":")" + arn + R"("})")
                  .find("Certificate");
  EXPECT_EQ(s(d3, "Status"), "REVOKED");
  EXPECT_EQ(s(d3, "RevocationReason"), "SUPERCEDED");
  // In use by a virtual node: not deletable.
  ASSERT_TRUE(store_.commit({StoreOp::put(
      "appmesh/virtualNode/m/n",
      R"({"virtualNode":{"metadata":{"arn":"arn:aws:appmesh:us-west-2:123456789012:mesh/m/virtualNode/n"},"spec":{"x":")" +
          arn + R"("}}})",
      StoreOp::kAbsent)}));
  EXPECT_EQ(err(false, "DeleteCertificate", R"({"CertificateArn":")" + arn + R"("})"),
            "ResourceInUseException");
  ASSERT_TRUE(store_.commit({StoreOp::remove("appmesh/virtualNode/m/n", StoreOp::kAnyRevision)}));
  ok(false, "DeleteCertificate", R"({"CertificateArn":")" + arn + R"("})");
  EXPECT_EQ(err(false, "DescribeCertificate", R"({"CertificateArn":")" + arn + R"("})"),
            "ResourceNotFoundException");
}

TEST_F(CaApiTest, Errors) {
  EXPECT_EQ(err(true, "DescribeCertificateAuthority", R"({"CertificateAuthorityArn":"arn:x"})"),
            "InvalidArnException");
  EXPECT_EQ(err(true, "DescribeCertificateAuthority", "{}"), "ValidationException");
  EXPECT_EQ(err(true, "DescribeCertificateAuthority", "[1]"), "SerializationException");
  EXPECT_EQ(err(true, "DescribeCertificateAuthority", "{bad"), "SerializationException");
  EXPECT_EQ(err(true, "DescribeCertificateAuthority",
                caArnBody("arn:aws:acm-pca:us-west-2:123456789012:certificate-authority/"
                          "00000000-0000-4000-8000-000000000000")),
            "ResourceNotFoundException");
  EXPECT_EQ(
      err(true, "CreateCertificateAuthority",
          R"({"CertificateAuthorityType":"ROOT","CertificateAuthorityConfiguration":{"KeyAlgorithm":"RSA_2048","SigningAlgorithm":"SHA256WITHECDSA","Subject":{"CommonName":"x"}}})"),
      "InvalidArgsException");
  EXPECT_EQ(err(true, "CreateCertificateAuthority",
                R"({"CertificateAuthorityType":"MIDDLE","CertificateAuthorityConfiguration":{}})"),
            "ValidationException");
  EXPECT_EQ(err(true, "ListCertificateAuthorities", R"({"NextToken":"garbage"})"),
            "InvalidNextTokenException");
  EXPECT_EQ(err(true, "Bogus", "{}"), "UnknownOperationException");
  std::string ca = createCa("ROOT");
  activateRoot(ca);
  EXPECT_EQ(err(true, "IssueCertificate",
                issueBody(ca, "not a csr", "SHA256WITHRSA", "", R"({"Value":1,"Type":"DAYS"})")),
            "MalformedCSRException");
  EXPECT_EQ(
      err(true, "IssueCertificate",
          issueBody(ca, leafCsr("x"), "SHA256WITHRSA", "Nope/V1", R"({"Value":1,"Type":"DAYS"})")),
      "InvalidArgsException");
  EXPECT_EQ(err(true, "IssueCertificate",
                issueBody(ca, leafCsr("x"), "SHA256WITHECDSA", "", R"({"Value":1,"Type":"DAYS"})")),
            "InvalidArgsException")
      << "an ECDSA algorithm for an RSA CA";
  EXPECT_EQ(
      err(true, "ImportCertificateAuthorityCertificate",
          R"({"CertificateAuthorityArn":")" + ca + R"(","Certificate":")" + b64("junk") + R"("})"),
      "MalformedCertificateException");
  EXPECT_EQ(err(false, "RequestCertificate", R"({"DomainName":"example.com"})"),
            "InvalidParameterException");
  EXPECT_EQ(err(false, "RequestCertificate",
                R"({"DomainName":"-x-.example.com","CertificateAuthorityArn":")" + ca + R"("})"),
            "ValidationException");
  EXPECT_EQ(
      err(false, "RequestCertificate",
          R"({"DomainName":"a.example.com","CertificateAuthorityArn":"arn:aws:s3:::some-bucket-name"})"),
      "InvalidArnException");
  EXPECT_EQ(err(false, "DescribeCertificate",
                R"({"CertificateArn":"arn:aws:acm:us-west-2:123456789012:nope/1"})"),
            "InvalidArnException");
  EXPECT_EQ(
      err(false, "ExportCertificate",
          R"({"CertificateArn":"arn:aws:acm:us-west-2:123456789012:certificate/00000000-0000-4000-8000-000000000000","Passphrase":")" +
              b64("abc") + R"("})"),
      "ValidationException")
      << "a passphrase of fewer than 4 bytes";
  // A disabled CA: ACM's certificate FAILS with PCA_INVALID_STATE.
  ok(true, "UpdateCertificateAuthority",
     R"({"CertificateAuthorityArn":")" + ca + R"(","Status":"DISABLED"})");
  std::string arn =
      s(ok(false, "RequestCertificate",
           R"({"DomainName":"a.example.com","CertificateAuthorityArn":")" + ca + R"("})"),
        "CertificateArn");
  Value d = *ok(false, "DescribeCertificate", R"({"CertificateArn":")" + arn + R"("})")
                 .find("Certificate");
  EXPECT_EQ(s(d, "Status"), "FAILED");
  EXPECT_EQ(s(d, "FailureReason"), "PCA_INVALID_STATE");
  EXPECT_EQ(err(false, "GetCertificate", R"({"CertificateArn":")" + arn + R"("})"),
            "RequestInProgressException");
}

TEST_F(CaApiTest, IdempotencyTokens) {
  std::string body =
      R"({"CertificateAuthorityType":"ROOT","IdempotencyToken":"t1","CertificateAuthorityConfiguration":{"KeyAlgorithm":"EC_prime256v1","SigningAlgorithm":"SHA256WITHECDSA","Subject":{"CommonName":"x"}}})";
  std::string a = s(ok(true, "CreateCertificateAuthority", body), "CertificateAuthorityArn");
  std::string b = s(ok(true, "CreateCertificateAuthority", body), "CertificateAuthorityArn");
  EXPECT_EQ(a, b);
  EXPECT_EQ(
      err(true, "CreateCertificateAuthority",
          R"({"CertificateAuthorityType":"SUBORDINATE","IdempotencyToken":"t1","CertificateAuthorityConfiguration":{"KeyAlgorithm":"EC_prime256v1","SigningAlgorithm":"SHA256WITHECDSA","Subject":{"CommonName":"x"}}})"),
      "IdempotentParameterMismatchException");
}

TEST(CaInitTest, RefusesAnotherKek) {
  MemoryStore store;
  SimTimeSource time;
  auto k1 = Kek::fromBytes(std::string(32, '1'));
  auto k2 = Kek::fromBytes(std::string(32, '2'));
  CaApi a(store, time, *k1, {});
  ASSERT_TRUE(a.init());
  ASSERT_TRUE(a.init()) << "the same KEK passes again";
  CaApi b(store, time, *k2, {});
  auto st = b.init();
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("does not match"), std::string::npos);
}

TEST(PkiTest, SerialsAndBase64) {
  std::string s = randomSerial();
  EXPECT_EQ(s.size(), 16u);
  EXPECT_LT(static_cast<unsigned char>(s[0]), 0x80);
  EXPECT_EQ(*parseSerialHex(serialColonHex(s)), s);
  EXPECT_EQ(*parseSerialHex(serialHex(s)), s);
  EXPECT_FALSE(parseSerialHex("zz"));
  EXPECT_EQ(*base64Decode(base64Encode("hello!?")), "hello!?");
  EXPECT_FALSE(base64Decode("a=bc"));
}

}  // namespace
}  // namespace weft::control::ca
