// Issuance rules of mesh identities: the server decides the names, a CSR asking for another
// identity's names is refused, validity and SANs are what the options say, and the mesh's
// identity CA is made once, sealed at rest and used by every issuance.
#include "control/ca/mesh_identity.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <string>
#include <vector>

#include "control/compile/certificate_source.h"
#include "control/store/memory_store.h"

namespace weft::control::ca {
namespace {

// A CSR for `key` with common name `cn` (none when empty) and the given SANs ("DNS:x", "URI:x",
// "IP:1.2.3.4" in OpenSSL's config syntax), signed with SHA-256.
std::string csrFor(EVP_PKEY* key, const std::string& cn, const std::string& sans = "") {
  X509_REQ* req = X509_REQ_new();
  X509_REQ_set_version(req, 0);
  X509_NAME* name = X509_REQ_get_subject_name(req);
  if (!cn.empty())
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_REQ_set_pubkey(req, key);
  if (!sans.empty()) {
    STACK_OF(X509_EXTENSION)* exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, sans.c_str());
    EXPECT_NE(ext, nullptr) << "bad SAN text " << sans;
    sk_X509_EXTENSION_push(exts, ext);
    X509_REQ_add_extensions(req, exts);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  }
  X509_REQ_sign(req, key, EVP_sha256());
  std::string pem = csrToPem(req);
  X509_REQ_free(req);
  return pem;
}

KeyPtr p256() { return generateKey(KeyAlgorithm::kEcP256).value(); }

std::vector<std::string> sansOf(X509* cert, int type) {
  std::vector<std::string> out;
  auto* gens = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(gens, i);
    if (type == -1) {  // every name that is neither URI nor DNS
      if (g->type != GEN_URI && g->type != GEN_DNS) out.push_back("other");
      continue;
    }
    if (g->type != type) continue;
    const ASN1_STRING* s = type == GEN_URI ? g->d.uniformResourceIdentifier : g->d.dNSName;
    out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
  }
  GENERAL_NAMES_free(gens);
  return out;
}

class MeshIdentityTest : public ::testing::Test {
 protected:
  MeshIdentityTest()
      : kek_(Kek::fromBytes(std::string(32, 'k')).value()),
        issuer_(store_, kek_, time_, MeshIdentityOptions{std::chrono::hours(24)}) {}

  IdentityNames nodeNames(const std::string& mesh = "shop", const std::string& node = "cart") {
    return {"spiffe://" + mesh + "/virtualNode/" + node, {node + ".shop.local"}};
  }

  MemoryStore store_;
  SimTimeSource time_;
  Kek kek_;
  MeshIdentityIssuer issuer_;
};

TEST_F(MeshIdentityTest, IssuesTheServersNamesForACsrWithoutNames) {
  KeyPtr key = p256();
  auto issued = issuer_.issue("shop", nodeNames(), csrFor(key.get(), ""));
  ASSERT_TRUE(issued.has_value()) << issued.error().message;
  auto cert = parseCert(issued->certificate_chain_pem).value();
  EXPECT_EQ(sansOf(cert.get(), GEN_URI), std::vector<std::string>{"spiffe://shop/virtualNode/cart"});
  EXPECT_EQ(sansOf(cert.get(), GEN_DNS), std::vector<std::string>{"cart.shop.local"});
  EXPECT_EQ(sansOf(cert.get(), -1), std::vector<std::string>{})
      << "expected only URI and DNS names";
  EXPECT_TRUE(samePublicKey(X509_get0_pubkey(cert.get()), key.get()))
      << "the certificate must certify the CSR's key";
  EXPECT_EQ(issued->spiffe_id, "spiffe://shop/virtualNode/cart");
  EXPECT_EQ(nameToString(X509_get_subject_name(cert.get())), "CN=cart,OU=shop,O=weft");
  EXPECT_FALSE(isCaCert(cert.get()));
  uint32_t xku = X509_get_extended_key_usage(cert.get());
  EXPECT_TRUE((xku & XKU_SSL_SERVER) && (xku & XKU_SSL_CLIENT))
      << "an identity serves (listener) and calls (cluster): serverAuth and clientAuth";
}

