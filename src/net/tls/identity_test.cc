// The mesh identity helpers and the renewal schedule, on a simulated clock.
#include "net/tls/identity.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <string>
#include <vector>

#include "net/tls/san.h"
#include "net/tls/tls_test_util.h"

namespace weft::net::tls {
namespace {

using std::chrono::hours;
using std::chrono::minutes;

// Drives an IdentityRenewal on a SimTimeSource and records what it asked for, with the
// simulated wall time (unix seconds) of each event.
class RenewalTest : public ::testing::Test {
 protected:
  RenewalTest() { rebuild({}); }

  void rebuild(IdentityRenewal::Options options) {
    renewal_.reset();
    renewal_ = std::make_unique<IdentityRenewal>(
        timers_,
        IdentityRenewal::Callbacks{
            [this] { requests_.push_back(now()); },
            [this](bool on) { (on ? warn_on_ : warn_off_).push_back(now()); },
            [this] { expired_.push_back(now()); }},
        options);
  }
  int64_t now() const {
    return std::chrono::duration_cast<std::chrono::seconds>(time_.systemNow().time_since_epoch())
        .count();
  }
  // Moves the clock one second at a time, firing timers as it goes.
  void advance(std::chrono::seconds d) {
    for (int64_t i = 0; i < d.count(); ++i) {
      time_.advance(std::chrono::seconds(1));
      timers_.runExpired();
    }
  }
  // A certificate issued now for `lifetime` (notBefore back-dated `skew`), as the server does.
  IdentityTimes issuedNow(std::chrono::seconds lifetime, int64_t skew = 0, int64_t warn = 0) {
    return IdentityTimes{now() - skew, now() + lifetime.count(), warn};
  }

