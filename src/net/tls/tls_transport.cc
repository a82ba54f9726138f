#include "net/tls/tls_transport.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "net/tls/san.h"
#include "net/tls/ssl_util.h"

namespace weft::net::tls {
namespace detail {
namespace {

int connStateIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

}  // namespace

ConnState* connStateOf(const SSL* ssl) {
  if (ssl == nullptr) return nullptr;
  return static_cast<ConnState*>(SSL_get_ex_data(ssl, connStateIndex()));
}

void setConnState(SSL* ssl, ConnState* state) { SSL_set_ex_data(ssl, connStateIndex(), state); }

VerifyFailure classifyVerifyError(long result) {
  switch (result) {
    case X509_V_OK:
      return VerifyFailure::kNone;
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return VerifyFailure::kExpired;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
    case X509_V_ERR_EMAIL_MISMATCH:
    case X509_V_ERR_APPLICATION_VERIFICATION:
      return VerifyFailure::kSanMismatch;
    default:
      return VerifyFailure::kUntrusted;
  }
}

}  // namespace detail

namespace {

// The socket BIO: recv/send on a borrowed fd. send uses MSG_NOSIGNAL (no SIGPIPE on a reset
// peer); EAGAIN sets the retry flags OpenSSL turns into SSL_ERROR_WANT_READ/WRITE; errno is left
// as the syscall set it, for SSL_ERROR_SYSCALL.
struct SocketBioData {
  int fd;
  bool eof = false;
  bool last_short = false;  // the last recv returned less than asked: the socket was drained
};

SocketBioData* bioData(BIO* b) { return static_cast<SocketBioData*>(BIO_get_data(b)); }

int bioWrite(BIO* b, const char* data, size_t len, size_t* written) {
  BIO_clear_retry_flags(b);
  for (;;) {
    ssize_t n = ::send(bioData(b)->fd, data, len, MSG_NOSIGNAL);
    if (n >= 0) {
      *written = static_cast<size_t>(n);
      return 1;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_write(b);
    return 0;
  }
}

int bioRead(BIO* b, char* data, size_t len, size_t* read_bytes) {
  BIO_clear_retry_flags(b);
  SocketBioData* d = bioData(b);
  for (;;) {
    ssize_t n = ::recv(d->fd, data, len, 0);
    if (n > 0) {
      *read_bytes = static_cast<size_t>(n);
      d->last_short = static_cast<size_t>(n) < len;
      return 1;
    }
    d->last_short = false;
    if (n == 0) {
      d->eof = true;
      errno = 0;  // so that an EOF reads as SSL_ERROR_SYSCALL with errno 0, not a stale error
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_read(b);
    return 0;
  }
}

long bioCtrl(BIO* b, int cmd, long, void* ptr) {
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;  // unbuffered
    case BIO_CTRL_EOF:
      return bioData(b)->eof ? 1 : 0;
    case BIO_C_GET_FD:
      if (ptr != nullptr) *static_cast<int*>(ptr) = bioData(b)->fd;
      return bioData(b)->fd;
    default:
      return 0;
  }
}

int bioCreate(BIO* b) {
  BIO_set_data(b, nullptr);
  BIO_set_init(b, 0);
  return 1;
}

int bioDestroy(BIO* b) {
  delete bioData(b);
  BIO_set_data(b, nullptr);
  return 1;
}

const BIO_METHOD* socketBioMethod() {
  // Created once, thread-safely, and kept for the life of the process.
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "weft socket");
    if (m == nullptr) return m;
    BIO_meth_set_write_ex(m, bioWrite);
    BIO_meth_set_read_ex(m, bioRead);
    BIO_meth_set_ctrl(m, bioCtrl);
    BIO_meth_set_create(m, bioCreate);
    BIO_meth_set_destroy(m, bioDestroy);
    return m;
  }();
  return method;
}

IoResult ok(size_t bytes = 0) { return {IoStatus::kOk, bytes, {}}; }
IoResult statusOnly(IoStatus s) { return {s, 0, {}}; }

}  // namespace

bool TlsTransport::attachSocket(SSL* ssl, int fd) {
  const BIO_METHOD* method = socketBioMethod();
  if (method == nullptr) return false;
  BIO* bio = BIO_new(method);
  if (bio == nullptr) return false;
  BIO_set_data(bio, new SocketBioData{fd});
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl, bio, bio);  // one reference, shared by both directions
  return true;
}

