#pragma once
// ServerContext and ClientContext: the immutable TLS configuration of one listener or one
// upstream cluster, each wrapping one OpenSSL SSL_CTX.
//
// Thread-safety: a context is immutable after create() and shared by all workers as
// std::shared_ptr<const ...>; newTransport() may be called from any thread concurrently
// (SSL_CTX is internally reference-counted and locked where OpenSSL mutates it: the server-side
// session cache). A transport keeps its context alive, so replacing a context (reload) never
// disturbs connections already made from it.
//
// Verification (docs/tls.md):
//   - Server, with `validation` set: the client must present a certificate (mutual TLS) that
//     chains to the trust bundle and, if `match_subject_alt_names` is non-empty, has a matching
//     SAN.
//   - Client: the server certificate must chain to the trust bundle (required) and match
//     `match_subject_alt_names`, or, when none are configured, the host name sent as SNI
//     (X509_VERIFY_PARAM_set1_host; an IP literal is checked against IP SANs instead). Origination
//     is never unverified.
//   - Revocation, both sides, only when `validation.crl_pem` holds CRLs: every certificate of the
//     peer's chain whose issuer has a CRL there is checked against it (X509_V_FLAG_CRL_CHECK |
//     X509_V_FLAG_CRL_CHECK_ALL); a revoked one fails verification (VerifyFailure::kUntrusted).
//     A CA of the bundle without a CRL (an external root above a weft subordinate CA) is not
//     checked: X509_V_ERR_UNABLE_TO_GET_CRL is accepted only for an issuer with no CRL loaded.
//     A CRL past its nextUpdate or before its thisUpdate (the control plane away, clock skew)
//     is still used: its entries are enforced, the time error is ignored, and the context
//     counts it (ContextCounters::crl_expired) and logs it once. Connections made before a CRL
//     change are not re-checked; a new CRL comes with a new context (a config push).
//
// Session resumption:
//   - Server: stateless session tickets (TLS 1.2 and 1.3) plus OpenSSL's internal server-side
//     session cache (TLS 1.2 session ids). All workers share the SSL_CTX, hence one ticket key;
//     a reload (create() with `previous`) carries the ticket key over so tickets stay valid. The
//     session id context is a hash of the client-validation settings, so a reload that changes
//     the trust bundle, the CRLs or SAN rules refuses old sessions (their clients were verified
//     under other rules) and forces a full handshake.
//   - Client: the last session per (context, server name, peer address:port) is kept in a cache
//     that is per worker thread (thread_local, no locks, at most 1024 entries, least recently used
//     evicted), and offered on the next connection made on that thread. A session whose
//     connection ended without TlsTransport::shutdown() (error, reset, unclean EOF) is not reused.

#include <openssl/types.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/stats.h"
#include "net/tls/san.h"
#include "net/transport.h"
#include "weft/v1/config.pb.h"

namespace weft::net::tls {

// Why a handshake failed, for metrics such as tls_verify_fail{reason="san_mismatch"}. The first
// four are failures of *our* verification of the peer; everything else (protocol errors, no
// shared version or cipher, the peer rejecting *our* certificate, resets) is kHandshake.
enum class VerifyFailure {
  kNone,
  kNoPeerCertificate,  // mutual TLS required and the client sent no certificate
  kUntrusted,          // the chain does not verify against the trust bundle
  kExpired,            // a certificate is outside its validity period (expired or not yet valid)
  kSanMismatch,        // no SAN matched the configured rules (or the host name)
  kHandshake,          // any other handshake failure
};

// "none", "no_peer_certificate", "untrusted", "expired", "san_mismatch", "handshake".
std::string_view verifyFailureName(VerifyFailure failure);

// Counters a context increments from its own verification, beyond what the handshake result
// tells (each optional: null counts nothing). Shared: the registry and the context both hold it.
struct ContextCounters {
  // A peer's verification used a CRL past its nextUpdate (or before its thisUpdate); its entries
  // were enforced and the handshake went on.
  std::shared_ptr<stats::Counter> crl_expired;
};

namespace detail {

// What both context kinds share with their transports. Not used directly by callers.
class ContextBase : public std::enable_shared_from_this<ContextBase> {
 public:
  virtual ~ContextBase();
  ContextBase(const ContextBase&) = delete;
  ContextBase& operator=(const ContextBase&) = delete;

