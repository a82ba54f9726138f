#include "net/tls/cert_watcher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "net/tls/tls_test_util.h"
#include "net/tls/tls_transport.h"

namespace weft::net::tls {
namespace {

using testing::clientConfig;
using testing::FdPair;
using ::testing::HasSubstr;
using testing::readFileForTest;
using testing::replaceFile;
using testing::runHandshake;
using testing::serverConfig;
using testing::socketPair;
using testing::TestCerts;
using testing::transfer;

class CertWatcherTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { certs_ = new TestCerts(); }
  static void TearDownTestSuite() {
    delete certs_;
    certs_ = nullptr;
  }

  // The listener's live files start as a copy of the v1 server certificate and key.
  void SetUp() override {
    live_crt_ = certs_->dir.file(std::string("live-") + currentTestName() + ".crt");
    live_key_ = certs_->dir.file(std::string("live-") + currentTestName() + ".key");
    replaceFile(live_crt_, certs_->server.cert_pem);
    replaceFile(live_key_, certs_->server.key_pem);
    cfg_ = serverConfig(certs_->server);
    cfg_.mutable_certificate()->set_certificate_chain_file(live_crt_);
    cfg_.mutable_certificate()->set_private_key_file(live_key_);
  }

  static const char* currentTestName() {
    return ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }

  struct Conn {
    FdPair fds;
    std::unique_ptr<Transport> client;
    std::unique_ptr<Transport> server;
    testing::HandshakeResult result;
  };

  // A connection from a fresh client context (no session to resume), so PeerInfo shows the
  // certificate the server presents now.
  static Conn connect(const ServerContext& s,
                      const v1::UpstreamTls& ccfg = clientConfig(certs_->ca)) {
    Conn conn;
    auto c = ClientContext::create(ccfg);
    EXPECT_TRUE(c) << c.error().message;
    conn.fds = socketPair();
    conn.client = (*c)->newTransport(conn.fds.a, "api.example.test");
    conn.server = s.newTransport(conn.fds.b);
    conn.result = runHandshake(*conn.client, *conn.server);
    return conn;
  }

