// Bring your own PKI (POST /weft/v1/certificate-authorities/import) and weft's
// WeftValidityInDays extension of ACM RequestCertificate (docs/ca.md).
#include <gtest/gtest.h>
#include <openssl/x509_vfy.h>

#include <chrono>
#include <string>
#include <vector>

#include "common/time.h"
#include "control/ca/ca_api.h"
#include "control/ca/pki.h"
#include "control/stacks/json_value.h"
#include "control/store/memory_store.h"

namespace weft::control::ca {
namespace {

using stacks::Value;

constexpr int64_t kDay = 86400;

// A CA made outside weft, as an operator's own PKI would hand it over.
struct External {
  KeyPtr key;
  CertPtr cert;
  std::string cert_pem;
  std::string key_pem;  // unencrypted PKCS#8
};

class CaImportTest : public ::testing::Test {
 protected:
  CaImportTest()
      : kek_(Kek::fromBytes(std::string(32, 'K')).value()),
        api_(store_, time_, kek_, Options{"us-west-2", "123456789012"}) {}

  void SetUp() override { ASSERT_TRUE(api_.init()); }

  int64_t now() const {
    return std::chrono::duration_cast<std::chrono::seconds>(time_.systemNow().time_since_epoch())
        .count();
  }

  // `issuer` null: self-signed.
  External make(KeyAlgorithm alg, const std::string& cn, const External* issuer,
                Profile profile = Profile::kCa, int64_t not_before = -1, int64_t not_after = -1) {
    External e;
    e.key = std::move(generateKey(alg).value());
    auto name = makeName({{"CN", cn}, {"O", "Own PKI"}, {"C", "NL"}});
    IssueParams p;
    p.subject = name->get();
    p.subject_key = e.key.get();
    p.issuer = issuer ? issuer->cert.get() : nullptr;
    p.issuer_key = issuer ? issuer->key.get() : e.key.get();
    p.alg = defaultSigningAlgorithm(p.issuer_key);
    p.serial = randomSerial();
    p.not_before = not_before >= 0 ? not_before : now() - 60;
    p.not_after = not_after >= 0 ? not_after : now() + 10 * 365 * kDay;
    p.profile = profile;
    if (profile == Profile::kEndEntity) p.alt_names.dns = {cn};
    e.cert = std::move(issueCertificate(p).value());
    e.cert_pem = certToPem(e.cert.get());
    e.key_pem = privateKeyToPem(e.key.get());
    return e;
  }

  struct Answer {
    int status;
    Value body;
    std::string type;
    std::string raw;
  };
  Answer importRaw(const std::string& body, const std::string& method = "POST") {
    ApiRequest r;
    r.method = method;
    r.path = "/weft/v1/certificate-authorities/import";
    r.body = body;
    ApiResponse resp = api_.handleWeft(r);
    Answer a{resp.status, Value::object(), "", resp.body};
    if (auto v = stacks::parseJson(resp.body.empty() ? "{}" : resp.body)) a.body = *v;
    for (const auto& [k, val] : resp.headers)
      if (k == "x-amzn-ErrorType") a.type = val;
    return a;
  }
  Answer import(const std::string& cert, const std::string& key, const std::string& chain = "",
                const std::string& passphrase = "", const std::string& signing = "") {
    Value in = Value::object();
    in.set("Certificate", Value::string(cert));
    in.set("PrivateKey", Value::string(key));
    if (!chain.empty()) in.set("CertificateChain", Value::string(chain));
    if (!passphrase.empty()) in.set("Passphrase", Value::string(passphrase));
    if (!signing.empty()) in.set("SigningAlgorithm", Value::string(signing));
    return importRaw(stacks::toJson(in));
  }
  // The import is refused with `type`; the message holds `part` and never key material.
  void refused(const Answer& a, const std::string& type, const std::string& part) {
    EXPECT_EQ(a.status, 400) << a.raw;
    EXPECT_EQ(a.type, type) << a.raw;
    EXPECT_NE(a.raw.find(part), std::string::npos) << "expected \"" << part << "\" in " << a.raw;
    EXPECT_EQ(a.raw.find("PRIVATE KEY"), std::string::npos) << "key material in " << a.raw;
  }
  std::string imported(const Answer& a, const std::string& type) {
    EXPECT_EQ(a.status, 200) << a.raw;
    EXPECT_EQ(s(a.body, "Type"), type) << a.raw;
    return s(a.body, "CertificateAuthorityArn");
  }

