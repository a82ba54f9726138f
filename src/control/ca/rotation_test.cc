// CA rotation's phase machine (docs/security.md "Rotation"), with a SimTimeSource and an
// in-memory store: what the trust bundles hold in each phase, that nothing is signed with the
// new key before SIGNING_NEW, the retire time computed from the leaves, refusals (a rotation in
// progress, a subordinate with an external parent, retire-now too early), and the route.
#include "control/ca/rotation.h"

#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include "common/time.h"
#include "control/ca/pki.h"
#include "control/stacks/json_value.h"
#include "control/store/memory_store.h"

namespace weft::control::ca {
namespace {

using stacks::Value;

int certCount(const std::string& pem) {
  int n = 0;
  for (size_t pos = 0; (pos = pem.find("BEGIN CERTIFICATE", pos)) != std::string::npos; ++pos) ++n;
  return n;
}

// Whether `ca_pem`'s key signed `leaf_pem`.
bool signedBy(const std::string& leaf_pem, const std::string& ca_pem) {
  auto leaf = parseCert(leaf_pem);
  auto ca = parseCert(ca_pem);
  return leaf && ca && X509_verify(leaf->get(), X509_get0_pubkey(ca->get())) == 1;
}

std::string str(const Value& v, std::string_view k) {
  const Value* m = v.find(k);
  return m ? std::string(m->str()) : std::string();
}
int64_t num(const Value& v, std::string_view k) {
  const Value* m = v.find(k);
  return m && m->isNumber() ? std::stoll(m->text()) : 0;
}

// The CRLs of a PEM text, each with the serials it lists (hex, upper case), and whether it
// verifies with the public key of `ca_pem`.
struct CrlSeen {
  bool verifies = false;
  std::vector<std::string> serials;
};
std::vector<CrlSeen> crlsOf(const std::string& pem, const std::string& ca_pem) {
  std::vector<CrlSeen> out;
  BIO* cb = BIO_new_mem_buf(ca_pem.data(), static_cast<int>(ca_pem.size()));
  X509* ca = PEM_read_bio_X509(cb, nullptr, nullptr, nullptr);
  BIO_free(cb);
  BIO* b = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  while (X509_CRL* crl = PEM_read_bio_X509_CRL(b, nullptr, nullptr, nullptr)) {
    CrlSeen seen;
    seen.verifies = ca && X509_CRL_verify(crl, X509_get0_pubkey(ca)) == 1;
    STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl);
    for (int i = 0; i < sk_X509_REVOKED_num(revoked); ++i) {
      BIGNUM* bn = ASN1_INTEGER_to_BN(
          X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revoked, i)), nullptr);
      char* hex = BN_bn2hex(bn);
      seen.serials.push_back(hex);
      OPENSSL_free(hex);
      BN_free(bn);
    }
    out.push_back(std::move(seen));
    X509_CRL_free(crl);
  }
  ERR_clear_error();  // the end of the text
  BIO_free(b);
  X509_free(ca);
  return out;
}

class RotationTest : public ::testing::Test {
 protected:
  RotationTest()
      : kek_(Kek::fromBytes(std::string(32, 'R')).value()),
        api_(store_, time_, kek_, Options{"us-west-2", "123456789012"}),
        meshes_(store_, kek_, time_, MeshIdentityOptions{std::chrono::seconds(20)}),
        rotation_(api_, &meshes_, [this] { return caught_up_; }) {}

  void SetUp() override { ASSERT_TRUE(api_.init()); }

  int64_t now() const {
    return std::chrono::duration_cast<std::chrono::seconds>(time_.systemNow().time_since_epoch())
        .count();
  }