  static TestCerts* certs_;
  std::string live_crt_;
  std::string live_key_;
  v1::ListenerTls cfg_;
};
TestCerts* CertWatcherTest::certs_ = nullptr;

TEST_F(CertWatcherTest, NothingChangedMeansNoReload) {
  auto tls = watchServerContext(cfg_);
  ASSERT_TRUE(tls) << tls.error().message;
  auto before = tls->slot->current();
  ASSERT_NE(before, nullptr);
  auto polled = tls->watcher->poll();
  ASSERT_TRUE(polled) << polled.error().message;
  EXPECT_FALSE(*polled) << "files unchanged: expected no reload";
  EXPECT_EQ(tls->slot->current(), before);
  EXPECT_EQ(tls->watcher->files(), (std::vector<std::string>{live_crt_, live_key_}));
}

TEST_F(CertWatcherTest, ReloadServesNewCertificateAndKeepsExistingConnections) {
  auto tls = watchServerContext(cfg_, "listener ingress tls");
  ASSERT_TRUE(tls) << tls.error().message;
  const uint64_t version_before = tls->slot->version();
  SlotReader<ServerContext> reader(*tls->slot);
  auto old_ctx = reader.current();

  Conn before = connect(*old_ctx);
  ASSERT_EQ(before.result.client.status, IoStatus::kOk) << before.result.client.error;
  EXPECT_EQ(before.client->peer().peer_dns_san, "*.example.test");

  replaceFile(live_crt_, certs_->server_v2.cert_pem);
  replaceFile(live_key_, certs_->server_v2.key_pem);
  auto polled = tls->watcher->poll();
  ASSERT_TRUE(polled) << polled.error().message;
  EXPECT_TRUE(*polled) << "files changed: expected a reload";
  EXPECT_EQ(tls->slot->version(), version_before + 1);
  EXPECT_NE(reader.current(), old_ctx) << "the per-worker reader must pick up the new context";
  EXPECT_EQ(reader.current(), tls->slot->current());

  Conn after = connect(*tls->slot->current());
  ASSERT_EQ(after.result.client.status, IoStatus::kOk) << after.result.client.error;
  EXPECT_EQ(after.client->peer().peer_dns_san, "v2.example.test")
      << "new handshakes must see the reloaded certificate";

  // The connection made before the reload still works in both directions.
  old_ctx.reset();
  EXPECT_EQ(transfer(*before.client, *before.server, "still here?"), "still here?");
  EXPECT_EQ(transfer(*before.server, *before.client, "yes"), "yes");
}

TEST_F(CertWatcherTest, BadReloadKeepsOldContextUntilFilesChangeAgain) {
  auto tls = watchServerContext(cfg_);
  ASSERT_TRUE(tls) << tls.error().message;
  auto good = tls->slot->current();
  const uint64_t version = tls->slot->version();

  // Certificate replaced, key not yet: a mismatch.
  replaceFile(live_crt_, certs_->server_v2.cert_pem);
  auto polled = tls->watcher->poll();
  ASSERT_FALSE(polled) << "expected the reload to fail";
  EXPECT_THAT(polled.error().message, HasSubstr("does not match certificate " + live_crt_));
  EXPECT_EQ(tls->slot->current(), good) << "a failed reload must keep the old context";
  EXPECT_EQ(tls->slot->version(), version);
  Conn during = connect(*tls->slot->current());
  ASSERT_EQ(during.result.client.status, IoStatus::kOk) << during.result.client.error;
  EXPECT_EQ(during.client->peer().peer_dns_san, "*.example.test");

  polled = tls->watcher->poll();
  ASSERT_TRUE(polled) << "unchanged files are not retried: " << polled.error().message;
  EXPECT_FALSE(*polled);

  // The key arrives: the next poll succeeds.
  replaceFile(live_key_, certs_->server_v2.key_pem);
  polled = tls->watcher->poll();
  ASSERT_TRUE(polled) << polled.error().message;
  EXPECT_TRUE(*polled);
  Conn after = connect(*tls->slot->current());
  ASSERT_EQ(after.result.client.status, IoStatus::kOk) << after.result.client.error;
  EXPECT_EQ(after.client->peer().peer_dns_san, "v2.example.test");
}

TEST_F(CertWatcherTest, HalfWrittenAndMissingFilesKeepOldContext) {
  auto tls = watchServerContext(cfg_);
  ASSERT_TRUE(tls) << tls.error().message;
  auto good = tls->slot->current();

  const std::string& pem = certs_->server_v2.cert_pem;
  replaceFile(live_crt_, pem.substr(0, pem.size() / 2));
  auto polled = tls->watcher->poll();
  ASSERT_FALSE(polled) << "a truncated PEM must not load";
  EXPECT_THAT(polled.error().message, HasSubstr("certificate_chain_file " + live_crt_));
  EXPECT_EQ(tls->slot->current(), good);

  std::filesystem::remove(live_crt_);
  polled = tls->watcher->poll();
  ASSERT_FALSE(polled) << "a missing file must not load";
  EXPECT_THAT(polled.error().message, HasSubstr(live_crt_ + ": no such file"));
  EXPECT_EQ(tls->slot->current(), good);

  replaceFile(live_crt_, certs_->server.cert_pem);
  polled = tls->watcher->poll();
  ASSERT_TRUE(polled) << polled.error().message;
  EXPECT_TRUE(*polled);
  EXPECT_NE(tls->slot->current(), good);
}

TEST_F(CertWatcherTest, InitialFailureIsAnError) {
  cfg_.mutable_certificate()->set_private_key_file(certs_->dir.file("nope.key"));
  auto tls = watchServerContext(cfg_);
  ASSERT_FALSE(tls);
  EXPECT_EQ(tls.error().message,
            "listener tls: private_key_file " + certs_->dir.file("nope.key") + ": no such file");
}

TEST_F(CertWatcherTest, ResumptionSurvivesReloadWithSameValidation) {
  auto tls = watchServerContext(cfg_);
  ASSERT_TRUE(tls) << tls.error().message;
  auto c = ClientContext::create(clientConfig(certs_->ca));
  ASSERT_TRUE(c) << c.error().message;

  Conn first;
  first.fds = socketPair();
  first.client = (*c)->newTransport(first.fds.a, "api.example.test");
  first.server = tls->slot->current()->newTransport(first.fds.b);
  first.result = runHandshake(*first.client, *first.server);
  ASSERT_EQ(first.result.client.status, IoStatus::kOk) << first.result.client.error;
  EXPECT_EQ(transfer(*first.server, *first.client, "ticket please"), "ticket please");

  replaceFile(live_crt_, certs_->server_v2.cert_pem);
  replaceFile(live_key_, certs_->server_v2.key_pem);
  auto polled = tls->watcher->poll();
  ASSERT_TRUE(polled && *polled);

  Conn second;
  second.fds = socketPair();
  second.client = (*c)->newTransport(second.fds.a, "api.example.test");
  second.server = tls->slot->current()->newTransport(second.fds.b);
  second.result = runHandshake(*second.client, *second.server);
  ASSERT_EQ(second.result.client.status, IoStatus::kOk) << second.result.client.error;
  EXPECT_TRUE(second.server->peer().resumed)
      << "the ticket key is carried across a reload, so the old ticket must still resume";
}

TEST_F(CertWatcherTest, ClientTrustBundleReload) {
  std::string bundle = certs_->dir.file("live-bundle.pem");
  replaceFile(bundle, certs_->other_ca.cert_pem);
  v1::UpstreamTls ccfg = clientConfig(certs_->ca);
  ccfg.mutable_validation()->set_trust_bundle_file(bundle);
  auto upstream = watchClientContext(ccfg, "cluster backend tls");
  ASSERT_TRUE(upstream) << upstream.error().message;
  auto server_ctx = ServerContext::create(serverConfig(certs_->server));
  ASSERT_TRUE(server_ctx) << server_ctx.error().message;

  auto attempt = [&]() {
    Conn conn;
    conn.fds = socketPair();
    conn.client = upstream->slot->current()->newTransport(conn.fds.a, "api.example.test");
    conn.server = (*server_ctx)->newTransport(conn.fds.b);
    conn.result = runHandshake(*conn.client, *conn.server);
    return conn;
  };
  Conn refused = attempt();
  EXPECT_EQ(verifyFailureOf(*refused.client), VerifyFailure::kUntrusted)
      << refused.result.client.error;

  replaceFile(bundle, certs_->other_ca.cert_pem + certs_->ca.cert_pem);
  auto polled = upstream->watcher->poll();
  ASSERT_TRUE(polled) << polled.error().message;
  EXPECT_TRUE(*polled);
  Conn accepted = attempt();
  EXPECT_EQ(accepted.result.client.status, IoStatus::kOk) << accepted.result.client.error;
}

// Readers on several threads while the main thread keeps replacing the context: every read sees
// a complete, live context, and versions never go backwards (run under TSan in CI's tsan preset).
TEST_F(CertWatcherTest, SlotIsSafeAcrossThreads) {
  auto first = ServerContext::create(cfg_);
  ASSERT_TRUE(first) << first.error().message;
  ContextSlot<ServerContext> slot(*first);
  std::vector<std::shared_ptr<const ServerContext>> pool{*first};
  for (int i = 0; i < 3; ++i) {
    auto next = ServerContext::create(cfg_, "listener tls", pool.back().get());
    ASSERT_TRUE(next) << next.error().message;
    pool.push_back(*next);
  }
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::atomic<long> reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&, t] {
      SlotReader<ServerContext> reader(slot);
      uint64_t last_version = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        uint64_t v = slot.version();
        if (v < last_version) bad.fetch_add(1);
        last_version = v;
        const auto& ctx = (t % 2 == 0) ? reader.current() : slot.current();
        if (ctx == nullptr || ctx->alpn().empty()) bad.fetch_add(1);
        reads.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (int i = 0; i < 2000; ++i) slot.store(pool[static_cast<size_t>(i) % pool.size()]);
  // Make sure the readers really ran concurrently with the stores (a condition, not a sleep).
  while (reads.load() < 1000) std::this_thread::yield();
  stop = true;
  for (auto& r : readers) r.join();
  EXPECT_EQ(bad.load(), 0) << "a reader saw a null context or a version going backwards";
  EXPECT_EQ(slot.version(), 2001u);
}

TEST(FileStamp, DetectsRenameOverAndAbsence) {
  testing::TempDir dir;
  std::string f = dir.file("x.pem");
  EXPECT_FALSE(stampFile(f).exists);
  testing::writeFile(f, "one");
  FileStamp a = stampFile(f);
  EXPECT_TRUE(a.exists);
  EXPECT_EQ(a.size, 3);
  replaceFile(f, "two");  // same size, new inode
  FileStamp b = stampFile(f);
  EXPECT_NE(a, b) << "a rename-over must change the stamp even at equal size";
  EXPECT_EQ(readFileForTest(f), "two");
}

}  // namespace
}  // namespace weft::net::tls