  Value call(bool pca, const std::string& op, const std::string& body, int want = 200,
             std::string* type = nullptr) {
    ApiRequest r;
    r.method = "POST";
    r.path = "/";
    r.headers = {{"x-amz-target", (pca ? "ACMPrivateCA." : "CertificateManager.") + op}};
    r.body = body;
    ApiResponse resp = pca ? api_.handlePca(r) : api_.handleAcm(r);
    EXPECT_EQ(resp.status, want) << op << ": " << resp.body;
    for (const auto& [k, val] : resp.headers)
      if (k == "x-amzn-ErrorType" && type) *type = val;
    auto v = stacks::parseJson(resp.body.empty() ? "{}" : resp.body);
    return v ? *v : Value::object();
  }
  static std::string s(const Value& v, std::string_view k) {
    const Value* m = v.find(k);
    return m ? std::string(m->str()) : std::string();
  }
  static int64_t n(const Value& v, std::string_view k) {
    const Value* m = v.find(k);
    return m ? std::strtoll(m->text().c_str(), nullptr, 10) : 0;
  }

  // RequestCertificate (optionally with WeftValidityInDays) answering the ARN.
  std::string request(const std::string& ca, const std::string& domain, int64_t days = 0) {
    std::string b = R"({"DomainName":")" + domain + R"(","CertificateAuthorityArn":")" + ca + "\"";
    if (days) b += ",\"WeftValidityInDays\":" + std::to_string(days);
    return s(call(false, "RequestCertificate", b + "}"), "CertificateArn");
  }
  Value describe(const std::string& acm_arn) {
    Value d = call(false, "DescribeCertificate", R"({"CertificateArn":")" + acm_arn + "\"}");
    return d.find("Certificate") ? *d.find("Certificate") : Value::object();
  }

