#pragma once
// A proxy's mesh identity (docs/security.md, "Mesh identities"): the key it generates itself (EC
// P-256; it never leaves the host), the CSR it sends on the config stream, the certificate the
// control plane answers, and when to renew it.
//
// IdentityRenewal is the schedule, on a TimerQueue (so tests drive it with a SimTimeSource):
//   - without a certificate it asks at once (when connected), and again after a failed attempt;
//   - with one valid [notBefore, notAfter] it asks at half-life, notBefore + lifetime / 2;
//   - an attempt fails when the answer is an error, when no answer comes within
//     answer_timeout, or when the stream is lost first; the next one follows after a backoff
//     (retry_base doubling up to retry_cap, never later than the expiry), or at once on the next
//     connection;
//   - from warnAt (notAfter - the warning period; by default a quarter of the lifetime) until a
//     new certificate arrives it reports `expiring` (the agent logs and sets a metric), and at
//     notAfter `expired`; the current certificate stays in use meanwhile (connections made with
//     it are the peers' to judge).
// Times are wall-clock (certificates are); timers are armed for the wall-clock distance.
//
// Thread-safety: IdentityRenewal belongs to one event loop (its TimerQueue's thread); the free
// functions are reentrant.

#include <openssl/evp.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "common/time.h"
#include "common/timer.h"
#include "net/tls/ssl_util.h"

namespace weft::net::tls {

// A fresh EC P-256 key.
Result<EvpPkeyPtr> generateIdentityKey();
// Unencrypted PKCS#8 PEM of `key` (for the proxy's own 0600 state file and its TLS contexts).
std::string identityKeyPem(EVP_PKEY* key);
// A PKCS#10 CSR (PEM) for `key`, signed with SHA-256, asking for the URI SAN `spiffe_id` (none
// when empty) and nothing else: the control plane decides the names anyway.
Result<std::string> makeIdentityCsr(EVP_PKEY* key, std::string_view spiffe_id);

struct IdentityCertificate {
  int64_t not_before = 0;  // unix seconds
  int64_t not_after = 0;
  std::string uri_san;  // the first URI SAN ("spiffe://..."), "" if none
};
// Parses the leaf of `chain_pem` and checks that it certifies `key` (when non-null).
Result<IdentityCertificate> inspectIdentityCertificate(std::string_view chain_pem, EVP_PKEY* key);

// When to renew and warn, for a certificate valid [not_before, not_after] (unix seconds).
struct IdentityTimes {
  int64_t not_before = 0;
  int64_t not_after = 0;
  int64_t warn_before = 0;  // seconds before not_after; <= 0: a quarter of the lifetime

  int64_t lifetime() const { return not_after - not_before; }
  int64_t renewAt() const { return not_before + lifetime() / 2; }
  int64_t warnAt() const { return not_after - (warn_before > 0 ? warn_before : lifetime() / 4); }
};

class IdentityRenewal {
 public:
  struct Callbacks {
    std::function<void()> request;                // send a CSR now
    std::function<void(bool expiring)> expiring;  // entering (true) / leaving the warning period
    std::function<void()> expired;                // the current certificate just expired
  };
  struct Options {
    Duration answer_timeout = std::chrono::seconds(30);
    Duration retry_base = std::chrono::seconds(1);
    Duration retry_cap = std::chrono::minutes(5);
  };

  // `timers` must outlive this object; its TimeSource gives the wall clock.
  IdentityRenewal(TimerQueue& timers, Callbacks callbacks, Options options);
  IdentityRenewal(TimerQueue& timers, Callbacks callbacks)
      : IdentityRenewal(timers, std::move(callbacks), Options{}) {}

  // The stream to the control plane is up / down. Up: a due request goes out at once.
  void connected();
  void disconnected();
  // A certificate is held (new, or loaded at start): no request is outstanding any more, the
  // backoff starts over, the next request is at its renewAt.
  void certificateArrived(const IdentityTimes& times);
  // The answer to the outstanding request was an error: retry after the backoff.
  void requestFailed();

  bool haveCertificate() const { return have_; }
  // A request is wanted now (no certificate, or past renewAt) and not answered yet.
  bool due() const;
  bool inFlight() const { return in_flight_; }
  bool expiring() const { return expiring_; }
  const IdentityTimes& times() const { return times_; }

 private:
  int64_t nowUnix() const;
  Duration until(int64_t unix_time) const;
  void tryRequest();
  void scheduleRetry();
  void onRenewTimer();
  void onWarnTimer();

  TimerQueue& timers_;
  Callbacks cb_;
  Options options_;
  IdentityTimes times_;
  bool have_ = false;
  bool connected_ = false;
  bool in_flight_ = false;
  bool renew_due_ = false;   // renewAt passed with no new certificate yet
  bool retry_wait_ = false;  // backing off after a failure
  bool expiring_ = false;
  Duration backoff_{};
  Timer renew_timer_;
  Timer retry_timer_;
  Timer answer_timer_;
  Timer warn_timer_;
  Timer expiry_timer_;
};

}  // namespace weft::net::tls