  SimTimeSource time_;
  TimerQueue timers_{time_};
  std::unique_ptr<IdentityRenewal> renewal_;
  std::vector<int64_t> requests_, warn_on_, warn_off_, expired_;
};

TEST_F(RenewalTest, AsksAtOnceThenAtHalfLife) {
  const int64_t t0 = now();
  renewal_->connected();
  ASSERT_EQ(requests_, std::vector<int64_t>{t0}) << "no certificate: ask when connected";
  EXPECT_TRUE(renewal_->inFlight());
  advance(std::chrono::seconds(2));
  const IdentityTimes day = issuedNow(hours(24), 300);
  renewal_->certificateArrived(day);
  EXPECT_FALSE(renewal_->due());
  EXPECT_EQ(day.renewAt(), day.not_before + 12 * 3600 + 150);
  advance(std::chrono::seconds(day.renewAt() - now() - 1));
  EXPECT_EQ(requests_.size(), 1u) << "nothing before half-life";
  advance(std::chrono::seconds(1));
  ASSERT_EQ(requests_.size(), 2u) << "a request exactly at half-life";
  EXPECT_EQ(requests_.back(), day.renewAt());
  // The new certificate moves the next renewal to its own half-life.
  const IdentityTimes next = issuedNow(hours(24), 300);
  renewal_->certificateArrived(next);
  advance(std::chrono::seconds(next.renewAt() - now()));
  ASSERT_EQ(requests_.size(), 3u);
  EXPECT_EQ(requests_.back(), next.renewAt());
  EXPECT_TRUE(warn_on_.empty()) << "renewed in time: no warning";
  EXPECT_TRUE(expired_.empty());
}

TEST_F(RenewalTest, FailuresRetryWithBackoffThenStartOver) {
  renewal_->connected();
  ASSERT_EQ(requests_.size(), 1u);
  std::vector<int64_t> gaps;
  for (int i = 0; i < 10; ++i) {
    int64_t before = now();
    renewal_->requestFailed();
    size_t n = requests_.size();
    while (requests_.size() == n) advance(std::chrono::seconds(1));
    gaps.push_back(now() - before);
  }
  EXPECT_EQ(gaps, (std::vector<int64_t>{1, 2, 4, 8, 16, 32, 64, 128, 256, 300}))
      << "1 s doubling, capped at 5 minutes";
  renewal_->certificateArrived(issuedNow(minutes(60)));
  // The next failure (at the renewal) starts from 1 s again.
  advance(std::chrono::seconds(30 * 60));
  ASSERT_EQ(requests_.size(), 12u);
  renewal_->requestFailed();
  advance(std::chrono::seconds(1));
  EXPECT_EQ(requests_.size(), 13u) << "the backoff starts over after a certificate";
}

TEST_F(RenewalTest, UnansweredRequestIsRetriedAfterTheAnswerTimeout) {
  rebuild({std::chrono::seconds(10), std::chrono::seconds(1), minutes(5)});
  renewal_->connected();
  advance(std::chrono::seconds(10));
  EXPECT_EQ(requests_.size(), 1u) << "waiting for the answer";
  advance(std::chrono::seconds(1));
  EXPECT_EQ(requests_.size(), 2u) << "no answer in 10 s counts as a failure; retried after 1 s";
}

TEST_F(RenewalTest, DisconnectedAtRenewalAsksOnReconnect) {
  renewal_->connected();
  renewal_->certificateArrived(issuedNow(minutes(10)));
  renewal_->disconnected();
  advance(std::chrono::seconds(6 * 60));
  EXPECT_EQ(requests_.size(), 1u) << "no stream, no request";
  EXPECT_TRUE(renewal_->due());
  renewal_->connected();
  ASSERT_EQ(requests_.size(), 2u) << "the due renewal goes out as soon as the stream is back";
  // A stream lost while a request is in flight: the next stream asks again at once.
  renewal_->disconnected();
  renewal_->connected();
  EXPECT_EQ(requests_.size(), 3u);
}

TEST_F(RenewalTest, WarnsFromTheWarningTimeAndReportsExpiry) {
  const IdentityTimes t = issuedNow(hours(4));  // warns a quarter before: at 3 h
  renewal_->certificateArrived(t);              // never connected: it cannot renew
  advance(std::chrono::seconds(3 * 3600 - 1));
  EXPECT_TRUE(warn_on_.empty());
  advance(std::chrono::seconds(1));
  ASSERT_EQ(warn_on_, std::vector<int64_t>{t.warnAt()});
  EXPECT_TRUE(renewal_->expiring());
  advance(std::chrono::seconds(3600));
  EXPECT_EQ(expired_, std::vector<int64_t>{t.not_after});
  EXPECT_TRUE(renewal_->haveCertificate()) << "the current certificate stays in use";
  // A certificate at last: the warning ends.
  renewal_->certificateArrived(issuedNow(hours(4)));
  EXPECT_EQ(warn_off_, std::vector<int64_t>{now()});
  EXPECT_FALSE(renewal_->expiring());
}

TEST_F(RenewalTest, ConfiguredWarningPeriod) {
  const IdentityTimes t = issuedNow(hours(24), 0, 600);
  EXPECT_EQ(t.warnAt(), t.not_after - 600);
  renewal_->certificateArrived(t);
  advance(std::chrono::seconds(24 * 3600 - 601));
  EXPECT_TRUE(warn_on_.empty());
  advance(std::chrono::seconds(1));
  EXPECT_EQ(warn_on_.size(), 1u);
}

TEST_F(RenewalTest, RetriesNeverWaitPastTheExpiry) {
  renewal_->connected();
  renewal_->certificateArrived(issuedNow(std::chrono::seconds(120)));
  advance(std::chrono::seconds(60));
  ASSERT_EQ(requests_.size(), 2u);
  // Fail repeatedly: the waits shrink to half of what is left, so attempts continue up to the
  // expiry.
  for (int i = 0; i < 6; ++i) {
    renewal_->requestFailed();
    size_t n = requests_.size();
    while (requests_.size() == n && now() < renewal_->times().not_after)
      advance(std::chrono::seconds(1));
  }
  EXPECT_GE(requests_.size(), 8u);
  EXPECT_LE(requests_.back(), renewal_->times().not_after);
}

TEST_F(RenewalTest, ExpiredCertificateFromDiskIsAsGoodAsNone) {
  IdentityTimes old{now() - 7200, now() - 3600, 0};
  renewal_->certificateArrived(old);
  EXPECT_FALSE(renewal_->haveCertificate());
  renewal_->connected();
  EXPECT_EQ(requests_.size(), 1u);
}

TEST(IdentityKeyTest, CsrCarriesTheKeyAndOnlyTheSpiffeId) {
  auto key = generateIdentityKey();
  ASSERT_TRUE(key.has_value()) << key.error().message;
  EXPECT_EQ(EVP_PKEY_get_bits(key->get()), 256);
  auto csr = makeIdentityCsr(key->get(), "spiffe://m/virtualNode/a");
  ASSERT_TRUE(csr.has_value()) << csr.error().message;
  BIO* b = BIO_new_mem_buf(csr->data(), static_cast<int>(csr->size()));
  X509_REQ* req = PEM_read_bio_X509_REQ(b, nullptr, nullptr, nullptr);
  BIO_free(b);
  ASSERT_NE(req, nullptr);
  EXPECT_EQ(X509_REQ_verify(req, key->get()), 1) << "signed by the proxy's own key";
  STACK_OF(X509_EXTENSION)* exts = X509_REQ_get_extensions(req);
  auto* gens =
      static_cast<GENERAL_NAMES*>(X509V3_get_d2i(exts, NID_subject_alt_name, nullptr, nullptr));
  ASSERT_NE(gens, nullptr);
  ASSERT_EQ(sk_GENERAL_NAME_num(gens), 1);
  EXPECT_EQ(sk_GENERAL_NAME_value(gens, 0)->type, GEN_URI);
  GENERAL_NAMES_free(gens);
  sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  X509_REQ_free(req);
  std::string pem = identityKeyPem(key->get());
  EXPECT_NE(pem.find("BEGIN PRIVATE KEY"), std::string::npos);
  EXPECT_TRUE(parsePrivateKey(pem, "key").has_value());
}

TEST(IdentityKeyTest, InspectChecksTheKey) {
  testing::TestCerts certs;
  auto info = inspectIdentityCertificate(certs.server.cert_pem, certs.server.key.get());
  ASSERT_TRUE(info.has_value()) << info.error().message;
  EXPECT_EQ(info->uri_san, testing::TestCerts::kServerUri);
  EXPECT_GT(info->not_after, info->not_before);
  EXPECT_EQ(info->not_after - info->not_before, 31 * 86400);
  auto other = generateIdentityKey().value();
  auto wrong = inspectIdentityCertificate(certs.server.cert_pem, other.get());
  ASSERT_FALSE(wrong.has_value()) << "a certificate for another key must be refused";
  EXPECT_NE(wrong.error().message.find("not for this proxy's key"), std::string::npos);
}

}  // namespace
}  // namespace weft::net::tls
