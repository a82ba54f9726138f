// Revocation checking with TlsValidation.crl_pem (tls_context.h, "Revocation"): a revoked peer
// is refused on both sides, an unrevoked one accepted, an expired CRL still enforced without
// failing good peers (and counted), a CA without a CRL left unchecked, and CRLs part of what a
// server session may be resumed under.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/stats.h"
#include "net/tls/tls_context.h"
#include "net/tls/tls_test_util.h"
#include "net/tls/tls_transport.h"

namespace weft::net::tls {
namespace {

using testing::clientConfig;
using testing::FdPair;
using ::testing::HasSubstr;
using testing::Issued;
using testing::makeCrlPem;
using testing::readOnce;
using testing::runHandshake;
using testing::serverConfig;
using testing::socketPair;
using testing::statusName;
using testing::TestCerts;
using testing::transfer;

class RevocationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { certs_ = new TestCerts(); }
  static void TearDownTestSuite() {
    delete certs_;
    certs_ = nullptr;
  }

  struct Conn {
    FdPair fds;
    std::unique_ptr<Transport> client;
    std::unique_ptr<Transport> server;
    testing::HandshakeResult result;
  };

  static Conn connect(const ServerContext& s, const ClientContext& c) {
    Conn conn;
    conn.fds = socketPair();
    conn.client = c.newTransport(conn.fds.a, "api.example.test");
    conn.server = s.newTransport(conn.fds.b);
    conn.result = runHandshake(*conn.client, *conn.server);
    return conn;
  }

  static void expectOk(const Conn& conn) {
    EXPECT_EQ(conn.result.client.status, IoStatus::kOk)
        << "client handshake: expected kOk, got " << statusName(conn.result.client.status) << " "
        << conn.result.client.error;
    EXPECT_EQ(conn.result.server.status, IoStatus::kOk)
        << "server handshake: expected kOk, got " << statusName(conn.result.server.status) << " "
        << conn.result.server.error;
  }

  // A server presenting `leaf` (no client certificates asked).
  static std::shared_ptr<const ServerContext> server(const Issued& leaf) {
    auto ctx = ServerContext::create(serverConfig(leaf));
    EXPECT_TRUE(ctx) << ctx.error().message;
    return ctx ? *ctx : nullptr;
  }
  // A client trusting `bundle_pem` with `crl_pem`, counting expired CRLs in `expired`.
  static std::shared_ptr<const ClientContext> client(const std::string& bundle_pem,
                                                     const std::string& crl_pem,
                                                     std::shared_ptr<stats::Counter> expired = {}) {
    v1::UpstreamTls cfg;
    cfg.mutable_validation()->set_trust_bundle_pem(bundle_pem);
    cfg.mutable_validation()->set_crl_pem(crl_pem);
    ContextCounters counters;
    counters.crl_expired = std::move(expired);
    auto ctx = ClientContext::create(cfg, "upstream tls", std::move(counters));
    EXPECT_TRUE(ctx) << ctx.error().message;
    return ctx ? *ctx : nullptr;
  }