  Value call(bool pca, const std::string& op, const std::string& body, int want = 200) {
    ApiRequest r;
    r.method = "POST";
    r.path = "/";
    r.headers = {{"x-amz-target", (pca ? "ACMPrivateCA." : "CertificateManager.") + op}};
    r.body = body;
    ApiResponse resp = pca ? api_.handlePca(r) : api_.handleAcm(r);
    EXPECT_EQ(resp.status, want) << op << " answered " << resp.body;
    auto v = stacks::parseJson(resp.body.empty() ? "{}" : resp.body);
    return v ? *v : Value::object();
  }
  static std::string arnBody(const std::string& arn) {
    return R"({"CertificateAuthorityArn":")" + arn + R"("})";
  }
  std::string createCa(const std::string& type, const std::string& cn) {
    return str(call(true, "CreateCertificateAuthority",
                    R"({"CertificateAuthorityType":")" + type +
                        R"(","CertificateAuthorityConfiguration":{"KeyAlgorithm":"EC_prime256v1",)"
                        R"("SigningAlgorithm":"SHA256WITHECDSA","Subject":{"CommonName":")" +
                        cn + R"("}}})"),
               "CertificateAuthorityArn");
  }
  std::string issue(const std::string& ca, const std::string& csr, const std::string& tmpl,
                    const std::string& validity) {
    std::string b = R"({"CertificateAuthorityArn":")" + ca + R"(","Csr":")" + base64Encode(csr) +
                    R"(","SigningAlgorithm":"SHA256WITHECDSA","Validity":)" + validity;
    if (!tmpl.empty()) b += R"(,"TemplateArn":"arn:aws:acm-pca:::template/)" + tmpl + "\"";
    return str(call(true, "IssueCertificate", b + "}"), "CertificateArn");
  }
  std::string pcaCert(const std::string& ca, const std::string& cert_arn) {
    return str(call(true, "GetCertificate",
                    R"({"CertificateAuthorityArn":")" + ca + R"(","CertificateArn":")" + cert_arn +
                        R"("})"),
               "Certificate");
  }
  void import(const std::string& ca, const std::string& pem, const std::string& chain) {
    std::string b =
        R"({"CertificateAuthorityArn":")" + ca + R"(","Certificate":")" + base64Encode(pem) + "\"";
    if (!chain.empty()) b += R"(,"CertificateChain":")" + base64Encode(chain) + "\"";
    call(true, "ImportCertificateAuthorityCertificate", b + "}");
  }
  std::string activeRoot(const std::string& cn = "root") {
    std::string arn = createCa("ROOT", cn);
    std::string csr = str(call(true, "GetCertificateAuthorityCsr", arnBody(arn)), "Csr");
    import(arn,
           pcaCert(arn, issue(arn, csr, "RootCACertificate/V1", R"({"Value":10,"Type":"YEARS"})")),
           "");
    return arn;
  }
  std::string leafCsr(const std::string& cn) {
    auto key = generateKey(KeyAlgorithm::kEcP256);
    auto name = makeName({{"CN", cn}});
    return csrToPem(
        makeCsr(key->get(), name->get(), *parseSigningAlgorithm("SHA256WITHECDSA"))->get());
  }
  std::string caCertificate(const std::string& arn) {
    return str(call(true, "GetCertificateAuthorityCertificate", arnBody(arn)), "Certificate");
  }
  std::string bundle(const std::string& arn) {
    auto b = api_.proxyTrustBundle({arn});
    EXPECT_TRUE(b) << (b ? "" : b.error().message);
    return b ? b->pem : "";
  }
  Value status(const std::string& arn) {
    auto s = api_.rotationStatus(arn);
    EXPECT_TRUE(s) << (s ? "" : s.error().message);
    return s ? stacks::parseJson(*s).value() : Value::object();
  }
  std::string acmLeaf(const std::string& acm_arn) {
    return str(call(false, "GetCertificate", R"({"CertificateArn":")" + acm_arn + R"("})"),
               "Certificate");
  }
  void round() { EXPECT_EQ(ca_maintenance_failures(), 0); }
  int ca_maintenance_failures() {
    Status st = rotation_.runMaintenance(time_.systemNow());
    if (!st) ADD_FAILURE() << "maintenance: " << st.error().message;
    return st ? 0 : 1;
  }

  MemoryStore store_;
  SimTimeSource time_;
  Kek kek_;
  CaApi api_;
  MeshIdentityIssuer meshes_;
  bool caught_up_ = true;
  CaRotation rotation_;
};

