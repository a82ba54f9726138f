#pragma once
// TlsTransport: the Transport contract (net/transport.h) over OpenSSL, server or client side.
// Created by ServerContext::newTransport / ClientContext::newTransport.
//
// I/O goes straight to the socket through a small custom BIO (recv, and send with MSG_NOSIGNAL so
// a reset peer never raises SIGPIPE) rather than through memory BIOs: no extra copy per byte and
// OpenSSL sees EAGAIN directly, which maps one-to-one onto kWantRead/kWantWrite. Memory BIOs would
// only pay off if we had to interpose on the bytes (we do not).
//
// Contract details beyond transport.h:
//   - read() and write() drive the handshake first if it has not finished, so PeerInfo is always
//     filled before the first application byte.
//   - Edge-triggered readiness: keep calling read() until it returns something other than kOk;
//     OpenSSL may hold decrypted bytes that no new edge would announce.
//   - After write() returns kWantWrite, the next write() must pass the same bytes again, at the
//     same or a longer length (the buffer may move: SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER). An
//     output buffer that only grows at its tail satisfies this.
//   - kEof: close_notify received, or the peer closed TCP without one ("unclean EOF"; HTTP
//     framing detects truncation). After an unclean EOF or any kError no close_notify is sent.
//   - Every call leaves this thread's OpenSSL error queue empty.
//   - Not thread-safe: one connection, one thread.

#include <openssl/types.h>

#include <memory>
#include <string>

#include "net/tls/tls_context.h"
#include "net/transport.h"

namespace weft::net::tls {

namespace detail {

// Per-connection state written by the SSL callbacks (verify, new session), found through SSL
// ex_data. Lives inside the TlsTransport.
struct ConnState {
  VerifyFailure failure = VerifyFailure::kNone;
  std::string verify_detail;  // what our verification rejected, for the error message
  std::string session_key;    // client only: key in the per-thread session cache
  std::string server_name;    // client only: the name the server certificate is checked against
};

ConnState* connStateOf(const SSL* ssl);

// Maps an X509_V_ERR_* code to a failure kind (X509_V_OK -> kNone).
VerifyFailure classifyVerifyError(long x509_error);

// Per-thread client session cache (defined in tls_context.cc).
void forgetClientSession(const std::string& key);

}  // namespace detail

class TlsTransport final : public Transport {
 public:
  // Per-connection setup decided by the context.
  struct Setup {
    std::string session_key;  // client: key in the per-thread session cache
    std::string server_name;  // client: name the server is verified against
    bool sni_sent = false;    // client: server_name went out as SNI (not for IP literals)
    std::string init_error;   // non-empty: setup failed, handshake() reports this
  };

  // Takes ownership of `ssl` (already bound to `fd`, role and per-connection options set).
  // `ssl` null means setup failed (setup.init_error says why).
  TlsTransport(int fd, std::shared_ptr<const detail::ContextBase> ctx, SSL* ssl, Setup setup);
  ~TlsTransport() override;
  bool drained() const override;
  TlsTransport(const TlsTransport&) = delete;
  TlsTransport& operator=(const TlsTransport&) = delete;

  IoResult handshake() override;
  IoResult read(char* buf, size_t len) override;
  IoResult write(const char* buf, size_t len) override;
  void shutdown() override;
  const PeerInfo& peer() const override { return peer_; }

  // Why the handshake failed (kNone while it has not failed). PeerInfo::sni on the client side
  // is the SNI sent (empty when the server name is an IP literal).
  VerifyFailure verifyFailure() const { return failure_; }
  bool handshakeDone() const { return done_; }

  // Binds `ssl` to `fd` through the module's socket BIO; false if OpenSSL cannot allocate.
  static bool attachSocket(SSL* ssl, int fd);

 private:
  IoResult fail(std::string message);
  IoResult handshakeError(int ssl_error, int saved_errno);
  IoResult uncleanEof();
  void fillPeerInfo();

  std::shared_ptr<const detail::ContextBase> ctx_;  // declared first: outlives ssl_
  SSL* ssl_;                                        // owned
  detail::ConnState state_;
  bool sni_sent_ = false;
  std::string error_;  // set once failed; repeated by every later call
  PeerInfo peer_;
  VerifyFailure failure_ = VerifyFailure::kNone;
  bool done_ = false;
  bool failed_ = false;         // fatal error: no more I/O on ssl_, no close_notify
  bool shutdown_sent_ = false;  // shutdown() already ran
  bool unclean_eof_ = false;    // the peer closed TCP without close_notify
};

// The failure kind of a TLS transport's handshake; kNone for plaintext or successful transports.
VerifyFailure verifyFailureOf(const Transport& transport);

}  // namespace weft::net::tls