TEST_F(MeshIdentityTest, ValidityIsTheOptionsLifetimeWithBackdatedNotBefore) {
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          time_.systemNow().time_since_epoch())
                          .count();
  KeyPtr key = p256();
  auto day = issuer_.issue("shop", nodeNames(), csrFor(key.get(), "")).value();
  EXPECT_EQ(day.not_after, now + 24 * 3600);
  EXPECT_EQ(day.not_before, now - 300) << "5 minutes of clock skew for a day-long certificate";
  auto cert = parseCert(day.certificate_chain_pem).value();
  EXPECT_EQ(certNotAfter(cert.get()), day.not_after);
  EXPECT_EQ(certNotBefore(cert.get()), day.not_before);

  MeshIdentityIssuer short_lived(store_, kek_, time_, MeshIdentityOptions{std::chrono::seconds(60)});
  auto minute = short_lived.issue("shop", nodeNames(), csrFor(key.get(), "")).value();
  EXPECT_EQ(minute.not_after, now + 60);
  EXPECT_EQ(minute.not_before, now - 6)
      << "a short lifetime is back-dated by a tenth, so half of it is still ahead";
}

TEST_F(MeshIdentityTest, GatewayIdentityHasNoDnsName) {
  KeyPtr key = p256();
  IdentityNames gw{"spiffe://shop/virtualGateway/front", {}};
  auto issued = issuer_.issue("shop", gw, csrFor(key.get(), "", "URI:spiffe://shop/virtualGateway/front"));
  ASSERT_TRUE(issued.has_value()) << issued.error().message;
  auto cert = parseCert(issued->certificate_chain_pem).value();
  EXPECT_EQ(sansOf(cert.get(), GEN_URI),
            std::vector<std::string>{"spiffe://shop/virtualGateway/front"});
  EXPECT_TRUE(sansOf(cert.get(), GEN_DNS).empty());
}

TEST_F(MeshIdentityTest, CsrAskingForItsOwnNamesIsAccepted) {
  KeyPtr key = p256();
  auto issued = issuer_.issue(
      "shop", nodeNames(),
      csrFor(key.get(), "spiffe://shop/virtualNode/cart",
             "URI:spiffe://shop/virtualNode/cart,DNS:CART.shop.local."));
  EXPECT_TRUE(issued.has_value()) << issued.error().message;
}

TEST_F(MeshIdentityTest, CsrAskingForAnotherIdentityIsRefused) {
  KeyPtr key = p256();
  struct Case {
    std::string cn, sans, want;
  } cases[] = {
      {"", "URI:spiffe://shop/virtualNode/payments", "spiffe://shop/virtualNode/payments"},
      {"", "URI:spiffe://other/virtualNode/cart", "spiffe://other/virtualNode/cart"},
      {"", "URI:spiffe://shop/virtualNode/cart,DNS:payments.shop.local", "payments.shop.local"},
      {"payments.shop.local", "", "the common name \"payments.shop.local\""},
      {"", "IP:10.0.0.1", "another type"},
      {"", "email:a@b.c", "another type"},
  };
  for (const Case& c : cases) {
    auto issued = issuer_.issue("shop", nodeNames(), csrFor(key.get(), c.cn, c.sans));
    ASSERT_FALSE(issued.has_value()) << "expected a refusal for CN=" << c.cn << " " << c.sans;
    EXPECT_EQ(issued.error().code, kIdentityForeignName) << issued.error().message;
    EXPECT_NE(issued.error().message.find(c.want), std::string::npos)
        << "expected the message to name " << c.want << ", got: " << issued.error().message;
  }
}

