#pragma once
// Socket helpers: addresses, listening and connecting sockets. All sockets are non-blocking and
// close-on-exec. Errors come back as values naming the address and the OS reason.

#include <netinet/in.h>
#include <sys/socket.h>

#include <string>
#include <string_view>

#include "common/result.h"

namespace weft::net {

struct Address {
  sockaddr_storage storage{};
  socklen_t len = 0;
  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&storage); }
  int family() const { return storage.ss_family; }
  uint16_t port() const;
  std::string ip() const;
  std::string toString() const;  // "1.2.3.4:80" or "[::1]:80"
};

// Parses an IPv4 or IPv6 literal (no brackets) and a port.
Result<Address> parseAddress(std::string_view ip, uint16_t port);

// A listening socket (SO_REUSEADDR, backlog 4096). Port 0 picks a free port; read it back with
// localAddress().
Result<int> listenTcp(const Address& addr);
// Starts a non-blocking connect; the socket becomes writable when it completes (check with
// socketError()).
Result<int> connectTcp(const Address& addr);
Address localAddress(int fd);
Address peerAddress(int fd);
int socketError(int fd);
void setNoDelay(int fd);

}  // namespace weft::net
