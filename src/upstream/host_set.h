#pragma once
// Host and HostSet: the endpoints of one cluster as immutable, shared data.
//
// A HostSet is built once (on the main thread, from config or from a DNS answer), published to
// every worker as `std::shared_ptr<const HostSet>`, and never changed afterwards: a change (DNS
// answer, health) is a new HostSet. Everything a worker mutates per host (active requests,
// exclusion, the round-robin cursor) lives in that worker's LoadBalancer, indexed by the host's
// position in the set. Because nothing in here is mutable, HostSet is safe to read from any
// number of threads at once.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "net/socket.h"

namespace weft::upstream {

// Value comparison of IPv4/IPv6 socket addresses (family, IP bytes, port; IPv6 scope id too).
// Only the meaningful bytes are compared, never sockaddr_storage padding.
bool addressEqual(const net::Address& a, const net::Address& b);
// A strict weak order over addresses: IPv4 before IPv6, then IP bytes, then port.
bool addressLess(const net::Address& a, const net::Address& b);
struct AddressHash {
  size_t operator()(const net::Address& a) const;
};
struct AddressEq {
  bool operator()(const net::Address& a, const net::Address& b) const { return addressEqual(a, b); }
};

// One upstream endpoint. Immutable once constructed.
class Host {
 public:
  // `hostname`: the DNS name this address was resolved from (empty for a literal endpoint).
  // `healthy`: placeholder for the active health checker (part 2), which publishes a new
  // HostSet when a host's health changes; until it exists every host is healthy.
  explicit Host(net::Address address, std::string hostname = {}, bool healthy = true);

  const net::Address& address() const { return address_; }
  // "1.2.3.4:80" or "[::1]:80"; formatted once here so logs and stats never format per request.
  const std::string& addressString() const { return address_string_; }
  const std::string& hostname() const { return hostname_; }
  bool healthy() const { return healthy_; }

 private:
  net::Address address_;
  std::string address_string_;
  std::string hostname_;
  bool healthy_;
};

class HostSet {
 public:
  static constexpr size_t kNpos = static_cast<size_t>(-1);

  // Keeps the order given (LoadBalancer state is indexed by it). Duplicate addresses are allowed
  // but find() returns the first.
  explicit HostSet(std::vector<Host> hosts);
  HostSet(const HostSet&) = delete;
  HostSet& operator=(const HostSet&) = delete;

  const std::vector<Host>& hosts() const { return hosts_; }
  size_t size() const { return hosts_.size(); }
  bool empty() const { return hosts_.empty(); }
  const Host& operator[](size_t i) const { return hosts_[i]; }

  // Position of `host` if it is an element of this very set (pointer identity), else kNpos. O(1).
  size_t indexOf(const Host& host) const;
  // Position of the first host with this address, else kNpos. O(1) average.
  size_t find(const net::Address& address) const;

 private:
  std::vector<Host> hosts_;
  std::unordered_map<net::Address, size_t, AddressHash, AddressEq> by_address_;
};

using HostSetPtr = std::shared_ptr<const HostSet>;

}  // namespace weft::upstream
