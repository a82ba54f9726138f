// Scheduled upkeep of the CA (docs/ca.md "Scheduled work"): automatic ACM renewal and CRL
// re-signing, driven with a SimTimeSource as the Maintenance loop drives them.
#include <gtest/gtest.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <functional>
#include <string>

#include "common/time.h"
#include "control/ca/ca_api.h"
#include "control/ca/maintenance.h"
#include "control/ca/pki.h"
#include "control/stacks/json_value.h"
#include "control/store/memory_store.h"

namespace weft::control::ca {
namespace {

using stacks::Value;
using std::chrono::hours;

constexpr int64_t kDay = 86400;

// A store that can run a hook just before a commit that writes a key with a given prefix, once:
// the way to put a racing writer between another writer's read and its commit.
class HookStore final : public Store {
 public:
  Result<std::optional<KeyValue>> get(std::string_view key) override { return inner_.get(key); }
  Result<std::vector<KeyValue>> list(std::string_view prefix, std::string_view start_after,
                                     size_t limit) override {
    return inner_.list(prefix, start_after, limit);
  }
  Result<int64_t> commit(const std::vector<StoreOp>& ops) override {
    if (hook_) {
      for (const StoreOp& op : ops) {
        if (op.kind == StoreOp::Kind::kPut && op.key.rfind(hook_prefix_, 0) == 0) {
          auto hook = std::move(hook_);
          hook_ = nullptr;
          hook();
          break;
        }
      }
    }
    ++commits_;
    return inner_.commit(ops);
  }
  void beforeCommitOf(std::string prefix, std::function<void()> hook) {
    hook_prefix_ = std::move(prefix);
    hook_ = std::move(hook);
  }
  int commits() const { return commits_; }

 private:
  MemoryStore inner_;
  std::string hook_prefix_;
  std::function<void()> hook_;
  int commits_ = 0;
};

class CaUpkeepTest : public ::testing::Test {
 protected:
  CaUpkeepTest()
      : kek_(Kek::fromBytes(std::string(32, 'K')).value()),
        api_(store_, time_, kek_, Options{"us-west-2", "123456789012"}) {}

  void SetUp() override { ASSERT_TRUE(api_.init()); }

  int64_t now() const {
    return std::chrono::duration_cast<std::chrono::seconds>(time_.systemNow().time_since_epoch())
        .count();
  }
  void advanceDays(double days) {
    time_.advance(std::chrono::seconds(static_cast<int64_t>(days * kDay)));
  }

  Value call(bool pca, const std::string& op, const std::string& body, int want = 200) {
    ApiRequest r;
    r.method = "POST";
    r.path = "/";
    r.headers = {{"x-amz-target", (pca ? "ACMPrivateCA." : "CertificateManager.") + op}};
    r.body = body;
    ApiResponse resp = pca ? api_.handlePca(r) : api_.handleAcm(r);
    EXPECT_EQ(resp.status, want) << op << ": expected " << want << ", got " << resp.body;
    auto v = stacks::parseJson(resp.body.empty() ? "{}" : resp.body);
    return v ? *v : Value::object();
  }
  static std::string s(const Value& v, std::string_view k) {
    const Value* m = v.find(k);
    return m ? std::string(m->str()) : std::string();
  }