TEST_F(RotationTest, RootRotatesThroughEveryPhase) {
  std::string ca = activeRoot();
  std::string old_root = caCertificate(ca);
  std::string acm =
      str(call(false, "RequestCertificate",
               R"({"DomainName":"svc.local","CertificateAuthorityArn":")" + ca + R"("})"),
          "CertificateArn");
  ASSERT_TRUE(signedBy(acmLeaf(acm), old_root));
  EXPECT_EQ(certCount(bundle(ca)), 1);
  EXPECT_EQ(str(status(ca), "phase"), "NONE");

  // PUBLISHING: both roots in the bundle; the old key still signs everything.
  auto started = api_.startRotation(ca);
  ASSERT_TRUE(started) << started.error().message;
  EXPECT_EQ(str(stacks::parseJson(*started).value(), "phase"), "PUBLISHING");
  std::string b = bundle(ca);
  ASSERT_EQ(certCount(b), 2) << b;
  EXPECT_EQ(b.find(old_root.substr(0, 200)), 0u) << "the old root comes first";
  EXPECT_EQ(caCertificate(ca), old_root) << "DescribeCertificateAuthority: still the old one";
  call(false, "RenewCertificate", R"({"CertificateArn":")" + acm + R"("})");
  EXPECT_TRUE(signedBy(acmLeaf(acm), old_root)) << "renewed before SIGNING_NEW: the old key";
  std::string direct = issue(ca, leafCsr("direct.local"), "", R"({"Value":10,"Type":"DAYS"})");
  EXPECT_TRUE(signedBy(pcaCert(ca, direct), old_root));
  auto again = api_.startRotation(ca);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, 409);
  EXPECT_NE(again.error().message.find("already in progress"), std::string::npos)
      << again.error().message;

  // The first round only observes; a round with a proxy behind does not switch.
  round();
  EXPECT_EQ(str(status(ca), "phase"), "PUBLISHING");
  caught_up_ = false;
  time_.advance(std::chrono::seconds(1));
  round();
  EXPECT_EQ(str(status(ca), "phase"), "PUBLISHING") << "a proxy has not acked the new bundle";
  caught_up_ = true;
  time_.advance(std::chrono::seconds(1));
  round();

  // SIGNING_NEW: the new key signs, the ACM certificate was re-issued, both roots still trusted.
  Value st = status(ca);
  ASSERT_EQ(str(st, "phase"), "SIGNING_NEW") << stacks::toJson(st);
  std::string new_root = caCertificate(ca);
  EXPECT_NE(new_root, old_root);
  auto o = parseCert(old_root), n = parseCert(new_root);
  EXPECT_EQ(X509_NAME_cmp(X509_get_subject_name(o->get()), X509_get_subject_name(n->get())), 0)
      << "same subject";
  EXPECT_NE(certSerial(o->get()), certSerial(n->get()));
  EXPECT_EQ(X509_check_issued(n->get(), n->get()), X509_V_OK) << "a root signs itself";
  EXPECT_TRUE(signedBy(acmLeaf(acm), new_root)) << "the listener's leaf moved to the new key";
  EXPECT_FALSE(signedBy(acmLeaf(acm), old_root));
  EXPECT_EQ(bundle(ca), b) << "the bundle text does not change at the switch";
  // Retire time: the latest old-key leaf (the two ACM ones live 395 days; the direct one 10).
  EXPECT_NEAR(static_cast<double>(num(st, "retireAt") - now()), 395 * 86400.0, 7200);

  // Time passes until every old-key leaf has expired: the old root leaves the bundle.
  time_.advance(std::chrono::hours(24 * 396));
  round();
  EXPECT_EQ(str(status(ca), "phase"), "NONE");
  EXPECT_EQ(bundle(ca), new_root + (new_root.back() == '\n' ? "" : "\n"));
  Value last = *status(ca).find("lastRotation");
  EXPECT_FALSE(last.find("RetiredEarly")->asBool());
}