  SSL_CTX* sslCtx() const { return ctx_; }
  bool isClient() const { return client_; }
  std::span<const SanRule> sanRules() const { return san_rules_; }
  // Prefix for error messages, e.g. "listener tls".
  const std::string& name() const { return name_; }
  // Unique in the process, never reused; keys the client session cache.
  uint64_t id() const { return id_; }
  // notAfter (unix seconds) of the certificate this context presents; 0 when it has none.
  int64_t certificateNotAfter() const { return certificate_not_after_; }
  // True when the validation carries CRLs (crl_pem): peers are checked for revocation.
  bool checksRevocation() const { return !crl_issuers_.empty(); }
  // True when a CRL issued by `issuer` was loaded.
  bool hasCrlFrom(const X509_NAME* issuer) const;
  // Called by the verification when it accepted an expired (or not yet valid) CRL `crl`: counts
  // it and logs the first one of this context. Thread-safe.
  void noteExpiredCrl(const X509_CRL* crl) const;

 protected:
  ContextBase(bool client, std::string_view name);
  // Common SSL_CTX setup: method, versions, modes, certificate (if any), trust bundle (if any).
  Status init(const v1::TlsCertificate* certificate, const v1::TlsValidation* validation,
              v1::TlsVersion min_version, v1::TlsVersion max_version);
  // Loads validation.crl_pem into the verify store and turns revocation checking on.
  Status loadCrls(const std::string& crl_pem);

  SSL_CTX* ctx_ = nullptr;  // owned
  std::vector<SanRule> san_rules_;
  std::string trust_bundle_pem_;  // for the server's session id context
  std::string crl_pem_;           // likewise
  // Issuers of the loaded CRLs (owned X509_NAME copies, freed by the destructor).
  std::vector<X509_NAME*> crl_issuers_;
  ContextCounters counters_;
  mutable std::atomic<bool> expired_crl_logged_{false};
  int64_t certificate_not_after_ = 0;
  std::string name_;
  bool client_;
  uint64_t id_;
};

}  // namespace detail

class ServerContext final : public detail::ContextBase {
 public:
  ~ServerContext() override;

  // Builds a context from `cfg` (the mode field is the caller's business: PERMISSIVE and STRICT
  // both use a ServerContext). `name` prefixes errors. `previous` (a reload) donates its ticket
  // key. Errors name the field, the file and the reason, e.g.
  // "listener tls: certificate_chain_file /x.pem: no such file".
  static Result<std::shared_ptr<const ServerContext>> create(
      const v1::ListenerTls& cfg, std::string_view name = "listener tls",
      const ServerContext* previous = nullptr, ContextCounters counters = {});

  // A server-side transport over the connected non-blocking `fd` (the caller keeps the fd).
  // Never null; if OpenSSL cannot allocate, handshake() reports kError.
  std::unique_ptr<Transport> newTransport(int fd) const;

  v1::ListenerTls::Mode mode() const { return mode_; }
  // Protocols in server preference order; the first one the client also offers is selected.
  // When the client offers none of them the handshake proceeds without ALPN.
  const std::vector<std::string>& alpn() const { return alpn_; }
  bool requiresClientCertificate() const { return require_client_cert_; }

 private:
  explicit ServerContext(std::string_view name) : ContextBase(false, name) {}
  static int selectAlpn(SSL* ssl, const unsigned char** out, unsigned char* outlen,
                        const unsigned char* in, unsigned int inlen, void* arg);

  v1::ListenerTls::Mode mode_ = v1::ListenerTls::STRICT;
  std::vector<std::string> alpn_;
  bool require_client_cert_ = false;
  // 16-byte key name + 32-byte HMAC key + 32-byte AES key (OpenSSL's ticket key layout).
  std::array<unsigned char, 80> ticket_keys_{};
};

class ClientContext final : public detail::ContextBase {
 public:
  // The trust bundle is required. `name` prefixes errors ("upstream tls", or the cluster name).
  static Result<std::shared_ptr<const ClientContext>> create(const v1::UpstreamTls& cfg,
                                                             std::string_view name = "upstream tls",
                                                             ContextCounters counters = {});

  // A client-side transport over the connected non-blocking `fd`. The server name is the
  // configured `sni` if set, else `sni_host` (the endpoint's host name); it is sent as SNI
  // (unless it is an IP literal) and, when no SAN rules are configured, is what the server
  // certificate must match. With no rules and no name, handshake() fails (kHandshake) rather than
  // connect unverified. Must be used on the calling thread only (session cache is per thread).
  std::unique_ptr<Transport> newTransport(int fd, std::string_view sni_host) const;

  const std::string& configuredSni() const { return sni_; }

 private:
  explicit ClientContext(std::string_view name) : ContextBase(true, name) {}
  std::string sni_;
};

// Files a context built from `cfg` reads (what the proxy watches for rotation).
std::vector<std::string> filesOf(const v1::ListenerTls& cfg);
std::vector<std::string> filesOf(const v1::UpstreamTls& cfg);

}  // namespace weft::net::tls
