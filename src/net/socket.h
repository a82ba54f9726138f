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

// An address prefix, "10.0.0.0/16" or "fd00::/8" (a bare address is a /32 or /128).
struct Cidr {
  int family = 0;  // AF_INET or AF_INET6
  unsigned char bytes[16]{};
  int prefix_len = 0;
  // True when `a` has this family and its IP starts with this prefix (the port is ignored).
  bool contains(const Address& a) const;
};
Result<Cidr> parseCidr(std::string_view text);

// A listening socket (SO_REUSEADDR, backlog 4096). Port 0 picks a free port; read it back with
// localAddress().
Result<int> listenTcp(const Address& addr);
// Starts a non-blocking connect; the socket becomes writable when it completes (check with
// socketError()).
Result<int> connectTcp(const Address& addr);
Address localAddress(int fd);
Address peerAddress(int fd);
// Where a connection redirected by iptables (nat REDIRECT or DNAT) was going before the
// redirect (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST, from conntrack). For a connection that was not
// redirected the kernel answers the socket's own local address; callers compare with
// localAddress() to tell the two apart. Errors when conntrack knows nothing of the socket.
Result<Address> originalDestination(int fd);
int socketError(int fd);
void setNoDelay(int fd);

}  // namespace weft::net