  // A ROOT CA, ACTIVE with a 10-year self-signed certificate.
  std::string activeRoot() {
    std::string arn =
        s(call(true, "CreateCertificateAuthority",
               R"({"CertificateAuthorityType":"ROOT","CertificateAuthorityConfiguration":)"
               R"({"KeyAlgorithm":"EC_prime256v1","SigningAlgorithm":"SHA256WITHECDSA",)"
               R"("Subject":{"CommonName":"root"}}})"),
          "CertificateAuthorityArn");
    std::string body = R"({"CertificateAuthorityArn":")" + arn + R"("})";
    std::string csr = s(call(true, "GetCertificateAuthorityCsr", body), "Csr");
    std::string cert_arn = s(
        call(true, "IssueCertificate",
             R"({"CertificateAuthorityArn":")" + arn + R"(","Csr":")" + base64Encode(csr) +
                 R"(","SigningAlgorithm":"SHA256WITHECDSA","Validity":{"Value":10,"Type":"YEARS"},)"
                 R"("TemplateArn":"arn:aws:acm-pca:::template/RootCACertificate/V1"})"),
        "CertificateArn");
    std::string pem = s(call(true, "GetCertificate",
                             R"({"CertificateAuthorityArn":")" + arn + R"(","CertificateArn":")" +
                                 cert_arn + R"("})"),
                        "Certificate");
    call(true, "ImportCertificateAuthorityCertificate",
         R"({"CertificateAuthorityArn":")" + arn + R"(","Certificate":")" + base64Encode(pem) +
             R"("})");
    return arn;
  }
  std::string requestCert(const std::string& ca, const std::string& name) {
    return s(call(false, "RequestCertificate",
                  R"({"DomainName":")" + name + R"(","CertificateAuthorityArn":")" + ca + R"("})"),
             "CertificateArn");
  }
  Value describe(const std::string& arn) {
    Value d = call(false, "DescribeCertificate", R"({"CertificateArn":")" + arn + R"("})");
    return d.find("Certificate") ? *d.find("Certificate") : Value::object();
  }
  void setCaStatus(const std::string& ca, const std::string& status) {
    call(true, "UpdateCertificateAuthority",
         R"({"CertificateAuthorityArn":")" + ca + R"(","Status":")" + status + R"("})");
  }
  static std::string idOf(const std::string& arn) { return arn.substr(arn.rfind('/') + 1); }
  int64_t revisionOf(const std::string& key) {
    auto kv = store_.get(key);
    return kv && kv->has_value() ? (*kv)->revision : 0;
  }
  Value record(const std::string& key) {
    auto kv = store_.get(key);
    if (!kv || !kv->has_value()) return Value::object();
    auto v = stacks::parseJson((*kv)->value);
    return v ? *v : Value::object();
  }
  static int64_t num(const Value& v, std::string_view k) {
    const Value* m = v.find(k);
    return m ? std::strtoll(m->text().c_str(), nullptr, 10) : -1;
  }
  void revoke(const std::string& ca, const std::string& serial_colon_hex) {
    call(true, "RevokeCertificate",
         R"({"CertificateAuthorityArn":")" + ca + R"(","CertificateSerial":")" + serial_colon_hex +
             R"(","RevocationReason":"KEY_COMPROMISE"})");
  }
  // A certificate issued directly by the CA (IssueCertificate); answers its serial (colon hex).
  std::string issueLeaf(const std::string& ca) {
    auto key = generateKey(KeyAlgorithm::kEcP256);
    auto name = makeName({{"CN", "leaf.example.com"}});
    auto csr = makeCsr(key->get(), name->get(), *parseSigningAlgorithm("SHA256WITHECDSA"));
    std::string cert_arn = s(
        call(
            true, "IssueCertificate",
            R"({"CertificateAuthorityArn":")" + ca + R"(","Csr":")" +
                base64Encode(csrToPem(csr->get())) +
                R"(","SigningAlgorithm":"SHA256WITHECDSA","Validity":{"Value":30,"Type":"DAYS"}})"),
        "CertificateArn");
    std::string pem = s(call(true, "GetCertificate",
                             R"({"CertificateAuthorityArn":")" + ca + R"(","CertificateArn":")" +
                                 cert_arn + R"("})"),
                        "Certificate");
    auto cert = parseCert(pem);
    return serialColonHex(certSerial(cert->get()));
  }
  // The CRL of `ca` as stored: (cRLNumber from the DER, revoked entries in the DER).
  std::pair<int64_t, int> crlFacts(const std::string& ca) {
    Value crl = record("ca/pca-crl/" + idOf(ca));
    auto der = base64Decode(s(crl, "Der"));
    if (!der) return {-1, -1};
    const unsigned char* p = reinterpret_cast<const unsigned char*>(der->data());
    X509_CRL* x = d2i_X509_CRL(nullptr, &p, static_cast<long>(der->size()));
    if (x == nullptr) return {-1, -1};
    auto* number =
        static_cast<ASN1_INTEGER*>(X509_CRL_get_ext_d2i(x, NID_crl_number, nullptr, nullptr));
    int64_t n = number ? ASN1_INTEGER_get(number) : -1;
    ASN1_INTEGER_free(number);
    STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(x);
    int entries = revoked ? sk_X509_REVOKED_num(revoked) : 0;
    X509_CRL_free(x);
    return {n, entries};
  }

  HookStore store_;
  SimTimeSource time_;
  Kek kek_;
  CaApi api_;
};