TlsTransport::TlsTransport(int fd, std::shared_ptr<const detail::ContextBase> ctx, SSL* ssl,
                           Setup setup)
    : Transport(fd), ctx_(std::move(ctx)), ssl_(ssl), sni_sent_(setup.sni_sent) {
  state_.session_key = std::move(setup.session_key);
  state_.server_name = std::move(setup.server_name);
  peer_.secure = true;
  if (ssl_ == nullptr || !setup.init_error.empty()) {
    if (ssl_ != nullptr) SSL_free(ssl_);
    ssl_ = nullptr;
    failed_ = true;
    failure_ = VerifyFailure::kHandshake;
    error_ = ctx_->name() + ": " +
             (setup.init_error.empty() ? "cannot create SSL" : std::move(setup.init_error));
  } else {
    detail::setConnState(ssl_, &state_);
  }
}

TlsTransport::~TlsTransport() {
  if (ssl_ != nullptr) {
    detail::setConnState(ssl_, nullptr);
    SSL_free(ssl_);
  }
}

IoResult TlsTransport::fail(std::string message) {
  failed_ = true;
  error_ = std::move(message);
  ERR_clear_error();
  return {IoStatus::kError, 0, error_};
}

IoResult TlsTransport::uncleanEof() {
  // The session is dead (no close_notify can follow), but to the reader this is an EOF; later
  // reads repeat it and writes fail.
  ERR_clear_error();
  failed_ = true;
  unclean_eof_ = true;
  error_ = ctx_->name() + ": connection closed by peer";
  return statusOnly(IoStatus::kEof);
}

IoResult TlsTransport::handshake() {
  if (done_) return ok();
  if (failed_) return {IoStatus::kError, 0, error_};
  ERR_clear_error();
  errno = 0;
  int rc = SSL_do_handshake(ssl_);
  if (rc == 1) {
    done_ = true;
    fillPeerInfo();
    ERR_clear_error();
    return ok();
  }
  int saved_errno = errno;
  int err = SSL_get_error(ssl_, rc);
  if (err == SSL_ERROR_WANT_READ) return statusOnly(IoStatus::kWantRead);
  if (err == SSL_ERROR_WANT_WRITE) return statusOnly(IoStatus::kWantWrite);
  return handshakeError(err, saved_errno);
}

