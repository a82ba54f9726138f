#pragma once
// Transport: byte I/O over one connected, non-blocking socket, plaintext or TLS. The owner
// registers the fd with its EventLoop (EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET) and, on any event,
// retries whatever last returned kWantRead/kWantWrite. A Transport never blocks and never throws.
// Owned by exactly one connection, used from one thread.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace weft::net {

enum class IoStatus {
  kOk,         // `bytes` were transferred (for handshake/shutdown: finished)
  kWantRead,   // retry after the fd becomes readable
  kWantWrite,  // retry after the fd becomes writable
  kEof,        // the peer closed cleanly (read only)
  kError,      // fatal for this connection; `error` says why
};

struct IoResult {
  IoStatus status = IoStatus::kOk;
  size_t bytes = 0;
  std::string error;  // set with kError only
};

// What a connection knows about its peer after the handshake (for logs, metrics and routing).
struct PeerInfo {
  bool secure = false;
  std::string alpn;          // negotiated protocol, empty if none
  std::string sni;           // server name the client asked for (server side)
  std::string peer_uri_san;  // first URI SAN of a verified peer certificate (e.g. SPIFFE id)
  std::string peer_dns_san;  // first DNS SAN of a verified peer certificate
  std::string tls_version;   // "TLSv1.3"
  bool resumed = false;
  // The peer presented a certificate (verified or not; for a resumed session, the one it
  // presented then). Server side: false is Envoy's ssl.no_certificate.
  bool peer_certificate = false;
};

class Transport {
 public:
  virtual ~Transport() = default;
  int fd() const { return fd_; }
  // Drives the handshake; kOk once complete (immediately for plaintext).
  virtual IoResult handshake() = 0;
  // Reads up to `len` bytes. kOk with bytes > 0, or kWantRead/kWantWrite/kEof/kError.
  virtual IoResult read(char* buf, size_t len) = 0;
  // Writes up to `len` bytes; may write fewer (kOk with bytes < len).
  virtual IoResult write(const char* buf, size_t len) = 0;
  // Best-effort orderly shutdown (TLS close_notify, then FIN). Does not close the fd.
  virtual void shutdown() = 0;
  virtual const PeerInfo& peer() const = 0;
  // Asked after a read() that returned fewer bytes than requested: true if nothing more can be
  // read until the fd signals readiness again (the caller then skips the read that would only
  // say kWantRead). A plain socket is drained after a short read; TLS knows from its buffers.
  virtual bool drained() const { return true; }

 protected:
  explicit Transport(int fd) : fd_(fd) {}
  int fd_;
};

// Plaintext transport over fd (the caller keeps ownership of the fd).
std::unique_ptr<Transport> makePlainTransport(int fd);

}  // namespace weft::net