  // X509_verify_cert of `leaf_pem` against `root` (+ the intermediates of `chain_pem`).
  std::string verify(const std::string& leaf_pem, X509* root, const std::string& chain_pem = "") {
    auto leaf = parseCert(leaf_pem);
    if (!leaf) return "leaf: " + leaf.error().message;
    X509_STORE* store = X509_STORE_new();
    X509_STORE_add_cert(store, root);
    STACK_OF(X509)* untrusted = sk_X509_new_null();
    std::vector<CertPtr> chain;
    if (!chain_pem.empty())
      if (auto c = parseCertChain(chain_pem)) chain = std::move(*c);
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

  MemoryStore store_;
  SimTimeSource time_;
  Kek kek_;
  CaApi api_;
};

TEST_F(CaImportTest, SelfSignedRootBecomesAnActiveCaThatIssuesLikeACreatedOne) {
  External root = make(KeyAlgorithm::kEcP256, "Own Root", nullptr);
  std::string arn = imported(import(root.cert_pem, root.key_pem), "ROOT");
  ASSERT_EQ(arn.rfind("arn:aws:acm-pca:us-west-2:123456789012:certificate-authority/", 0), 0u)
      << arn;

  Value d =
      call(true, "DescribeCertificateAuthority", R"({"CertificateAuthorityArn":")" + arn + "\"}");
  const Value& ca = *d.find("CertificateAuthority");
  EXPECT_EQ(s(ca, "Status"), "ACTIVE");
  EXPECT_EQ(s(ca, "Type"), "ROOT");
  EXPECT_EQ(n(ca, "NotAfter"), certNotAfter(root.cert.get()));
  const Value& cfg = *ca.find("CertificateAuthorityConfiguration");
  EXPECT_EQ(s(cfg, "KeyAlgorithm"), "EC_prime256v1");
  EXPECT_EQ(s(cfg, "SigningAlgorithm"), "SHA256WITHECDSA");
  EXPECT_EQ(stacks::toJson(*cfg.find("Subject")),
            R"({"CommonName":"Own Root","Organization":"Own PKI","Country":"NL"})");
  Value got = call(true, "GetCertificateAuthorityCertificate",
                   R"({"CertificateAuthorityArn":")" + arn + "\"}");
  EXPECT_EQ(s(got, "Certificate"), root.cert_pem);
  EXPECT_EQ(got.find("CertificateChain"), nullptr) << "a root has no chain";

  // ACM PCA IssueCertificate with a CSR.
  auto leaf_key = generateKey(KeyAlgorithm::kEcP256);
  auto leaf_name = makeName({{"CN", "svc.own.local"}});
  auto csr = makeCsr(leaf_key->get(), leaf_name->get(), defaultSigningAlgorithm(leaf_key->get()));
  Value issued = call(true, "IssueCertificate",
                      R"({"CertificateAuthorityArn":")" + arn + R"(","Csr":")" +
                          base64Encode(csrToPem(csr->get())) +
                          R"(","SigningAlgorithm":"SHA256WITHECDSA",)"
                          R"("Validity":{"Value":30,"Type":"DAYS"}})");
  Value leaf = call(true, "GetCertificate",
                    R"({"CertificateAuthorityArn":")" + arn + R"(","CertificateArn":")" +
                        s(issued, "CertificateArn") + "\"}");
  EXPECT_EQ(verify(s(leaf, "Certificate"), root.cert.get()), "ok");

  // ACM RequestCertificate.
  std::string acm_arn = request(arn, "*.own.local");
  EXPECT_EQ(s(describe(acm_arn), "Status"), "ISSUED");
  Value acm_cert = call(false, "GetCertificate", R"({"CertificateArn":")" + acm_arn + "\"}");
  EXPECT_EQ(verify(s(acm_cert, "Certificate"), root.cert.get()), "ok");

  // What the compiler serves for validation.trust.acm and tls.certificate.acm.
  auto trust = api_.proxyTrustBundle({arn});
  ASSERT_TRUE(trust) << trust.error().message;
  EXPECT_EQ(trust->pem, root.cert_pem);
  auto material = api_.proxyCertificate(acm_arn);
  ASSERT_TRUE(material) << material.error().message;

  // The key is stored sealed, and the CA has its (empty) CRL.
  auto listed = store_.list("ca/", "", 0);
  ASSERT_TRUE(listed);
  bool has_crl = false;
  for (const KeyValue& kv : *listed) {
    EXPECT_EQ(kv.value.find("PRIVATE KEY"), std::string::npos) << "plaintext key at " << kv.key;
    if (kv.key.rfind("ca/pca-crl/", 0) == 0) has_crl = true;
  }
  EXPECT_TRUE(has_crl) << "an imported CA has a CRL from its activation";

  // Revocation works as for a created CA.
  call(true, "RevokeCertificate",
       R"({"CertificateAuthorityArn":")" + arn + R"(","CertificateSerial":")" +
           s(describe(acm_arn), "Serial") + R"(","RevocationReason":"KEY_COMPROMISE"})");
  EXPECT_EQ(s(describe(acm_arn), "Status"), "REVOKED");
}

TEST_F(CaImportTest, SubordinateNeedsAChainUpToASelfSignedRoot) {
  External root = make(KeyAlgorithm::kRsa2048, "Own Root", nullptr);
  External sub = make(KeyAlgorithm::kRsa2048, "Own Issuing CA", &root);

  refused(import(sub.cert_pem, sub.key_pem), "InvalidRequestException", "CertificateChain");
  External stranger = make(KeyAlgorithm::kRsa2048, "Stranger Root", nullptr);
  refused(import(sub.cert_pem, sub.key_pem, stranger.cert_pem), "InvalidRequestException",
          "does not verify");
  refused(import(sub.cert_pem, sub.key_pem, "not pem"), "MalformedCertificateException",
          "CertificateChain");

  // The chain may repeat the certificate itself; it is not kept.
  std::string arn =
      imported(import(sub.cert_pem, sub.key_pem, sub.cert_pem + root.cert_pem), "SUBORDINATE");
  Value got = call(true, "GetCertificateAuthorityCertificate",
                   R"({"CertificateAuthorityArn":")" + arn + "\"}");
  EXPECT_EQ(s(got, "CertificateChain"), root.cert_pem);

  std::string acm_arn = request(arn, "api.own.local");
  Value acm_cert = call(false, "GetCertificate", R"({"CertificateArn":")" + acm_arn + "\"}");
  EXPECT_EQ(s(acm_cert, "CertificateChain"), sub.cert_pem + root.cert_pem);
  EXPECT_EQ(verify(s(acm_cert, "Certificate"), root.cert.get(), s(acm_cert, "CertificateChain")),
            "ok");
  auto trust = api_.proxyTrustBundle({arn});
  ASSERT_TRUE(trust) << trust.error().message;
  EXPECT_EQ(trust->pem, sub.cert_pem + root.cert_pem);
}

