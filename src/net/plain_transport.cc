#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "net/transport.h"

namespace weft::net {
namespace {

class PlainTransport final : public Transport {
 public:
  explicit PlainTransport(int fd) : Transport(fd) {}
  IoResult handshake() override { return {}; }
  IoResult read(char* buf, size_t len) override {
    for (;;) {
      ssize_t n = ::recv(fd_, buf, len, 0);
      if (n > 0) return {IoStatus::kOk, static_cast<size_t>(n), {}};
      if (n == 0) return {IoStatus::kEof, 0, {}};
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return {IoStatus::kWantRead, 0, {}};
      return {IoStatus::kError, 0, std::strerror(errno)};
    }
  }
  IoResult write(const char* buf, size_t len) override {
    for (;;) {
      ssize_t n = ::send(fd_, buf, len, MSG_NOSIGNAL);
      if (n >= 0) return {IoStatus::kOk, static_cast<size_t>(n), {}};
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return {IoStatus::kWantWrite, 0, {}};
      return {IoStatus::kError, 0, std::strerror(errno)};
    }
  }
  void shutdown() override { ::shutdown(fd_, SHUT_WR); }
  const PeerInfo& peer() const override { return peer_; }

 private:
  PeerInfo peer_;
};

}  // namespace

std::unique_ptr<Transport> makePlainTransport(int fd) {
  return std::make_unique<PlainTransport>(fd);
}

}  // namespace weft::net
