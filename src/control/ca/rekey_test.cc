// Changing the CA key-encryption key (rekey.h): every sealed key opens with the new KEK only,
// and an interrupted change of DATA_DIR/ca-kek is completed (or undone) by the next start.
#include "control/ca/rekey.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "common/time.h"
#include "control/ca/ca_api.h"
#include "control/ca/mesh_identity.h"
#include "control/ca/pki.h"
#include "control/push/stream_ca.h"
#include "control/stacks/json_value.h"
#include "control/store/memory_store.h"

namespace weft::control::ca {
namespace {

using stacks::Value;

Kek kekOf(char c) { return Kek::fromBytes(std::string(32, c)).value(); }

class RekeyTest : public ::testing::Test {
 protected:
  RekeyTest() : old_kek_(kekOf('O')), new_kek_(kekOf('N')) {}

  Value call(CaApi& api, bool pca, const std::string& op, const std::string& body, int want = 200) {
    ApiRequest r;
    r.method = "POST";
    r.path = "/";
    r.headers = {{"x-amz-target", (pca ? "ACMPrivateCA." : "CertificateManager.") + op}};
    r.body = body;
    ApiResponse resp = pca ? api.handlePca(r) : api.handleAcm(r);
    EXPECT_EQ(resp.status, want) << op << ": expected " << want << ", got " << resp.body;
    auto v = stacks::parseJson(resp.body.empty() ? "{}" : resp.body);
    return v ? *v : Value::object();
  }
  static std::string s(const Value& v, std::string_view k) {
    const Value* m = v.find(k);
    return m ? std::string(m->str()) : std::string();
  }

  // Fills the store with one of each sealed key, all under `old_kek_`: an ACTIVE root CA, an
  // ACM certificate, a mesh identity CA, the config stream's CA (and the check record).
  void populate() {
    CaApi api(store_, time_, old_kek_, Options{"us-west-2", "123456789012"});
    ASSERT_TRUE(api.init());
    ca_ = s(call(api, true, "CreateCertificateAuthority",
                 R"({"CertificateAuthorityType":"ROOT","CertificateAuthorityConfiguration":)"
                 R"({"KeyAlgorithm":"EC_prime256v1","SigningAlgorithm":"SHA256WITHECDSA",)"
                 R"("Subject":{"CommonName":"root"}}})"),
            "CertificateAuthorityArn");
    std::string body = R"({"CertificateAuthorityArn":")" + ca_ + R"("})";
    std::string csr = s(call(api, true, "GetCertificateAuthorityCsr", body), "Csr");
    std::string cert_arn = s(
        call(api, true, "IssueCertificate",
             R"({"CertificateAuthorityArn":")" + ca_ + R"(","Csr":")" + base64Encode(csr) +
                 R"(","SigningAlgorithm":"SHA256WITHECDSA","Validity":{"Value":10,"Type":"YEARS"},)"
                 R"("TemplateArn":"arn:aws:acm-pca:::template/RootCACertificate/V1"})"),
        "CertificateArn");
    std::string pem = s(call(api, true, "GetCertificate",
                             R"({"CertificateAuthorityArn":")" + ca_ + R"(","CertificateArn":")" +
                                 cert_arn + R"("})"),
                        "Certificate");
    call(api, true, "ImportCertificateAuthorityCertificate",
         R"({"CertificateAuthorityArn":")" + ca_ + R"(","Certificate":")" + base64Encode(pem) +
             R"("})");
    acm_ = s(call(api, false, "RequestCertificate",
                  R"({"DomainName":"svc.example.com","CertificateAuthorityArn":")" + ca_ + R"("})"),
             "CertificateArn");
    MeshIdentityIssuer issuer(store_, old_kek_, time_);
    ASSERT_TRUE(issuer.ensureCa("shop"));
    ASSERT_TRUE(push::issueStreamCertificate(store_, old_kek_, time_, {"127.0.0.1"}));
  }

  // Every sealed key of populate() works with `kek` (or, with expect_ok false, fails).
  void expectKeysWorkWith(const Kek& kek, bool expect_ok) {
    CaApi api(store_, time_, kek, Options{"us-west-2", "123456789012"});
    EXPECT_EQ(static_cast<bool>(api.init()), expect_ok) << "the check record";
    auto material = api.proxyCertificate(acm_);
    EXPECT_EQ(static_cast<bool>(material), expect_ok) << "the ACM certificate's key";
    if (expect_ok) {
      // The CA's key signs (a renewal issues through it), ExportCertificate opens the leaf key.
      EXPECT_TRUE(api.renewAcmCertificate(acm_.substr(acm_.rfind('/') + 1), time_.systemNow()));
      call(api, false, "ExportCertificate",
           R"({"CertificateArn":")" + acm_ + R"(","Passphrase":")" + base64Encode("passw0rd") +
               R"("})");
    }
    MeshIdentityIssuer issuer(store_, kek, time_);
    auto key = generateKey(KeyAlgorithm::kEcP256);
    auto name = makeName({{"CN", "spiffe://shop/virtualNode/a"}});
    auto csr = makeCsr(key->get(), name->get(), *parseSigningAlgorithm("SHA256WITHECDSA"));
    IdentityNames names{"spiffe://shop/virtualNode/a", {}};
    EXPECT_EQ(static_cast<bool>(issuer.issue("shop", names, csrToPem(csr->get()))), expect_ok)
        << "the mesh identity CA's key";
    EXPECT_EQ(static_cast<bool>(push::issueStreamCertificate(store_, kek, time_, {"127.0.0.1"})),
              expect_ok)
        << "the config stream CA's key";
  }

  MemoryStore store_;
  SimTimeSource time_;
  Kek old_kek_, new_kek_;
  std::string ca_, acm_;
};