TEST_F(RotationTest, RetireTimeSkipsRevokedLeavesAndRetireNowNeedsSigningNew) {
  std::string ca = activeRoot();
  std::string short_leaf = issue(ca, leafCsr("a.local"), "", R"({"Value":10,"Type":"DAYS"})");
  std::string long_leaf = issue(ca, leafCsr("b.local"), "", R"({"Value":20,"Type":"DAYS"})");
  std::string long_serial = long_leaf.substr(long_leaf.rfind('/') + 1);
  call(true, "RevokeCertificate",
       R"({"CertificateAuthorityArn":")" + ca + R"(","CertificateSerial":")" + long_serial +
           R"(","RevocationReason":"SUPERSEDED"})");
  ASSERT_TRUE(api_.startRotation(ca));
  auto early = api_.retireRotationNow(ca);
  ASSERT_FALSE(early) << "retire-now in PUBLISHING";
  EXPECT_EQ(early.error().code, 409);
  round();
  round();
  Value st = status(ca);
  ASSERT_EQ(str(st, "phase"), "SIGNING_NEW");
  EXPECT_NEAR(static_cast<double>(num(st, "retireAt") - now()), 10 * 86400.0, 7200)
      << "the revoked 20-day leaf does not hold the old root";
  std::string fresh = issue(ca, leafCsr("c.local"), "", R"({"Value":30,"Type":"DAYS"})");
  EXPECT_TRUE(signedBy(pcaCert(ca, fresh), caCertificate(ca)));
  EXPECT_NEAR(static_cast<double>(num(status(ca), "retireAt") - now()), 10 * 86400.0, 7200)
      << "a new-key leaf does not move the retire time";

  auto retired = api_.retireRotationNow(ca);
  ASSERT_TRUE(retired) << retired.error().message;
  EXPECT_EQ(str(stacks::parseJson(*retired).value(), "phase"), "NONE");
  EXPECT_EQ(certCount(bundle(ca)), 1);
  EXPECT_TRUE(status(ca).find("lastRotation")->find("RetiredEarly")->asBool());
  EXPECT_FALSE(api_.retireRotationNow(ca)) << "nothing to retire";
  // A new rotation may start once the previous one ended.
  EXPECT_TRUE(api_.startRotation(ca));
}

TEST_F(RotationTest, UntilTheOldRootRetiresItsKeyKeepsSigningTheCrl) {
  std::string ca = activeRoot();
  std::string old_root = caCertificate(ca);
  std::string leaf = issue(ca, leafCsr("a.local"), "", R"({"Value":10,"Type":"DAYS"})");
  std::string serial = leaf.substr(leaf.rfind('/') + 1);
  for (char& ch : serial) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  serial.erase(std::remove(serial.begin(), serial.end(), ':'), serial.end());
  ASSERT_TRUE(api_.startRotation(ca));
  round();
  round();
  ASSERT_EQ(str(status(ca), "phase"), "SIGNING_NEW");
  std::string new_root = caCertificate(ca);
  ASSERT_NE(new_root, old_root);
  call(true, "RevokeCertificate",
       R"({"CertificateAuthorityArn":")" + ca + R"(","CertificateSerial":")" +
           leaf.substr(leaf.rfind('/') + 1) + R"(","RevocationReason":"KEY_COMPROMISE"})");
  auto tb = api_.proxyTrustBundle({ca});
  ASSERT_TRUE(tb) << tb.error().message;
  auto by_new = crlsOf(tb->crl_pem, new_root), by_old = crlsOf(tb->crl_pem, old_root);
  ASSERT_EQ(by_new.size(), 2u) << "a CRL per key while both roots are trusted";
  EXPECT_NE(by_new[0].verifies, by_old[0].verifies);
  EXPECT_NE(by_new[1].verifies, by_old[1].verifies);
  EXPECT_TRUE(by_new[0].verifies || by_new[1].verifies) << "one CRL is signed with the new key";
  EXPECT_TRUE(by_old[0].verifies || by_old[1].verifies) << "one CRL is signed with the old key";
  for (const CrlSeen& c : by_new)
    EXPECT_EQ(c.serials, std::vector<std::string>{serial})
        << "the revocation of an old-key leaf is in both CRLs";

  ASSERT_TRUE(api_.retireRotationNow(ca));
  tb = api_.proxyTrustBundle({ca});
  ASSERT_TRUE(tb) << tb.error().message;
  by_new = crlsOf(tb->crl_pem, new_root);
  ASSERT_EQ(by_new.size(), 1u) << "the old key's CRL goes with its root";
  EXPECT_TRUE(by_new[0].verifies);
  EXPECT_EQ(by_new[0].serials, std::vector<std::string>{serial});
}