TEST_F(MeshIdentityTest, UnusableCsrsAreBadRequests) {
  auto rsa1024 = [] {
    EVP_PKEY* k = EVP_RSA_gen(1024);
    return KeyPtr(k);
  }();
  auto weak = issuer_.issue("shop", nodeNames(), csrFor(rsa1024.get(), ""));
  ASSERT_FALSE(weak.has_value());
  EXPECT_EQ(weak.error().code, kIdentityBadCsr) << weak.error().message;

  auto garbage = issuer_.issue("shop", nodeNames(), "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n");
  ASSERT_FALSE(garbage.has_value());
  EXPECT_EQ(garbage.error().code, kIdentityBadCsr);

  // A CSR whose signature does not verify (its key swapped after signing).
  KeyPtr key = p256(), other = p256();
  std::string pem = csrFor(key.get(), "");
  auto req = parseCsr(pem).value();
  X509_REQ_set_pubkey(req.get(), other.get());
  auto tampered = issuer_.issue("shop", nodeNames(), csrToPem(req.get()));
  ASSERT_FALSE(tampered.has_value());
  EXPECT_EQ(tampered.error().code, kIdentityBadCsr) << tampered.error().message;
}

TEST_F(MeshIdentityTest, CaIsMadeOnceSealedAndChainsEveryLeaf) {
  auto none = issuer_.trustBundle("shop");
  ASSERT_FALSE(none.has_value()) << "no CA before the first use";
  EXPECT_EQ(none.error().code, kIdentityNoCa);

  KeyPtr a = p256(), b = p256();
  auto first = issuer_.issue("shop", nodeNames("shop", "cart"), csrFor(a.get(), "")).value();
  auto second = issuer_.issue("shop", nodeNames("shop", "pay"), csrFor(b.get(), "")).value();
  EXPECT_EQ(first.trust_bundle_pem, second.trust_bundle_pem) << "one CA per mesh";
  EXPECT_EQ(issuer_.trustBundle("shop").value(), first.trust_bundle_pem);

  auto record = store_.get(compile::meshIdentityCaKey("shop")).value();
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->value.find("PRIVATE KEY"), std::string::npos)
      << "the CA key must be stored sealed, never as PEM";
  EXPECT_NE(record->value.find("gcm1:"), std::string::npos);

  // Both leaves verify against the bundle.
  auto root = parseCert(first.trust_bundle_pem).value();
  EXPECT_TRUE(isCaCert(root.get()));
  EXPECT_EQ(certPathLen(root.get()), 0);
  for (const auto* issued : {&first, &second}) {
    auto leaf = parseCert(issued->certificate_chain_pem).value();
    X509_STORE* st = X509_STORE_new();
    X509_STORE_add_cert(st, root.get());
    X509_STORE_CTX* ctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(ctx, st, leaf.get(), nullptr);
    X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx),
                               std::chrono::system_clock::to_time_t(time_.systemNow()));
    EXPECT_EQ(X509_verify_cert(ctx), 1)
        << "the leaf must chain to the trust bundle: "
        << X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
  }

  // Another mesh, another CA; a second issuer over the same store (a restart) reuses it.
  KeyPtr c = p256();
  auto other = issuer_.issue("bank", nodeNames("bank", "cart"), csrFor(c.get(), "")).value();
  EXPECT_NE(other.trust_bundle_pem, first.trust_bundle_pem);
  MeshIdentityIssuer restarted(store_, kek_, time_);
  EXPECT_EQ(restarted.trustBundle("shop").value(), first.trust_bundle_pem);
}

TEST_F(MeshIdentityTest, AnotherKekCannotOpenTheCa) {
  ASSERT_TRUE(issuer_.ensureCa("shop").has_value());
  Kek wrong = Kek::fromBytes(std::string(32, 'w')).value();
  MeshIdentityIssuer other(store_, wrong, time_);
  KeyPtr key = p256();
  auto issued = other.issue("shop", nodeNames(), csrFor(key.get(), ""));
  ASSERT_FALSE(issued.has_value());
  EXPECT_NE(issued.error().message.find("key-encryption key"), std::string::npos)
      << issued.error().message;
}

}  // namespace
}  // namespace weft::control::ca