TEST_F(RekeyTest, EveryKeyOpensWithTheNewKekAndNoneWithTheOld) {
  populate();
  auto count = resealStore(store_, old_kek_, new_kek_);
  ASSERT_TRUE(count) << count.error().message;
  // check record, CA, ACM certificate, mesh CA, stream CA.
  EXPECT_EQ(count->records, 5);
  EXPECT_EQ(count->keys, 5);
  auto opens = kekOpensStore(store_, new_kek_);
  ASSERT_TRUE(opens && opens->has_value());
  EXPECT_TRUE(**opens);
  expectKeysWorkWith(new_kek_, true);
  expectKeysWorkWith(old_kek_, false);
}

TEST_F(RekeyTest, WrongCurrentKekOrAnUnopenableKeyChangesNothing) {
  populate();
  auto before = store_.list("", "", 0).value();
  auto wrong = resealStore(store_, kekOf('W'), new_kek_);
  ASSERT_FALSE(wrong) << "a KEK that does not open the check record must be refused";
  EXPECT_EQ(wrong.error().message.find(std::string(32, 'W')), std::string::npos);
  // A sealed value no candidate AAD opens (sealed for another record): refused, whole.
  std::string foreign = old_kek_.seal("secret", "somewhere/else");
  ASSERT_TRUE(store_.commit(
      {StoreOp::put("ca/odd/x", "{\"key\": \"" + foreign + "\"}", StoreOp::kAbsent)}));
  before = store_.list("", "", 0).value();
  auto refused = resealStore(store_, old_kek_, new_kek_);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("ca/odd/x"), std::string::npos) << refused.error().message;
  auto after = store_.list("", "", 0).value();
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i)
    EXPECT_EQ(after[i].revision, before[i].revision) << after[i].key << " must be unchanged";
  expectKeysWorkWith(old_kek_, true);
}

TEST_F(RekeyTest, EmptyStoreHasNothingToReseal) {
  auto r = resealStore(store_, old_kek_, new_kek_);
  EXPECT_FALSE(r);
}

class KekFileTest : public RekeyTest {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/weft-rekey-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  bool exists(const std::string& name) { return ::access((dir_ + "/" + name).c_str(), F_OK) == 0; }
  std::string dir_;
};

TEST_F(KekFileTest, CrashBetweenCommitAndRenameIsFinishedAtStart) {
  ASSERT_TRUE(old_kek_.writeNewFile(dir_ + "/ca-kek"));
  populate();
  // rekey: ca-kek.new written, the store committed, then the process died before the rename.
  ASSERT_TRUE(new_kek_.writeNewFile(dir_ + "/ca-kek.new"));
  ASSERT_TRUE(resealStore(store_, old_kek_, new_kek_));

  auto done = finishKekChange(store_, dir_);
  ASSERT_TRUE(done) << done.error().message;
  EXPECT_TRUE(*done);
  EXPECT_FALSE(exists("ca-kek.new"));
  auto loaded = Kek::load("", nullptr, dir_);
  ASSERT_TRUE(loaded);
  EXPECT_TRUE(loaded->sameKey(new_kek_)) << "DATA_DIR/ca-kek must now hold the new KEK";
  expectKeysWorkWith(*loaded, true);
  // Idempotent: nothing left to do.
  EXPECT_FALSE(finishKekChange(store_, dir_).value());
}

TEST_F(KekFileTest, CrashBeforeCommitLeavesTheOldKek) {
  ASSERT_TRUE(old_kek_.writeNewFile(dir_ + "/ca-kek"));
  populate();
  ASSERT_TRUE(new_kek_.writeNewFile(dir_ + "/ca-kek.new"));  // and died before the commit
  auto done = finishKekChange(store_, dir_);
  ASSERT_TRUE(done) << done.error().message;
  EXPECT_FALSE(*done);
  EXPECT_FALSE(exists("ca-kek.new")) << "a ca-kek.new that never committed is removed";
  auto loaded = Kek::load("", nullptr, dir_);
  ASSERT_TRUE(loaded);
  EXPECT_TRUE(loaded->sameKey(old_kek_));
  expectKeysWorkWith(*loaded, true);
}

TEST(Kek, WriteNewFileIsPrivateAndExclusive) {
  char tmpl[] = "/tmp/weft-kekfile-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string path = std::string(tmpl) + "/k";
  Kek k = Kek::generate().value();
  ASSERT_TRUE(k.writeNewFile(path));
  EXPECT_EQ(std::filesystem::status(path).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  EXPECT_FALSE(k.writeNewFile(path)) << "an existing file must not be overwritten";
  auto back = Kek::load(path, nullptr, tmpl);
  ASSERT_TRUE(back);
  EXPECT_TRUE(back->sameKey(k));
  EXPECT_FALSE(back->sameKey(Kek::generate().value()));
  std::filesystem::remove_all(tmpl);
}

}  // namespace
}  // namespace weft::control::ca
