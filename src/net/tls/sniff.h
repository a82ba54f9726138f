#pragma once
// PERMISSIVE listeners: tell a TLS ClientHello from plaintext by the first bytes of a connection.
//
// A TLS connection starts with a TLS record header: content type 0x16 (handshake), then the
// record-layer version, whose major byte is 3 (0x0301 from most clients, 0x0300..0x0304 seen in
// practice). kMinSniffBytes = 3 bytes decide; nothing plaintext we serve (HTTP/1 starts with a
// method token, HTTP/2 with "PRI ") can begin with 0x16, so fewer bytes than that are only
// "need more" when they are consistent with TLS so far.
//
// How the proxy uses it (edge-triggered epoll):
//   1. On EPOLLIN of a freshly accepted socket call peekClientHello(fd). It reads with MSG_PEEK,
//      so nothing is consumed and the chosen transport later sees every byte.
//   2. kTls: create the TLS transport and call handshake() right away (the bytes are already
//      queued, no new edge will come for them). kPlain: use the plaintext transport and read.
//   3. kNeedMore: wait for the next EPOLLIN (more bytes arriving raise a new edge). Bound the wait
//      with the listener's handshake/idle timer. kClosed: the peer closed before sending 3 bytes.
//      kError: close the socket.

#include <cstddef>
#include <string>
#include <string_view>

namespace weft::net::tls {

inline constexpr size_t kMinSniffBytes = 3;

enum class Sniff { kTls, kPlain, kNeedMore, kClosed, kError };

// Pure: classifies the first bytes seen so far.
Sniff sniffClientHello(std::string_view first_bytes);

// True when `first_bytes` holds at least kMinSniffBytes and they start a TLS handshake record.
bool looksLikeTlsClientHello(std::string_view first_bytes);

// recv(MSG_PEEK | MSG_DONTWAIT) on a connected socket, then sniffClientHello. Never consumes
// bytes and never blocks. On kError, `error` (if given) receives strerror(errno).
Sniff peekClientHello(int fd, std::string* error = nullptr);

}  // namespace weft::net::tls