TEST_F(RotationTest, SubordinateOfWeftParentIsResignedWithItsPathLength) {
  std::string root = activeRoot();
  std::string sub = createCa("SUBORDINATE", "sub");
  std::string csr = str(call(true, "GetCertificateAuthorityCsr", arnBody(sub)), "Csr");
  std::string sub_pem = pcaCert(root, issue(root, csr, "SubordinateCACertificate_PathLen1/V1",
                                            R"({"Value":5,"Type":"YEARS"})"));
  import(sub, sub_pem, caCertificate(root));
  // A leaf of the old key keeps the rotation in SIGNING_NEW (with none it retires at once).
  issue(sub, leafCsr("old.local"), "", R"({"Value":5,"Type":"DAYS"})");
  ASSERT_TRUE(api_.startRotation(sub));
  round();
  round();
  ASSERT_EQ(str(status(sub), "phase"), "SIGNING_NEW");
  std::string new_pem = caCertificate(sub);
  auto n = parseCert(new_pem);
  EXPECT_NE(new_pem, sub_pem);
  EXPECT_TRUE(signedBy(new_pem, caCertificate(root))) << "the parent signed the new certificate";
  EXPECT_EQ(certPathLen(n->get()), 1);
  EXPECT_EQ(certCount(bundle(sub)), 3) << "old sub, root (its chain), new sub; duplicates dropped";
  std::string leaf = issue(sub, leafCsr("x.local"), "", R"({"Value":5,"Type":"DAYS"})");
  EXPECT_TRUE(signedBy(pcaCert(sub, leaf), new_pem));
}

TEST_F(RotationTest, WithoutOldLeavesTheOldRootRetiresAtTheSwitch) {
  std::string ca = activeRoot();
  ASSERT_TRUE(api_.startRotation(ca));
  round();
  round();
  EXPECT_EQ(str(status(ca), "phase"), "NONE");
  EXPECT_EQ(certCount(bundle(ca)), 1);
  EXPECT_NE(caCertificate(ca), "");
}

TEST_F(RotationTest, SubordinateOfExternalParentIsRefused) {
  auto ext_key = generateKey(KeyAlgorithm::kEcP256).value();
  auto ext_name = makeName({{"CN", "outside root"}}).value();
  IssueParams p;
  p.subject = ext_name.get();
  p.subject_key = ext_key.get();
  p.issuer_key = ext_key.get();
  p.alg = defaultSigningAlgorithm(ext_key.get());
  p.serial = randomSerial();
  p.not_before = now() - 60;
  p.not_after = now() + 86400 * 3650;
  p.profile = Profile::kCa;
  auto ext_root = issueCertificate(p).value();
  std::string sub = createCa("SUBORDINATE", "sub");
  auto csr = parseCsr(str(call(true, "GetCertificateAuthorityCsr", arnBody(sub)), "Csr")).value();
  IssueParams q = p;
  q.subject = X509_REQ_get_subject_name(csr.get());
  q.subject_key = X509_REQ_get0_pubkey(csr.get());
  q.issuer = ext_root.get();
  q.serial = randomSerial();
  q.not_after = now() + 86400 * 365;
  q.path_len = 0;
  auto sub_cert = issueCertificate(q).value();
  import(sub, certToPem(sub_cert.get()), certToPem(ext_root.get()));
  auto r = api_.startRotation(sub);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, 400);
  EXPECT_NE(r.error().message.find("ImportCertificateAuthorityCertificate"), std::string::npos)
      << r.error().message;
  EXPECT_EQ(str(status(sub), "phase"), "NONE");
}

