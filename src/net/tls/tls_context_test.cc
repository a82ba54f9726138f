#include "net/tls/tls_context.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "net/tls/tls_test_util.h"

namespace weft::net::tls {
namespace {

using testing::clientConfig;
using ::testing::HasSubstr;
using testing::serverConfig;
using testing::TestCerts;

class TlsContextTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { certs_ = new TestCerts(); }
  static void TearDownTestSuite() {
    delete certs_;
    certs_ = nullptr;
  }
  static TestCerts* certs_;
};
TestCerts* TlsContextTest::certs_ = nullptr;

TEST_F(TlsContextTest, ServerBuildsWithDefaults) {
  auto ctx = ServerContext::create(serverConfig(certs_->server));
  ASSERT_TRUE(ctx) << ctx.error().message;
  EXPECT_EQ((*ctx)->alpn(), std::vector<std::string>{"http/1.1"}) << "default ALPN";
  EXPECT_FALSE((*ctx)->requiresClientCertificate());
  EXPECT_EQ((*ctx)->mode(), v1::ListenerTls::STRICT);
}

TEST_F(TlsContextTest, MissingFileIsNamed) {
  v1::ListenerTls cfg = serverConfig(certs_->server);
  cfg.mutable_certificate()->set_certificate_chain_file("/nonexistent/x.pem");
  auto ctx = ServerContext::create(cfg);
  ASSERT_FALSE(ctx) << "expected an error for a missing certificate file";
  EXPECT_EQ(ctx.error().message,
            "listener tls: certificate_chain_file /nonexistent/x.pem: no such file");

  cfg = serverConfig(certs_->server);
  cfg.mutable_certificate()->set_private_key_file("/nonexistent/k.pem");
  ctx = ServerContext::create(cfg, "listener ingress tls");
  ASSERT_FALSE(ctx);
  EXPECT_EQ(ctx.error().message,
            "listener ingress tls: private_key_file /nonexistent/k.pem: no such file");
}

TEST_F(TlsContextTest, KeyMismatchIsReported) {
  v1::ListenerTls cfg = serverConfig(certs_->server);
  cfg.mutable_certificate()->set_private_key_file(certs_->client.key_file);
  auto ctx = ServerContext::create(cfg);
  ASSERT_FALSE(ctx) << "expected a key/certificate mismatch error";
  EXPECT_EQ(ctx.error().message, "listener tls: private key " + certs_->client.key_file +
                                     " does not match certificate " + certs_->server.cert_file);
}

TEST_F(TlsContextTest, GarbageAndEmptyFiles) {
  testing::writeFile(certs_->dir.file("empty.pem"), "");
  testing::writeFile(certs_->dir.file("garbage.pem"),
                     "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n");
  v1::ListenerTls cfg = serverConfig(certs_->server);
  cfg.mutable_certificate()->set_certificate_chain_file(certs_->dir.file("empty.pem"));
  auto ctx = ServerContext::create(cfg);
  ASSERT_FALSE(ctx);
  EXPECT_EQ(ctx.error().message, "listener tls: certificate_chain_file " +
                                     certs_->dir.file("empty.pem") + ": no PEM certificate found");

  cfg.mutable_certificate()->set_certificate_chain_file(certs_->dir.file("garbage.pem"));
  ctx = ServerContext::create(cfg);
  ASSERT_FALSE(ctx);
  EXPECT_THAT(ctx.error().message,
              HasSubstr("certificate_chain_file " + certs_->dir.file("garbage.pem") +
                        ": cannot parse certificate: "));

  cfg = serverConfig(certs_->server);
  cfg.mutable_certificate()->set_private_key_file(certs_->server.cert_file);
  ctx = ServerContext::create(cfg);
  ASSERT_FALSE(ctx);
  EXPECT_EQ(ctx.error().message, "listener tls: private_key_file " + certs_->server.cert_file +
                                     ": no PEM private key found");
}

TEST_F(TlsContextTest, ChainFileWithIntermediateAndKeyInOneFile) {
  // Leaf, then an (unrelated here) extra certificate: both must load; a key block is skipped.
  std::string combined = certs_->server.cert_pem + certs_->ca.cert_pem + certs_->server.key_pem;
  testing::writeFile(certs_->dir.file("combined.pem"), combined);
  v1::ListenerTls cfg = serverConfig(certs_->server);
  cfg.mutable_certificate()->set_certificate_chain_file(certs_->dir.file("combined.pem"));
  cfg.mutable_certificate()->set_private_key_file(certs_->dir.file("combined.pem"));
  auto ctx = ServerContext::create(cfg);
  EXPECT_TRUE(ctx) << ctx.error().message;
}

TEST_F(TlsContextTest, VersionBoundsAndAlpnAreValidated) {
  v1::ListenerTls cfg = serverConfig(certs_->server);
  cfg.set_min_version(v1::TLS_1_3);
  cfg.set_max_version(v1::TLS_1_2);
  auto ctx = ServerContext::create(cfg);
  ASSERT_FALSE(ctx);
  EXPECT_EQ(ctx.error().message, "listener tls: min_version TLS_1_3 is above max_version TLS_1_2");

  cfg = serverConfig(certs_->server);
  cfg.add_alpn("h2");
  cfg.add_alpn("");
  ctx = ServerContext::create(cfg);
  ASSERT_FALSE(ctx);
  EXPECT_EQ(ctx.error().message, "listener tls: alpn[1]: protocol names are 1 to 255 bytes");
}

TEST_F(TlsContextTest, ServerValidationNeedsTrustBundle) {
  v1::ListenerTls cfg = serverConfig(certs_->server);
  cfg.mutable_validation();
  auto ctx = ServerContext::create(cfg);
  ASSERT_FALSE(ctx);
  EXPECT_EQ(ctx.error().message,
            "listener tls: validation.trust_bundle_file or trust_bundle_pem is required");

  cfg.mutable_validation()->set_trust_bundle_file(certs_->ca.cert_file);
  ctx = ServerContext::create(cfg);
  ASSERT_TRUE(ctx) << ctx.error().message;
  EXPECT_TRUE((*ctx)->requiresClientCertificate());
}

TEST_F(TlsContextTest, ServerNeedsCertificate) {
  v1::ListenerTls cfg;
  cfg.set_mode(v1::ListenerTls::PERMISSIVE);
  auto ctx = ServerContext::create(cfg);
  ASSERT_FALSE(ctx);
  EXPECT_THAT(ctx.error().message, HasSubstr("listener tls: certificate"));
}

TEST_F(TlsContextTest, ClientRequiresTrustBundle) {
  v1::UpstreamTls cfg;
  auto ctx = ClientContext::create(cfg, "cluster backend tls");
  ASSERT_FALSE(ctx) << "a client context without a trust bundle must be refused";
  EXPECT_EQ(ctx.error().message,
            "cluster backend tls: validation.trust_bundle_file or validation.trust_bundle_pem is "
            "required (weft does not originate unverified TLS)");

  cfg = clientConfig(certs_->ca);
  cfg.mutable_validation()->set_trust_bundle_file(certs_->dir.file("missing-ca.pem"));
  ctx = ClientContext::create(cfg);
  ASSERT_FALSE(ctx);
  EXPECT_EQ(ctx.error().message, "upstream tls: trust_bundle_file " +
                                     certs_->dir.file("missing-ca.pem") + ": no such file");
}

TEST_F(TlsContextTest, ClientWithCertificateAndSni) {
  v1::UpstreamTls cfg = clientConfig(certs_->ca);
  testing::setCertificate(cfg.mutable_certificate(), certs_->client);
  cfg.set_sni("api.example.test.");
  cfg.add_alpn("h2");
  auto ctx = ClientContext::create(cfg);
  ASSERT_TRUE(ctx) << ctx.error().message;
  EXPECT_EQ((*ctx)->configuredSni(), "api.example.test") << "trailing dot dropped";
}

TEST_F(TlsContextTest, FilesOfListsWhatIsRead) {
  v1::ListenerTls server = serverConfig(certs_->server);
  server.mutable_validation()->set_trust_bundle_file(certs_->ca.cert_file);
  EXPECT_EQ(filesOf(server),
            (std::vector<std::string>{certs_->server.cert_file, certs_->server.key_file,
                                      certs_->ca.cert_file}));
  EXPECT_EQ(filesOf(clientConfig(certs_->ca)), std::vector<std::string>{certs_->ca.cert_file});
}

TEST_F(TlsContextTest, InlinePemServesAndVerifiesLikeFiles) {
  // Server certificate and key inline, client trust inline: a full handshake verifies.
  v1::ListenerTls server;
  server.set_mode(v1::ListenerTls::STRICT);
  server.mutable_certificate()->set_certificate_chain_pem(certs_->server.cert_pem);
  server.mutable_certificate()->set_private_key_pem(certs_->server.key_pem);
  auto sctx = ServerContext::create(server);
  ASSERT_TRUE(sctx) << "expected a server context from inline PEM: " << sctx.error().message;
  EXPECT_TRUE(filesOf(server).empty()) << "inline PEM names no file to watch";

  v1::UpstreamTls client;
  client.mutable_validation()->set_trust_bundle_pem(certs_->ca.cert_pem);
  auto cctx = ClientContext::create(client);
  ASSERT_TRUE(cctx) << "expected a client context from an inline trust bundle: "
                    << cctx.error().message;
  EXPECT_TRUE(filesOf(client).empty());

  testing::FdPair fds = testing::socketPair();
  auto st = (*sctx)->newTransport(fds.a);
  auto ct = (*cctx)->newTransport(fds.b, "api.example.test");
  testing::HandshakeResult r = testing::runHandshake(*ct, *st);
  EXPECT_EQ(r.client.status, IoStatus::kOk) << "client handshake: " << r.client.error;
  EXPECT_EQ(r.server.status, IoStatus::kOk) << "server handshake: " << r.server.error;

  // An inline bundle of another CA refuses the same server.
  client.mutable_validation()->set_trust_bundle_pem(certs_->other_ca.cert_pem);
  auto other = ClientContext::create(client);
  ASSERT_TRUE(other) << other.error().message;
  testing::FdPair fds2 = testing::socketPair();
  auto st2 = (*sctx)->newTransport(fds2.a);
  auto ct2 = (*other)->newTransport(fds2.b, "api.example.test");
  r = testing::runHandshake(*ct2, *st2);
  EXPECT_EQ(r.client.status, IoStatus::kError) << "expected the untrusted server refused";
}

TEST_F(TlsContextTest, InlinePemErrorsNameTheFieldNotTheContent) {
  v1::ListenerTls cfg = serverConfig(certs_->server);
  cfg.mutable_certificate()->set_certificate_chain_pem(certs_->server.cert_pem);
  auto ctx = ServerContext::create(cfg);
  ASSERT_FALSE(ctx) << "a file and inline PEM for one item must be refused";
  EXPECT_EQ(ctx.error().message,
            "listener tls: certificate_chain_file and certificate_chain_pem are both set; give "
            "one of them");

  cfg = v1::ListenerTls();
  cfg.set_mode(v1::ListenerTls::STRICT);
  cfg.mutable_certificate()->set_certificate_chain_pem(certs_->server.cert_pem);
  ctx = ServerContext::create(cfg);
  ASSERT_FALSE(ctx);
  EXPECT_EQ(ctx.error().message, "listener tls: private_key_file or private_key_pem is required");

  cfg.mutable_certificate()->set_private_key_pem(certs_->client.key_pem);
  ctx = ServerContext::create(cfg);
  ASSERT_FALSE(ctx) << "expected a key/certificate mismatch";
  EXPECT_EQ(ctx.error().message,
            "listener tls: private key (inline PEM) does not match certificate (inline PEM)");

  cfg.mutable_certificate()->set_private_key_pem(
      "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n"
      "-----END PRIVATE KEY-----\n");
  ctx = ServerContext::create(cfg);
  ASSERT_FALSE(ctx);
  EXPECT_THAT(ctx.error().message, HasSubstr("listener tls: private_key_pem: cannot parse"));
  EXPECT_THAT(ctx.error().message, ::testing::Not(HasSubstr("bm90IGEga2V5")))
      << "an error must never carry key material";

  v1::UpstreamTls client;
  client.mutable_validation()->set_trust_bundle_pem("not pem");
  auto cctx = ClientContext::create(client);
  ASSERT_FALSE(cctx);
  EXPECT_THAT(cctx.error().message, HasSubstr("upstream tls: trust_bundle_pem"));
}

TEST(VerifyFailureName, MetricLabels) {
  EXPECT_EQ(verifyFailureName(VerifyFailure::kNone), "none");
  EXPECT_EQ(verifyFailureName(VerifyFailure::kNoPeerCertificate), "no_peer_certificate");
  EXPECT_EQ(verifyFailureName(VerifyFailure::kUntrusted), "untrusted");
  EXPECT_EQ(verifyFailureName(VerifyFailure::kExpired), "expired");
  EXPECT_EQ(verifyFailureName(VerifyFailure::kSanMismatch), "san_mismatch");
  EXPECT_EQ(verifyFailureName(VerifyFailure::kHandshake), "handshake");
}

TEST_F(TlsContextTest, CertificateNotAfterIsTheLeafsExpiry) {
  auto server = ServerContext::create(serverConfig(certs_->server));
  ASSERT_TRUE(server.has_value()) << server.error().message;
  struct tm tm {};
  ASSERT_EQ(ASN1_TIME_to_tm(X509_get0_notAfter(certs_->server.cert.get()), &tm), 1);
  EXPECT_EQ((*server)->certificateNotAfter(), static_cast<int64_t>(timegm(&tm)));
  auto client = ClientContext::create(clientConfig(certs_->ca));
  ASSERT_TRUE(client.has_value()) << client.error().message;
  EXPECT_EQ((*client)->certificateNotAfter(), 0) << "no client certificate: 0";
}

}  // namespace
}  // namespace weft::net::tls
