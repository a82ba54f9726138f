#include "upstream/host_set.h"

#include <netinet/in.h>

#include <cstring>
#include <functional>
#include <tuple>

namespace weft::upstream {
namespace {

const sockaddr_in& v4(const net::Address& a) {
  return *reinterpret_cast<const sockaddr_in*>(&a.storage);
}
const sockaddr_in6& v6(const net::Address& a) {
  return *reinterpret_cast<const sockaddr_in6*>(&a.storage);
}

// IPv4 sorts before IPv6; anything else (an unset address) after both.
int familyRank(int family) {
  if (family == AF_INET) return 0;
  if (family == AF_INET6) return 1;
  return 2 + family;
}

// -1, 0, 1 like memcmp, over the meaningful fields only.
int compare(const net::Address& a, const net::Address& b) {
  if (a.family() != b.family()) return familyRank(a.family()) < familyRank(b.family()) ? -1 : 1;
  int c = 0;
  if (a.family() == AF_INET) {
    c = std::memcmp(&v4(a).sin_addr, &v4(b).sin_addr, sizeof(in_addr));
  } else if (a.family() == AF_INET6) {
    c = std::memcmp(&v6(a).sin6_addr, &v6(b).sin6_addr, sizeof(in6_addr));
    if (c == 0 && v6(a).sin6_scope_id != v6(b).sin6_scope_id)
      c = v6(a).sin6_scope_id < v6(b).sin6_scope_id ? -1 : 1;
  }
  if (c != 0) return c < 0 ? -1 : 1;
  uint16_t pa = a.port(), pb = b.port();
  return pa == pb ? 0 : (pa < pb ? -1 : 1);
}

}  // namespace

bool addressEqual(const net::Address& a, const net::Address& b) { return compare(a, b) == 0; }
bool addressLess(const net::Address& a, const net::Address& b) { return compare(a, b) < 0; }

size_t AddressHash::operator()(const net::Address& a) const {
  // FNV-1a over the same fields compare() looks at, so equal addresses hash equally.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  };
  int family = a.family();
  mix(&family, sizeof family);
  if (family == AF_INET) {
    mix(&v4(a).sin_addr, sizeof(in_addr));
  } else if (family == AF_INET6) {
    mix(&v6(a).sin6_addr, sizeof(in6_addr));
    mix(&v6(a).sin6_scope_id, sizeof(uint32_t));
  }
  uint16_t port = a.port();
  mix(&port, sizeof port);
  return static_cast<size_t>(h);
}

Host::Host(net::Address address, std::string hostname, bool healthy)
    : address_(address),
      address_string_(address.toString()),
      hostname_(std::move(hostname)),
      healthy_(healthy) {}

HostSet::HostSet(std::vector<Host> hosts) : hosts_(std::move(hosts)) {
  by_address_.reserve(hosts_.size());
  for (size_t i = 0; i < hosts_.size(); ++i) by_address_.emplace(hosts_[i].address(), i);
}

size_t HostSet::indexOf(const Host& host) const {
  // std::less gives a total order over pointers even into different arrays.
  std::less<const Host*> lt;
  const Host* begin = hosts_.data();
  const Host* end = begin + hosts_.size();
  if (lt(&host, begin) || !lt(&host, end)) return kNpos;
  return static_cast<size_t>(&host - begin);
}

size_t HostSet::find(const net::Address& address) const {
  auto it = by_address_.find(address);
  return it == by_address_.end() ? kNpos : it->second;
}

}  // namespace weft::upstream
