#include "control/push/stream_ca.h"

#include <gtest/gtest.h>
#include <openssl/x509v3.h>

#include "control/ca/pki.h"
#include "control/store/memory_store.h"

namespace weft::control::push {
namespace {

TEST(StreamCaTest, IssuesALeafForTheNamesFromOneLastingCa) {
  MemoryStore store;
  SimTimeSource time;
  auto kek = ca::Kek::fromBytes(std::string(32, 'k'));
  ASSERT_TRUE(kek);
  auto a = issueStreamCertificate(store, *kek, time, {"127.0.0.1", "::1", "localhost", "cp.x"});
  ASSERT_TRUE(a) << a.error().message;
  auto b = issueStreamCertificate(store, *kek, time, {"127.0.0.1"});
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ(a->ca_pem, b->ca_pem) << "expected the CA to be kept in the store";
  EXPECT_NE(a->cert_pem, b->cert_pem) << "expected a fresh leaf per start";

  auto stored = store.get(kStreamCaKey);
  ASSERT_TRUE(stored && stored->has_value());
  EXPECT_EQ((*stored)->value.find("PRIVATE KEY"), std::string::npos)
      << "the CA key must be stored sealed";

  auto ca_cert = ca::parseCert(a->ca_pem);
  auto leaf = ca::parseCert(a->cert_pem);
  ASSERT_TRUE(ca_cert && leaf);
  EXPECT_TRUE(ca::isCaCert(ca_cert->get()));
  EXPECT_FALSE(ca::isCaCert(leaf->get()));
  X509_STORE* trust = X509_STORE_new();
  X509_STORE_add_cert(trust, ca_cert->get());
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, trust, leaf->get(), nullptr);
  X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), 1'800'000'000);
  int verified = X509_verify_cert(ctx);
  EXPECT_EQ(verified, 1) << "leaf does not verify against the CA: "
                         << X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(trust);
  EXPECT_EQ(X509_check_ip_asc(leaf->get(), "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(leaf->get(), "::1", 0), 1);
  EXPECT_EQ(X509_check_host(leaf->get(), "localhost", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(leaf->get(), "cp.x", 0, 0, nullptr), 1);
  EXPECT_NE(X509_check_host(leaf->get(), "other.x", 0, 0, nullptr), 1);
  auto key = ca::privateKeyFromPem(a->key_pem);
  ASSERT_TRUE(key);
  EXPECT_EQ(X509_check_private_key(leaf->get(), key->get()), 1);
}

TEST(StreamCaTest, AnotherKekCannotOpenTheCa) {
  MemoryStore store;
  SimTimeSource time;
  auto kek = ca::Kek::fromBytes(std::string(32, 'k'));
  auto other = ca::Kek::fromBytes(std::string(32, 'o'));
  ASSERT_TRUE(kek && other);
  ASSERT_TRUE(issueStreamCertificate(store, *kek, time, {"127.0.0.1"}));
  auto r = issueStreamCertificate(store, *other, time, {"127.0.0.1"});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("key-encryption key"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace weft::control::push
