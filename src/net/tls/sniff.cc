#include "net/tls/sniff.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace weft::net::tls {
namespace {
constexpr unsigned char kHandshakeRecord = 0x16;
constexpr unsigned char kTlsMajor = 0x03;
constexpr unsigned char kMaxTlsMinor = 0x04;
}  // namespace

Sniff sniffClientHello(std::string_view b) {
  if (b.empty()) return Sniff::kNeedMore;
  if (static_cast<unsigned char>(b[0]) != kHandshakeRecord) return Sniff::kPlain;
  if (b.size() < 2) return Sniff::kNeedMore;
  if (static_cast<unsigned char>(b[1]) != kTlsMajor) return Sniff::kPlain;
  if (b.size() < 3) return Sniff::kNeedMore;
  if (static_cast<unsigned char>(b[2]) > kMaxTlsMinor) return Sniff::kPlain;
  return Sniff::kTls;
}

bool looksLikeTlsClientHello(std::string_view first_bytes) {
  return sniffClientHello(first_bytes) == Sniff::kTls;
}

Sniff peekClientHello(int fd, std::string* error) {
  char buf[kMinSniffBytes];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) {
      Sniff s = sniffClientHello(std::string_view(buf, static_cast<size_t>(n)));
      return s;
    }
    if (n == 0) return Sniff::kClosed;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Sniff::kNeedMore;
    if (error != nullptr) *error = std::strerror(errno);
    return Sniff::kError;
  }
}

}  // namespace weft::net::tls