TEST_F(RotationTest, MeshCaRotatesAndRetiresAfterTheIdentityValidity) {
  ASSERT_TRUE(meshes_.ensureCa("shop"));
  std::string old_root = meshes_.trustBundle("shop").value();
  auto key = generateKey(KeyAlgorithm::kEcP256).value();
  auto name = makeName({{"CN", "cart.shop.local"}}).value();
  std::string csr =
      csrToPem(makeCsr(key.get(), name.get(), *parseSigningAlgorithm("SHA256WITHECDSA"))->get());
  IdentityNames names{"spiffe://shop/virtualNode/cart", {"cart.shop.local"}};

  ASSERT_TRUE(meshes_.startRotation("shop"));
  auto again = meshes_.startRotation("shop");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, kIdentityRotationConflict);
  std::string b = meshes_.trustBundle("shop").value();
  EXPECT_EQ(certCount(b), 2);
  auto before = meshes_.issue("shop", names, csr).value();
  EXPECT_TRUE(signedBy(before.certificate_chain_pem, old_root)) << "PUBLISHING: the old key";
  EXPECT_EQ(before.trust_bundle_pem, b) << "IdentityUpdate.trust_bundle_pem holds both";
  EXPECT_FALSE(meshes_.retireRotationNow("shop"));

  round();
  time_.advance(std::chrono::seconds(1));
  round();
  Value st = stacks::parseJson(meshes_.rotationStatus("shop").value()).value();
  ASSERT_EQ(str(st, "phase"), "SIGNING_NEW") << stacks::toJson(st);
  EXPECT_EQ(num(st, "retireAt"), num(st, "switchedAt") + 20 + 2) << "validity 20 s + skew 2 s";
  EXPECT_EQ(meshes_.trustBundle("shop").value(), b);
  auto after = meshes_.issue("shop", names, csr).value();
  EXPECT_FALSE(signedBy(after.certificate_chain_pem, old_root)) << "SIGNING_NEW: the new key";

  time_.advance(std::chrono::seconds(21));
  round();
  EXPECT_EQ(str(stacks::parseJson(meshes_.rotationStatus("shop").value()).value(), "phase"),
            "SIGNING_NEW")
      << "an old identity may still be valid";
  time_.advance(std::chrono::seconds(1));
  round();
  EXPECT_EQ(str(stacks::parseJson(meshes_.rotationStatus("shop").value()).value(), "phase"),
            "NONE");
  std::string final_bundle = meshes_.trustBundle("shop").value();
  EXPECT_EQ(certCount(final_bundle), 1);
  EXPECT_TRUE(signedBy(after.certificate_chain_pem, final_bundle));
}

TEST_F(RotationTest, Route) {
  std::string ca = activeRoot();
  auto req = [&](const std::string& method, const std::string& path, const std::string& body,
                 std::vector<std::pair<std::string, std::string>> query = {}) {
    ApiRequest r;
    r.method = method;
    r.path = path;
    r.body = body;
    r.query = std::move(query);
    return rotation_.handle(r);
  };
  EXPECT_TRUE(CaRotation::handles("/weft/v1/ca-rotations"));
  EXPECT_TRUE(CaRotation::handles("/weft/v1/ca-rotations/retire"));
  EXPECT_FALSE(CaRotation::handles("/weft/v1/ca-rotationsx"));
  EXPECT_EQ(req("POST", "/weft/v1/ca-rotations",
                R"({"certificateAuthorityArn":")" + ca + R"(","mesh":"m"})")
                .status,
            400);
  EXPECT_EQ(req("POST", "/weft/v1/ca-rotations", R"({"mesh":"nomesh"})").status, 404);
  ApiResponse started =
      req("POST", "/weft/v1/ca-rotations", R"({"certificateAuthorityArn":")" + ca + R"("})");
  EXPECT_EQ(started.status, 201) << started.body;
  ApiResponse twice =
      req("POST", "/weft/v1/ca-rotations", R"({"certificateAuthorityArn":")" + ca + R"("})");
  EXPECT_EQ(twice.status, 409) << twice.body;
  ApiResponse shown = req("GET", "/weft/v1/ca-rotations", "", {{"certificateAuthorityArn", ca}});
  EXPECT_EQ(shown.status, 200);
  EXPECT_NE(shown.body.find("\"PUBLISHING\""), std::string::npos) << shown.body;
  EXPECT_EQ(
      req("POST", "/weft/v1/ca-rotations/retire", R"({"certificateAuthorityArn":")" + ca + R"("})")
          .status,
      409);
  EXPECT_EQ(req("DELETE", "/weft/v1/ca-rotations", "").status, 405);
}

}  // namespace
}  // namespace weft::control::ca
