#pragma once
// Counting a failed TLS handshake into a listener's or cluster's ssl.* counters (docs/metrics.md),
// shared by the HTTP/1, HTTP/2 and TCP sessions.

#include "common/stats.h"
#include "net/tls/tls_transport.h"
#include "net/transport.h"

namespace weft::proxy {

// Counts a failed handshake on `t` in `error` and, by the transport's verification failure, in
// one of `no_cert` (no client certificate where one is required), `verify_error` (untrusted,
// revoked or expired certificate) or `san` (no SAN matched). A cluster passes its verify_error
// counter as `no_cert` (an upstream without a certificate is a verification error like any other).
inline void countTlsFailure(const net::Transport& t, stats::Counter& error, stats::Counter& no_cert,
                            stats::Counter& verify_error, stats::Counter& san) {
  error.inc();
  switch (net::tls::verifyFailureOf(t)) {
    case net::tls::VerifyFailure::kNoPeerCertificate:
      no_cert.inc();
      break;
    case net::tls::VerifyFailure::kSanMismatch:
      san.inc();
      break;
    case net::tls::VerifyFailure::kUntrusted:
    case net::tls::VerifyFailure::kExpired:
      verify_error.inc();
      break;
    default:
      break;
  }
}

}  // namespace weft::proxy
