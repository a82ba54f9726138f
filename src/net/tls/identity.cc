#include "net/tls/identity.h"

#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <ctime>

#include "net/tls/san.h"

namespace weft::net::tls {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

std::string bioText(BIO* b) {
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

int64_t asn1Unix(const ASN1_TIME* t) {
  struct tm tm {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<int64_t>(timegm(&tm));
}

}  // namespace

Result<EvpPkeyPtr> generateIdentityKey() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  if (key == nullptr) return makeError("generating an EC P-256 key: " + drainSslErrors());
  return EvpPkeyPtr(key);
}

std::string identityKeyPem(EVP_PKEY* key) {
  BioPtr b(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(b.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  return bioText(b.get());
}

Result<std::string> makeIdentityCsr(EVP_PKEY* key, std::string_view spiffe_id) {
  struct ReqFree {
    void operator()(X509_REQ* r) const { X509_REQ_free(r); }
  };
  std::unique_ptr<X509_REQ, ReqFree> req(X509_REQ_new());
  if (!req || X509_REQ_set_version(req.get(), 0) != 1 || X509_REQ_set_pubkey(req.get(), key) != 1)
    return makeError("making a certificate request: " + drainSslErrors());
  if (!spiffe_id.empty()) {
    GENERAL_NAMES* gens = sk_GENERAL_NAME_new_null();
    GENERAL_NAME* g = GENERAL_NAME_new();
    ASN1_IA5STRING* s = ASN1_IA5STRING_new();
    ASN1_STRING_set(s, spiffe_id.data(), static_cast<int>(spiffe_id.size()));
    GENERAL_NAME_set0_value(g, GEN_URI, s);
    sk_GENERAL_NAME_push(gens, g);
    STACK_OF(X509_EXTENSION)* exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION* ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, gens);
    GENERAL_NAMES_free(gens);
    bool ok = ext != nullptr && sk_X509_EXTENSION_push(exts, ext) > 0 &&
              X509_REQ_add_extensions(req.get(), exts) == 1;
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    if (!ok)
      return makeError("adding the SPIFFE ID to the certificate request: " + drainSslErrors());
  }
  if (X509_REQ_sign(req.get(), key, EVP_sha256()) <= 0)
    return makeError("signing the certificate request: " + drainSslErrors());
  BioPtr b(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_REQ(b.get(), req.get());
  return bioText(b.get());
}

Result<IdentityCertificate> inspectIdentityCertificate(std::string_view chain_pem, EVP_PKEY* key) {
  auto chain = parseCertChain(chain_pem, "identity certificate");
  if (!chain) return Unexpected<Error>{chain.error()};
  X509* leaf = chain->leaf.get();
  if (key != nullptr && X509_check_private_key(leaf, key) != 1) {
    takeSslErrors();
    return makeError("the identity certificate is not for this proxy's key");
  }
  IdentityCertificate out;
  out.not_before = asn1Unix(X509_get0_notBefore(leaf));
  out.not_after = asn1Unix(X509_get0_notAfter(leaf));
  PeerSans sans = sansOf(leaf);
  if (!sans.uri.empty()) out.uri_san = sans.uri.front();
  return out;
}

// ------------------------------------------------------------------------------------------------

IdentityRenewal::IdentityRenewal(TimerQueue& timers, Callbacks callbacks, Options options)
    : timers_(timers),
      cb_(std::move(callbacks)),
      options_(options),
      backoff_(options.retry_base),
      renew_timer_(timers, [this] { onRenewTimer(); }),
      retry_timer_(timers,
                   [this] {
                     retry_wait_ = false;
                     tryRequest();
                   }),
      answer_timer_(timers, [this] { requestFailed(); }),
      warn_timer_(timers, [this] { onWarnTimer(); }),
      expiry_timer_(timers, [this] {
        if (cb_.expired) cb_.expired();
      }) {}

int64_t IdentityRenewal::nowUnix() const {
  return std::chrono::duration_cast<std::chrono::seconds>(
             timers_.time().systemNow().time_since_epoch())
      .count();
}

Duration IdentityRenewal::until(int64_t unix_time) const {
  auto target = std::chrono::system_clock::time_point(std::chrono::seconds(unix_time));
  auto d = std::chrono::duration_cast<Duration>(target - timers_.time().systemNow());
  return std::max(d, Duration(0));
}

bool IdentityRenewal::due() const { return !have_ || renew_due_; }

void IdentityRenewal::connected() {
  connected_ = true;
  // A new stream: whatever waited (a backoff, a lost answer) goes out now.
  retry_timer_.disarm();
  retry_wait_ = false;
  tryRequest();
}

void IdentityRenewal::disconnected() {
  connected_ = false;
  in_flight_ = false;  // its answer will not come on another stream
  answer_timer_.disarm();
}

void IdentityRenewal::certificateArrived(const IdentityTimes& times) {
  times_ = times;
  have_ = true;
  in_flight_ = false;
  renew_due_ = false;
  retry_wait_ = false;
  backoff_ = options_.retry_base;
  answer_timer_.disarm();
  retry_timer_.disarm();
  if (expiring_) {
    expiring_ = false;
    if (cb_.expiring) cb_.expiring(false);
  }
  const int64_t now = nowUnix();
  if (now >= times.not_after) {
    // Loaded from disk already expired: as good as none.
    have_ = false;
    tryRequest();
    return;
  }
  renew_timer_.arm(until(times.renewAt()));
  warn_timer_.arm(until(times.warnAt()));
  expiry_timer_.arm(until(times.not_after));
}

void IdentityRenewal::requestFailed() {
  in_flight_ = false;
  answer_timer_.disarm();
  scheduleRetry();
}

void IdentityRenewal::onRenewTimer() {
  renew_due_ = true;
  tryRequest();
}

void IdentityRenewal::onWarnTimer() {
  if (!have_ || expiring_) return;
  expiring_ = true;
  if (cb_.expiring) cb_.expiring(true);
}

void IdentityRenewal::tryRequest() {
  if (!due() || !connected_ || in_flight_ || retry_wait_) return;
  in_flight_ = true;
  answer_timer_.arm(options_.answer_timeout);
  if (cb_.request) cb_.request();
}

void IdentityRenewal::scheduleRetry() {
  Duration wait = backoff_;
  backoff_ = std::min<Duration>(backoff_ * 2, options_.retry_cap);
  if (have_) {
    // Never wait past the expiry for the next attempt.
    Duration left = until(times_.not_after);
    if (left > Duration(0)) wait = std::min(wait, std::max<Duration>(left / 2, seconds(1)));
  }
  retry_wait_ = true;
  retry_timer_.arm(wait);
}

}  // namespace weft::net::tls