IoResult TlsTransport::handshakeError(int ssl_error, int saved_errno) {
  const std::vector<unsigned long> errors = takeSslErrors();
  VerifyFailure kind = state_.failure;
  if (kind == VerifyFailure::kNone) {
    long verify = SSL_get_verify_result(ssl_);
    if (verify != X509_V_OK) kind = detail::classifyVerifyError(verify);
  }
  if (kind == VerifyFailure::kNone &&
      hasSslReason(errors, SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)) {
    kind = VerifyFailure::kNoPeerCertificate;
  }
  if (kind == VerifyFailure::kNone) kind = VerifyFailure::kHandshake;
  failure_ = kind;

  std::string why;
  if (!state_.verify_detail.empty()) {
    why = "certificate verify failed: " + state_.verify_detail;
  } else if (kind == VerifyFailure::kNoPeerCertificate) {
    why = "client certificate required but none was presented";
  } else if (ssl_error == SSL_ERROR_SYSCALL && errors.empty()) {
    why = saved_errno == 0 ? "peer closed the connection during the handshake"
                           : std::string(std::strerror(saved_errno));
  } else if (hasSslReason(errors, SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
    why = "peer closed the connection during the handshake";
  } else {
    why = describeSslErrors(errors);
  }
  if (ctx_->isClient() && !state_.session_key.empty()) {
    detail::forgetClientSession(state_.session_key);
  }
  return fail(ctx_->name() + ": handshake failed (" + std::string(verifyFailureName(kind)) +
              "): " + why);
}

bool TlsTransport::drained() const {
  if (ssl_ == nullptr || SSL_has_pending(ssl_)) return false;
  BIO* rbio = SSL_get_rbio(ssl_);
  return rbio != nullptr && bioData(rbio) != nullptr && bioData(rbio)->last_short;
}

IoResult TlsTransport::read(char* buf, size_t len) {
  if (!done_) {
    IoResult h = handshake();
    if (h.status != IoStatus::kOk) return h;
  }
  if (unclean_eof_) return statusOnly(IoStatus::kEof);
  if (failed_) return {IoStatus::kError, 0, error_};
  if (len == 0) return ok();
  ERR_clear_error();
  errno = 0;
  size_t n = 0;
  int rc = SSL_read_ex(ssl_, buf, len, &n);
  if (rc == 1) return ok(n);
  int saved_errno = errno;
  switch (SSL_get_error(ssl_, rc)) {
    case SSL_ERROR_WANT_READ:
      ERR_clear_error();
      return statusOnly(IoStatus::kWantRead);
    case SSL_ERROR_WANT_WRITE:
      ERR_clear_error();
      return statusOnly(IoStatus::kWantWrite);
    case SSL_ERROR_ZERO_RETURN:  // close_notify: we may still write (half-close)
      ERR_clear_error();
      return statusOnly(IoStatus::kEof);
    case SSL_ERROR_SYSCALL:
      if (ERR_peek_error() == 0 && saved_errno == 0) {  // TCP FIN without close_notify
        return uncleanEof();
      }
      if (ERR_peek_error() == 0) {
        return fail(ctx_->name() + ": read: " + std::strerror(saved_errno));
      }
      return fail(ctx_->name() + ": read: " + drainSslErrors());
    default: {
      const std::vector<unsigned long> errors = takeSslErrors();
      if (hasSslReason(errors, SSL_R_UNEXPECTED_EOF_WHILE_READING)) {  // OpenSSL 3's unclean EOF
        return uncleanEof();
      }
      return fail(ctx_->name() + ": read: " + describeSslErrors(errors));
    }
  }
}

IoResult TlsTransport::write(const char* buf, size_t len) {
  if (!done_) {
    IoResult h = handshake();
    if (h.status != IoStatus::kOk) return h;
  }
  if (failed_) return {IoStatus::kError, 0, error_};
  if (len == 0) return ok();
  ERR_clear_error();
  errno = 0;
  size_t n = 0;
  int rc = SSL_write_ex(ssl_, buf, len, &n);
  if (rc == 1) return ok(n);
  int saved_errno = errno;
  switch (SSL_get_error(ssl_, rc)) {
    case SSL_ERROR_WANT_READ:
      ERR_clear_error();
      return statusOnly(IoStatus::kWantRead);
    case SSL_ERROR_WANT_WRITE:
      ERR_clear_error();
      return statusOnly(IoStatus::kWantWrite);
    case SSL_ERROR_ZERO_RETURN:
      return fail(ctx_->name() + ": write: peer closed the TLS session");
    case SSL_ERROR_SYSCALL:
      if (ERR_peek_error() == 0) {
        return fail(ctx_->name() + ": write: " +
                    (saved_errno == 0 ? std::string("connection closed")
                                      : std::string(std::strerror(saved_errno))));
      }
      return fail(ctx_->name() + ": write: " + drainSslErrors());
    default:
      return fail(ctx_->name() + ": write: " + drainSslErrors());
  }
}

void TlsTransport::shutdown() {
  if (shutdown_sent_) return;
  shutdown_sent_ = true;
  if (ssl_ != nullptr && done_ && !failed_) {
    // One call queues and tries to send close_notify; we do not wait for the peer's reply. If the
    // socket is full the alert is dropped: best effort, as the contract says.
    ERR_clear_error();
    (void)SSL_shutdown(ssl_);
    ERR_clear_error();
  }
  ::shutdown(fd_, SHUT_WR);
}

void TlsTransport::fillPeerInfo() {
  peer_.secure = true;
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl_, &alpn, &alpn_len);
  if (alpn != nullptr) peer_.alpn.assign(reinterpret_cast<const char*>(alpn), alpn_len);
  if (ctx_->isClient()) {
    if (sni_sent_) peer_.sni = state_.server_name;
  } else if (const char* sn = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name)) {
    peer_.sni = sn;
  }
  peer_.tls_version = SSL_get_version(ssl_);
  peer_.resumed = SSL_session_reused(ssl_) == 1;
  X509* cert = SSL_get0_peer_certificate(ssl_);
  peer_.peer_certificate = cert != nullptr;
  if (cert != nullptr && SSL_get_verify_result(ssl_) == X509_V_OK) {
    PeerSans sans = sansOf(cert);
    if (!sans.dns.empty()) peer_.peer_dns_san = sans.dns.front();
    if (!sans.uri.empty()) peer_.peer_uri_san = sans.uri.front();
  }
}

VerifyFailure verifyFailureOf(const Transport& transport) {
  const auto* tls = dynamic_cast<const TlsTransport*>(&transport);
  return tls == nullptr ? VerifyFailure::kNone : tls->verifyFailure();
}

}  // namespace weft::net::tls