TEST(AcmRenewalDueAt, WindowOrTwoThirdsOfTheLifetime) {
  const int64_t nb = 1'000'000;
  // ACM's 13-month certificates: 60 days before notAfter.
  EXPECT_EQ(acmRenewalDueAt(nb, nb + 395 * kDay, kAcmRenewBefore), nb + 335 * kDay);
  // Shorter than three windows: two thirds into the lifetime.
  EXPECT_EQ(acmRenewalDueAt(nb, nb + 30 * kDay, kAcmRenewBefore), nb + 20 * kDay);
  EXPECT_EQ(acmRenewalDueAt(nb, nb + 90 * kDay, std::chrono::seconds(400 * kDay)), nb + 60 * kDay)
      << "a window longer than the lifetime must not make a fresh certificate due at once";
  EXPECT_EQ(acmRenewalDueAt(nb, nb + 395 * kDay, std::chrono::seconds(kDay)), nb + 394 * kDay);
}

TEST_F(CaUpkeepTest, RenewsADueCertificateOnceAndNotBefore) {
  std::string ca = activeRoot();
  std::string arn = requestCert(ca, "svc.example.com");
  Value first = describe(arn);
  const std::string serial = s(first, "Serial");
  ASSERT_FALSE(serial.empty());
  const int64_t not_after = num(first, "NotAfter");

  // Not due: nothing happens, nothing is written.
  Maintenance m(time_, std::chrono::seconds(60));
  m.add("ACM renewal", [this](auto t) { return api_.renewDueAcmCertificates(t); });
  int64_t rev = revisionOf("ca/acm/" + idOf(arn));
  EXPECT_EQ(m.runOnce(), 0);
  advanceDays(334);  // 61 days left
  EXPECT_EQ(m.runOnce(), 0);
  EXPECT_EQ(s(describe(arn), "Serial"), serial) << "61 days before expiry is not yet due";
  EXPECT_EQ(revisionOf("ca/acm/" + idOf(arn)), rev) << "a round with nothing due must not write";
  EXPECT_EQ(describe(arn).find("RenewalSummary"), nullptr);

  // Inside ACM's 60 days: renewed, with a new key, for the same names, through the CA.
  advanceDays(2);
  EXPECT_EQ(m.runOnce(), 0);
  Value renewed = describe(arn);
  EXPECT_NE(s(renewed, "Serial"), serial) << "due 59 days before expiry: expected a renewal";
  EXPECT_EQ(s(renewed, "Status"), "ISSUED");
  EXPECT_GT(num(renewed, "NotAfter"), not_after);
  EXPECT_NEAR(static_cast<double>(num(renewed, "NotAfter") - now()), 395.0 * kDay, 7200);
  ASSERT_NE(renewed.find("RenewalSummary"), nullptr);
  EXPECT_EQ(s(*renewed.find("RenewalSummary"), "RenewalStatus"), "SUCCESS");
  EXPECT_EQ(num(*renewed.find("RenewalSummary"), "UpdatedAt"), now());
  EXPECT_EQ(s(renewed, "RenewalEligibility"), "ELIGIBLE");

  // Renewed once: the fresh certificate is not due, the next rounds leave it alone.
  const std::string serial2 = s(renewed, "Serial");
  rev = revisionOf("ca/acm/" + idOf(arn));
  EXPECT_EQ(m.runOnce(), 0);
  advanceDays(30);
  EXPECT_EQ(m.runOnce(), 0);
  EXPECT_EQ(s(describe(arn), "Serial"), serial2) << "a renewed certificate must not renew again";
  EXPECT_EQ(revisionOf("ca/acm/" + idOf(arn)), rev);

  // The renewed chain and key are what the proxies get.
  auto material = api_.proxyCertificate(arn);
  ASSERT_TRUE(material) << material.error().message;
  auto leaf = parseCert(material->certificate_chain_pem);
  ASSERT_TRUE(leaf);
  EXPECT_EQ(serialColonHex(certSerial(leaf->get())), serial2);
  auto key = privateKeyFromPem(material->private_key_pem);
  ASSERT_TRUE(key);
  EXPECT_TRUE(samePublicKey(key->get(), X509_get0_pubkey(leaf->get())));
}

