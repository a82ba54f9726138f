#include "net/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace weft::net {

uint16_t Address::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
  if (family() == AF_INET6)
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
  return 0;
}

std::string Address::ip() const {
  char buf[INET6_ADDRSTRLEN] = "";
  if (family() == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr, buf, sizeof buf);
  else if (family() == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr, buf,
              sizeof buf);
  return buf;
}

std::string Address::toString() const {
  if (family() == AF_INET6) return "[" + ip() + "]:" + std::to_string(port());
  return ip() + ":" + std::to_string(port());
}

Result<Address> parseAddress(std::string_view ip, uint16_t port) {
  Address a;
  std::string s(ip);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
  if (inet_pton(AF_INET, s.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    a.len = sizeof(sockaddr_in);
    return a;
  }
  if (inet_pton(AF_INET6, s.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    a.len = sizeof(sockaddr_in6);
    return a;
  }
  return makeError("\"" + s + "\" is not an IPv4 or IPv6 address");
}

Result<int> listenTcp(const Address& addr) {
  int fd = ::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return makeError(std::string("socket: ") + std::strerror(errno));
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, addr.sa(), addr.len) != 0) {
    int e = errno;
    ::close(fd);
    return makeError("cannot listen on " + addr.toString() + ": " + std::strerror(e) +
                     (e == EADDRINUSE ? " (another process has this port; pick another)" : ""));
  }
  if (::listen(fd, 4096) != 0) {
    int e = errno;
    ::close(fd);
    return makeError("listen " + addr.toString() + ": " + std::strerror(e));
  }
  return fd;
}

Result<int> connectTcp(const Address& addr) {
  int fd = ::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return makeError(std::string("socket: ") + std::strerror(errno));
  setNoDelay(fd);
  if (::connect(fd, addr.sa(), addr.len) != 0 && errno != EINPROGRESS) {
    int e = errno;
    ::close(fd);
    return makeError("connect " + addr.toString() + ": " + std::strerror(e));
  }
  return fd;
}

Address localAddress(int fd) {
  Address a;
  a.len = sizeof a.storage;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a.storage), &a.len);
  return a;
}

Address peerAddress(int fd) {
  Address a;
  a.len = sizeof a.storage;
  ::getpeername(fd, reinterpret_cast<sockaddr*>(&a.storage), &a.len);
  return a;
}

Result<Cidr> parseCidr(std::string_view text) {
  std::string_view ip = text;
  int len = -1;
  if (size_t slash = text.find('/'); slash != std::string_view::npos) {
    ip = text.substr(0, slash);
    std::string_view n = text.substr(slash + 1);
    if (n.empty() || n.size() > 3)
      return makeError("bad prefix length in \"" + std::string(text) + "\"");
    len = 0;
    for (char c : n) {
      if (c < '0' || c > '9')
        return makeError("bad prefix length in \"" + std::string(text) + "\"");
      len = len * 10 + (c - '0');
    }
  }
  Cidr c;
  std::string ips(ip);
  if (::inet_pton(AF_INET, ips.c_str(), c.bytes) == 1) {
    c.family = AF_INET;
    if (len < 0) len = 32;
    if (len > 32) return makeError("prefix length over 32 in \"" + std::string(text) + "\"");
  } else if (::inet_pton(AF_INET6, ips.c_str(), c.bytes) == 1) {
    c.family = AF_INET6;
    if (len < 0) len = 128;
    if (len > 128) return makeError("prefix length over 128 in \"" + std::string(text) + "\"");
  } else {
    return makeError("\"" + std::string(text) + "\" is not an IP prefix");
  }
  c.prefix_len = len;
  return c;
}

bool Cidr::contains(const Address& a) const {
  if (a.family() != family) return false;
  const unsigned char* ip =
      family == AF_INET ? reinterpret_cast<const unsigned char*>(
                              &reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr)
                        : reinterpret_cast<const unsigned char*>(
                              &reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr);
  int full = prefix_len / 8, rest = prefix_len % 8;
  if (std::memcmp(ip, bytes, static_cast<size_t>(full)) != 0) return false;
  if (rest == 0) return true;
  unsigned char mask = static_cast<unsigned char>(0xff << (8 - rest));
  return (ip[full] & mask) == (bytes[full] & mask);
}

Result<Address> originalDestination(int fd) {
  Address local = localAddress(fd);
  Address a;
  a.len = sizeof a.storage;
  int rc = -1;
  if (local.family() == AF_INET) {
    a.len = sizeof(sockaddr_in);
    rc = ::getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &a.storage, &a.len);
  } else if (local.family() == AF_INET6) {
    a.len = sizeof(sockaddr_in6);
    rc = ::getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &a.storage, &a.len);
  } else {
    return makeError("original destination: not an IP socket");
  }
  if (rc != 0) {
    return makeError(std::string("original destination: ") + std::strerror(errno) +
                     " (was the connection redirected by iptables REDIRECT/DNAT?)");
  }
  return a;
}

int socketError(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  return err;
}

void setNoDelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace weft::net