TEST_F(CaImportTest, RefusesWhatIsNotAUsableCa) {
  External root = make(KeyAlgorithm::kRsa2048, "Own Root", nullptr);
  External other = make(KeyAlgorithm::kRsa2048, "Other Root", nullptr);
  refused(import(root.cert_pem, other.key_pem), "CertificateMismatchException",
          "not the key of the certificate");

  External leaf = make(KeyAlgorithm::kEcP256, "leaf.own.local", &root, Profile::kEndEntity);
  refused(import(leaf.cert_pem, leaf.key_pem, root.cert_pem), "InvalidRequestException",
          "basicConstraints CA:TRUE");

  External expired = make(KeyAlgorithm::kEcP256, "Old Root", nullptr, Profile::kCa,
                          now() - 400 * kDay, now() - kDay);
  refused(import(expired.cert_pem, expired.key_pem), "InvalidRequestException", "expired");
  External future = make(KeyAlgorithm::kEcP256, "Future Root", nullptr, Profile::kCa,
                         now() + 30 * kDay, now() + 400 * kDay);
  refused(import(future.cert_pem, future.key_pem), "InvalidRequestException", "not valid yet");

  refused(import(root.cert_pem, root.key_pem, other.cert_pem), "InvalidRequestException",
          "takes no CertificateChain");
  refused(import("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", root.key_pem),
          "MalformedCertificateException", "Certificate");
  refused(import(root.cert_pem, "not a key"), "InvalidRequestException", "no PEM private key");
  refused(import(root.cert_pem, root.key_pem, "", "", "SHA256WITHECDSA"), "InvalidArgsException",
          "SHA256WITHECDSA");
  refused(importRaw(R"({"Certificate":"x"})"), "ValidationException", "PrivateKey");
  refused(importRaw("{"), "SerializationException", "JSON");
  Answer get = importRaw("", "GET");
  EXPECT_EQ(get.status, 405) << get.raw;

  Value list = call(true, "ListCertificateAuthorities", "{}");
  EXPECT_EQ(list.find("CertificateAuthorities")->items().size(), 0u)
      << "a refused import leaves nothing behind";

  // A chosen signing algorithm of the key's family is kept.
  std::string arn = imported(import(root.cert_pem, root.key_pem, "", "", "SHA384WITHRSA"), "ROOT");
  Value d =
      call(true, "DescribeCertificateAuthority", R"({"CertificateAuthorityArn":")" + arn + "\"}");
  EXPECT_EQ(s(*d.find("CertificateAuthority")->find("CertificateAuthorityConfiguration"),
              "SigningAlgorithm"),
            "SHA384WITHRSA");
}

TEST_F(CaImportTest, EncryptedKeyNeedsItsPassphrase) {
  External root = make(KeyAlgorithm::kRsa2048, "Own Root", nullptr);
  auto encrypted = encryptedPrivateKeyPem(root.key.get(), "correct horse");
  ASSERT_TRUE(encrypted) << encrypted.error().message;
  refused(import(root.cert_pem, *encrypted), "InvalidRequestException", "passphrase");
  refused(import(root.cert_pem, *encrypted, "", "wrong horse"), "InvalidRequestException",
          "does not decrypt");
  std::string arn = imported(import(root.cert_pem, *encrypted, "", "correct horse"), "ROOT");
  EXPECT_EQ(s(describe(request(arn, "a.own.local")), "Status"), "ISSUED")
      << "the decrypted key signs";
  // A passphrase given with a plain key is ignored.
  imported(import(root.cert_pem, root.key_pem, "", "unused"), "ROOT");
}