  static TestCerts* certs_;
};
TestCerts* RevocationTest::certs_ = nullptr;

TEST_F(RevocationTest, RevokedServerIsRefusedAndAnUnrevokedOneAccepted) {
  const std::string crl = makeCrlPem(certs_->ca, {&certs_->server});
  auto c = client(certs_->ca.cert_pem, crl);
  ASSERT_TRUE(c);

  Conn revoked = connect(*server(certs_->server), *c);
  EXPECT_EQ(revoked.result.client.status, IoStatus::kError)
      << "expected the client to refuse a revoked server certificate";
  EXPECT_EQ(verifyFailureOf(*revoked.client), VerifyFailure::kUntrusted)
      << revoked.result.client.error;
  EXPECT_THAT(revoked.result.client.error, HasSubstr("certificate revoked"));

  Conn good = connect(*server(certs_->server_v2), *c);
  expectOk(good);
  EXPECT_EQ(good.client->peer().peer_dns_san, "v2.example.test");
  EXPECT_EQ(transfer(*good.client, *good.server, "ping"), "ping");

  // The same server without CRLs in the trust: accepted, as before.
  v1::UpstreamTls plain;
  plain.mutable_validation()->set_trust_bundle_pem(certs_->ca.cert_pem);
  auto no_crl = ClientContext::create(plain);
  ASSERT_TRUE(no_crl) << no_crl.error().message;
  expectOk(connect(*server(certs_->server), **no_crl));
}

TEST_F(RevocationTest, ExpiredCrlIsStillEnforcedAndCounted) {
  stats::Registry registry(1);
  auto expired = registry.counter("weft_cluster_ssl_crl_expired_total");
  // thisUpdate 10 days ago, nextUpdate yesterday: the control plane has been away.
  const std::string crl = makeCrlPem(certs_->ca, {&certs_->server}, -10, -1);
  auto c = client(certs_->ca.cert_pem, crl, expired);
  ASSERT_TRUE(c);

  Conn good = connect(*server(certs_->server_v2), *c);
  expectOk(good);
  EXPECT_EQ(good.client->peer().peer_dns_san, "v2.example.test")
      << "an accepted expired CRL must leave the verification result OK";
  EXPECT_EQ(expired->value(), 1u) << "expected the expired CRL to be counted once";

  Conn revoked = connect(*server(certs_->server), *c);
  EXPECT_EQ(revoked.result.client.status, IoStatus::kError)
      << "an expired CRL's entries must still be enforced";
  EXPECT_THAT(revoked.result.client.error, HasSubstr("certificate revoked"));
  EXPECT_EQ(expired->value(), 2u);

  // A CRL from the future (the proxy's clock behind the server's): the same.
  const std::string future = makeCrlPem(certs_->ca, {&certs_->server}, 1, 8);
  auto f = client(certs_->ca.cert_pem, future, expired);
  ASSERT_TRUE(f);
  expectOk(connect(*server(certs_->server_v2), *f));
  EXPECT_EQ(connect(*server(certs_->server), *f).result.client.status, IoStatus::kError);
  EXPECT_EQ(expired->value(), 4u);

  // A current CRL is not counted.
  auto current = client(certs_->ca.cert_pem, makeCrlPem(certs_->ca, {}), expired);
  expectOk(connect(*server(certs_->server), *current));
  EXPECT_EQ(expired->value(), 4u);
}

TEST_F(RevocationTest, ACaWithoutACrlIsNotChecked) {
  // Both roots trusted, a CRL for `ca` only: other_ca's certificates are not checked.
  const std::string bundle = certs_->ca.cert_pem + certs_->other_ca.cert_pem;
  auto c = client(bundle, makeCrlPem(certs_->ca, {&certs_->server}));
  ASSERT_TRUE(c);
  expectOk(connect(*server(certs_->other_server), *c));
  expectOk(connect(*server(certs_->server_v2), *c));
  EXPECT_EQ(connect(*server(certs_->server), *c).result.client.status, IoStatus::kError);
}

TEST_F(RevocationTest, CrlOfAnotherKeyFailsClosed) {
  // A CRL naming `ca` as issuer but signed by another key: unusable, so a certificate of `ca`
  // cannot be checked and is refused (unlike a CA with no CRL at all).
  Issued impostor;
  impostor.cert.reset(X509_dup(certs_->ca.cert.get()));
  impostor.key.reset(EVP_EC_gen("P-256"));
  auto c = client(certs_->ca.cert_pem, makeCrlPem(impostor, {}));
  ASSERT_TRUE(c);
  Conn conn = connect(*server(certs_->server_v2), *c);
  EXPECT_EQ(conn.result.client.status, IoStatus::kError)
      << "a CRL whose signature does not verify must not let certificates through";
  EXPECT_EQ(verifyFailureOf(*conn.client), VerifyFailure::kUntrusted) << conn.result.client.error;
}

TEST_F(RevocationTest, ListenerRefusesARevokedClientCertificate) {
  v1::ListenerTls scfg = serverConfig(certs_->server);
  scfg.mutable_validation()->set_trust_bundle_pem(certs_->ca.cert_pem);
  scfg.mutable_validation()->set_crl_pem(makeCrlPem(certs_->ca, {&certs_->client}));
  for (v1::TlsVersion v : {v1::TLS_1_2, v1::TLS_1_3}) {
    SCOPED_TRACE(v1::TlsVersion_Name(v));
    scfg.set_max_version(v);
    auto s = ServerContext::create(scfg);
    ASSERT_TRUE(s) << s.error().message;

    v1::UpstreamTls revoked_cfg = clientConfig(certs_->ca);
    testing::setCertificate(revoked_cfg.mutable_certificate(), certs_->client);
    auto revoked_client = ClientContext::create(revoked_cfg);
    ASSERT_TRUE(revoked_client) << revoked_client.error().message;
    Conn revoked = connect(**s, **revoked_client);
    EXPECT_EQ(revoked.result.server.status, IoStatus::kError)
        << "the listener must refuse a revoked client certificate";
    EXPECT_EQ(verifyFailureOf(*revoked.server), VerifyFailure::kUntrusted)
        << revoked.result.server.error;
    EXPECT_THAT(revoked.result.server.error, HasSubstr("certificate revoked"));
    if (revoked.result.client.status == IoStatus::kOk) {  // TLS 1.3: learnt on the first read
      std::string got;
      EXPECT_NE(readOnce(*revoked.client, got).status, IoStatus::kOk);
    }

    v1::UpstreamTls good_cfg = clientConfig(certs_->ca);
    testing::setCertificate(good_cfg.mutable_certificate(), certs_->server_v2);
    auto good_client = ClientContext::create(good_cfg);
    ASSERT_TRUE(good_client) << good_client.error().message;
    Conn good = connect(**s, **good_client);
    expectOk(good);
    EXPECT_TRUE(good.server->peer().peer_certificate);
    EXPECT_EQ(good.server->peer().peer_dns_san, "v2.example.test");
  }
}

TEST_F(RevocationTest, NoClientCertificateIsVisibleInPeerInfo) {
  auto s = server(certs_->server);
  auto c = ClientContext::create(clientConfig(certs_->ca));
  ASSERT_TRUE(c) << c.error().message;
  Conn conn = connect(*s, **c);
  expectOk(conn);
  EXPECT_FALSE(conn.server->peer().peer_certificate)
      << "the client sent no certificate (Envoy's ssl.no_certificate)";
  EXPECT_TRUE(conn.client->peer().peer_certificate) << "the server always sends one";
}

TEST_F(RevocationTest, ResumptionRefusedWhenTheCrlChanges) {
  v1::ListenerTls scfg = serverConfig(certs_->server);
  scfg.mutable_validation()->set_trust_bundle_pem(certs_->ca.cert_pem);
  scfg.mutable_validation()->set_crl_pem(makeCrlPem(certs_->ca, {}));
  v1::UpstreamTls ccfg = clientConfig(certs_->ca);
  testing::setCertificate(ccfg.mutable_certificate(), certs_->client);
  auto s1 = ServerContext::create(scfg);
  ASSERT_TRUE(s1) << s1.error().message;
  auto c = ClientContext::create(ccfg);
  ASSERT_TRUE(c) << c.error().message;
  Conn first = connect(**s1, **c);
  expectOk(first);
  EXPECT_EQ(transfer(*first.server, *first.client, "x"), "x");
  first.client->shutdown();
  first.server->shutdown();

  // Control: rebuilt with the same CRL (and the ticket key carried over), the session resumes.
  auto same = ServerContext::create(scfg, "listener tls", s1->get());
  ASSERT_TRUE(same) << same.error().message;
  Conn resumed = connect(**same, **c);
  expectOk(resumed);
  EXPECT_TRUE(resumed.server->peer().resumed) << "same rules: expected the session to resume";
  EXPECT_EQ(transfer(*resumed.server, *resumed.client, "y"), "y");
  resumed.client->shutdown();
  resumed.server->shutdown();

  // The client is revoked; the rebuilt listener keeps the ticket key but must not resume the
  // session its certificate was verified in.
  scfg.mutable_validation()->set_crl_pem(makeCrlPem(certs_->ca, {&certs_->client}));
  auto s2 = ServerContext::create(scfg, "listener tls", same->get());
  ASSERT_TRUE(s2) << s2.error().message;
  Conn second = connect(**s2, **c);
  EXPECT_EQ(second.result.server.status, IoStatus::kError)
      << "CRLs changed: expected a full handshake, which refuses the now revoked client";
  EXPECT_EQ(verifyFailureOf(*second.server), VerifyFailure::kUntrusted)
      << second.result.server.error;
}

TEST_F(RevocationTest, MalformedCrlIsAConfigError) {
  v1::UpstreamTls cfg = clientConfig(certs_->ca);
  cfg.mutable_validation()->set_crl_pem(
      "-----BEGIN X509 CRL-----\nnot base64\n-----END X509 CRL-----\n");
  auto bad = ClientContext::create(cfg, "clusters[x].tls");
  ASSERT_FALSE(bad) << "a CRL that does not parse must be refused";
  EXPECT_THAT(bad.error().message, HasSubstr("clusters[x].tls: validation.crl_pem"));
  cfg.mutable_validation()->set_crl_pem(certs_->ca.cert_pem);
  auto none = ClientContext::create(cfg);
  ASSERT_FALSE(none) << "a certificate is not a CRL";
  EXPECT_THAT(none.error().message, HasSubstr("no PEM CRL"));
}

}  // namespace
}  // namespace weft::net::tls