TEST_F(CaUpkeepTest, DisabledCaFailsTheRenewalUntilItIsActiveAgain) {
  std::string ca = activeRoot();
  std::string arn = requestCert(ca, "svc.example.com");
  const std::string serial = s(describe(arn), "Serial");
  advanceDays(340);
  setCaStatus(ca, "DISABLED");

  Status st = api_.renewDueAcmCertificates(time_.systemNow());
  ASSERT_FALSE(st) << "a due certificate whose CA is DISABLED must make the task fail";
  EXPECT_NE(st.error().message.find("PCA_INVALID_STATE"), std::string::npos) << st.error().message;
  Value d = describe(arn);
  EXPECT_EQ(s(d, "Status"), "ISSUED") << "the current certificate stays until it expires";
  EXPECT_EQ(s(d, "Serial"), serial);
  ASSERT_NE(d.find("RenewalSummary"), nullptr);
  EXPECT_EQ(s(*d.find("RenewalSummary"), "RenewalStatus"), "FAILED");
  EXPECT_EQ(s(*d.find("RenewalSummary"), "RenewalStatusReason"), "PCA_INVALID_STATE");

  // Retried each round, without rewriting the same failure.
  const int64_t rev = revisionOf("ca/acm/" + idOf(arn));
  advanceDays(1);
  EXPECT_FALSE(api_.renewDueAcmCertificates(time_.systemNow()));
  EXPECT_EQ(revisionOf("ca/acm/" + idOf(arn)), rev)
      << "the same FAILED reason again must not rewrite the record (and recompile configs)";
  Status direct = api_.renewAcmCertificate(idOf(arn), time_.systemNow());
  ASSERT_FALSE(direct);
  EXPECT_EQ(direct.error().code, kAcmRenewalFailed) << direct.error().message;

  // The CA is back: the next round renews.
  setCaStatus(ca, "ACTIVE");
  advanceDays(1);
  Status again = api_.renewDueAcmCertificates(time_.systemNow());
  EXPECT_TRUE(again) << again.error().message;
  d = describe(arn);
  EXPECT_NE(s(d, "Serial"), serial);
  EXPECT_EQ(s(*d.find("RenewalSummary"), "RenewalStatus"), "SUCCESS");
  EXPECT_EQ(d.find("RenewalSummary")->find("RenewalStatusReason"), nullptr);
}

TEST_F(CaUpkeepTest, RevokedAndFailedCertificatesAreLeftAlone) {
  std::string ca = activeRoot();
  std::string revoked = requestCert(ca, "a.example.com");
  revoke(ca, s(describe(revoked), "Serial"));
  setCaStatus(ca, "DISABLED");
  std::string failed = requestCert(ca, "b.example.com");  // FAILED: PCA_INVALID_STATE
  ASSERT_EQ(s(describe(failed), "Status"), "FAILED");
  setCaStatus(ca, "ACTIVE");
  advanceDays(340);
  EXPECT_TRUE(api_.renewDueAcmCertificates(time_.systemNow()));
  EXPECT_EQ(s(describe(revoked), "Status"), "REVOKED");
  EXPECT_EQ(describe(revoked).find("RenewalSummary"), nullptr);
  EXPECT_EQ(s(describe(failed), "Status"), "FAILED") << "a FAILED request is not renewed";
  EXPECT_EQ(describe(failed).find("RenewalSummary"), nullptr);
}

TEST_F(CaUpkeepTest, RenewCertificateApiAndTaskShareThePath) {
  std::string ca = activeRoot();
  std::string arn = requestCert(ca, "svc.example.com");
  const std::string serial = s(describe(arn), "Serial");
  call(false, "RenewCertificate", R"({"CertificateArn":")" + arn + R"("})");
  Value d = describe(arn);
  EXPECT_NE(s(d, "Serial"), serial);
  EXPECT_EQ(s(*d.find("RenewalSummary"), "RenewalStatus"), "SUCCESS");
  // A renewal through the API resets the schedule: the task does not renew it again.
  advanceDays(300);
  const std::string serial2 = s(d, "Serial");
  EXPECT_TRUE(api_.renewDueAcmCertificates(time_.systemNow()));
  EXPECT_EQ(s(describe(arn), "Serial"), serial2);
  // Disabled CA through the API: answered 200, recorded FAILED (as ACM does).
  setCaStatus(ca, "DISABLED");
  call(false, "RenewCertificate", R"({"CertificateArn":")" + arn + R"("})");
  EXPECT_EQ(s(*describe(arn).find("RenewalSummary"), "RenewalStatus"), "FAILED");
}