TEST(ReadForeignPrivateKeyTest, FormsAndErrors) {
  auto key = generateKey(KeyAlgorithm::kEcP384).value();
  auto plain = readForeignPrivateKey(privateKeyToPem(key.get()), "");
  ASSERT_TRUE(plain) << plain.error().message;
  EXPECT_TRUE(samePublicKey(plain->get(), key.get()));
  // Other PEM blocks before the key are skipped.
  auto bundled = readForeignPrivateKey(
      "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" + privateKeyToPem(key.get()),
      "");
  EXPECT_TRUE(bundled) << (bundled ? "" : bundled.error().message);
  std::string enc = encryptedPrivateKeyPem(key.get(), "pass phrase").value();
  EXPECT_EQ(readForeignPrivateKey(enc, "").error().code, kKeyNeedsPassphrase);
  EXPECT_EQ(readForeignPrivateKey(enc, "nope").error().code, kKeyWrongPassphrase);
  auto opened = readForeignPrivateKey(enc, "pass phrase");
  ASSERT_TRUE(opened) << opened.error().message;
  EXPECT_TRUE(samePublicKey(opened->get(), key.get()));
  EXPECT_FALSE(readForeignPrivateKey("nothing here", ""));
}

TEST_F(CaImportTest, ValidityInDaysIsWeftsExtensionOfRequestCertificate) {
  External root = make(KeyAlgorithm::kEcP256, "Own Root", nullptr, Profile::kCa, now() - 60,
                       now() + 100 * kDay);
  std::string ca = imported(import(root.cert_pem, root.key_pem), "ROOT");

  std::string two = request(ca, "short.own.local", 2);
  Value d = describe(two);
  EXPECT_EQ(s(d, "Status"), "ISSUED");
  EXPECT_NEAR(static_cast<double>(n(d, "NotAfter") - now()), 2.0 * kDay, 60);
  Value got = call(false, "GetCertificate", R"({"CertificateArn":")" + two + "\"}");
  auto cert = parseCert(s(got, "Certificate"));
  ASSERT_TRUE(cert);
  EXPECT_NEAR(static_cast<double>(certNotAfter(cert.value().get()) - now()), 2.0 * kDay, 60);

  // A renewal keeps the validity asked for.
  time_.advance(std::chrono::hours(36));
  call(false, "RenewCertificate", R"({"CertificateArn":")" + two + "\"}");
  EXPECT_NEAR(static_cast<double>(n(describe(two), "NotAfter") - now()), 2.0 * kDay, 60);

  std::string type;
  call(false, "RequestCertificate",
       R"({"DomainName":"x.own.local","CertificateAuthorityArn":")" + ca +
           R"(","WeftValidityInDays":0})",
       400, &type);
  EXPECT_EQ(type, "ValidationException");
  Value too_long = call(false, "RequestCertificate",
                        R"({"DomainName":"x.own.local","CertificateAuthorityArn":")" + ca +
                            R"(","WeftValidityInDays":120})",
                        400, &type);
  EXPECT_EQ(type, "InvalidParameterException");
  EXPECT_NE(s(too_long, "message").find("at most 98 days"), std::string::npos)
      << stacks::toJson(too_long);
  call(false, "RequestCertificate",
       R"({"DomainName":"x.own.local","CertificateAuthorityArn":")" + ca +
           R"(","WeftValidityInDays":"2"})",
       400, &type);
  EXPECT_EQ(type, "SerializationException");
  // 98 days fit; without the member ACM's 395 days do not: FAILED, as ACM answers.
  EXPECT_EQ(s(describe(request(ca, "x.own.local", 98)), "Status"), "ISSUED");
  Value acm = describe(request(ca, "y.own.local"));
  EXPECT_EQ(s(acm, "Status"), "FAILED");
  EXPECT_EQ(s(acm, "FailureReason"), "PCA_INVALID_DURATION");
}

TEST_F(CaImportTest, HandlesOnlyTheImportPath) {
  EXPECT_TRUE(CaApi::handles("/weft/v1/certificate-authorities/import"));
  EXPECT_TRUE(CaApi::handles("/weft/v1/certificate-authorities/import/"));
  EXPECT_FALSE(CaApi::handles("/weft/v1/certificate-authorities"));
  EXPECT_FALSE(CaApi::handles("/weft/v1/credentials"));
}

}  // namespace
}  // namespace weft::control::ca