TEST_F(CaUpkeepTest, CrlIsReSignedAfterHalfItsPeriodWithItsEntries) {
  std::string ca = activeRoot();  // CRL: 7 days (the default)
  revoke(ca, issueLeaf(ca));
  const std::string key = "ca/pca-crl/" + idOf(ca);
  auto [n0, entries0] = crlFacts(ca);
  ASSERT_EQ(entries0, 1);
  Value before = record(key);
  EXPECT_EQ(num(before, "NextUpdate") - num(before, "ThisUpdate"), 7 * kDay);

  advanceDays(3);  // less than half of 7 days
  int64_t rev = revisionOf(key);
  EXPECT_TRUE(api_.resignDueCrls(time_.systemNow()));
  EXPECT_EQ(revisionOf(key), rev) << "a CRL before half its period must not be re-signed";

  advanceDays(1);  // 4 days: past half
  EXPECT_TRUE(api_.resignDueCrls(time_.systemNow()));
  Value after = record(key);
  EXPECT_EQ(num(after, "ThisUpdate"), now());
  EXPECT_EQ(num(after, "NextUpdate"), now() + 7 * kDay);
  EXPECT_EQ(num(after, "Number"), num(before, "Number") + 1);
  auto [n1, entries1] = crlFacts(ca);
  EXPECT_EQ(n1, n0 + 1) << "the signed cRLNumber must go up by one";
  EXPECT_EQ(entries1, 1) << "re-signing must keep the revoked entries";

  // Once per half period, and a DISABLED CA keeps publishing.
  rev = revisionOf(key);
  EXPECT_TRUE(api_.resignDueCrls(time_.systemNow()));
  EXPECT_EQ(revisionOf(key), rev);
  setCaStatus(ca, "DISABLED");
  advanceDays(4);
  EXPECT_TRUE(api_.resignDueCrls(time_.systemNow()));
  EXPECT_EQ(crlFacts(ca).first, n1 + 1) << "a DISABLED CA's CRL is re-signed too";

  // A deleted CA's CRL is not.
  call(true, "DeleteCertificateAuthority",
       R"({"CertificateAuthorityArn":")" + ca + R"(","PermanentDeletionTimeInDays":7})");
  advanceDays(4);
  rev = revisionOf(key);
  EXPECT_TRUE(api_.resignDueCrls(time_.systemNow()));
  EXPECT_EQ(revisionOf(key), rev);
}

TEST_F(CaUpkeepTest, CrlReSigningRacingARevocationKeepsBothEntries) {
  std::string ca = activeRoot();
  revoke(ca, issueLeaf(ca));
  std::string second = issueLeaf(ca);
  auto [n0, entries0] = crlFacts(ca);
  ASSERT_EQ(entries0, 1);
  advanceDays(4);
  // The revocation commits between the re-signing's read of the CRL and its commit.
  bool raced = false;
  store_.beforeCommitOf("ca/pca-crl/", [&] {
    raced = true;
    revoke(ca, second);
  });
  Status st = api_.resignDueCrls(time_.systemNow());
  EXPECT_TRUE(st) << st.error().message;
  ASSERT_TRUE(raced) << "the hook must have run (the test would prove nothing)";
  auto [n1, entries1] = crlFacts(ca);
  // The re-signing's commit conflicts (the CRL record changed under it); its retry reads the
  // revocation's CRL — fresh, with both entries — and has nothing left to do. Without the
  // precondition it would have written its one-entry CRL over the revocation's.
  EXPECT_EQ(entries1, 2) << "neither writer may lose the other's entries";
  EXPECT_EQ(n1, n0 + 1);
  Value crl = record("ca/pca-crl/" + idOf(ca));
  EXPECT_EQ(num(crl, "ThisUpdate"), now());
  EXPECT_EQ(num(crl, "NextUpdate"), now() + 7 * kDay);
}

}  // namespace
}  // namespace weft::control::ca
