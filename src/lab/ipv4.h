#pragma once
// IPv4 addresses and prefixes as plain integers (host byte order), for the lab's address
// planning: parsing, formatting, containment and overlap. Pure functions, no sockets.

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace weft::lab {

// Parses a dotted-quad IPv4 address ("198.18.1.10"); nothing else is accepted (no shorthand
// such as "10.1", no leading zeros that could read as octal).
Result<uint32_t> parseIpv4(std::string_view text);
std::string formatIpv4(uint32_t address);

// An IPv4 prefix whose host bits are zero, "198.18.0.0/16".
struct Ipv4Net {
  uint32_t base = 0;
  int len = 0;  // 0..32

  uint32_t mask() const { return len == 0 ? 0 : ~uint32_t{0} << (32 - len); }
  // The last address of the range (the broadcast address for len < 31).
  uint32_t last() const { return base | ~mask(); }
  uint64_t size() const { return uint64_t{1} << (32 - len); }
  bool contains(uint32_t a) const { return (a & mask()) == base; }
  bool contains(const Ipv4Net& n) const { return n.len >= len && contains(n.base); }
  bool overlaps(const Ipv4Net& n) const { return contains(n.base) || n.contains(base); }
  std::string str() const;  // "198.18.0.0/16"
  bool operator==(const Ipv4Net&) const = default;
};

// Parses "A.B.C.D/N". Host bits set ("198.18.1.5/24") are refused with the prefix the text
// probably meant; a bare address is refused too (the lab always wants a length).
Result<Ipv4Net> parseIpv4Net(std::string_view text);

// 198.18.0.0/15: the only range the lab takes addresses from (RFC 2544's benchmarking range,
// never routed on the internet).
inline constexpr Ipv4Net kLabRange{0xC6120000u, 15};

}  // namespace weft::lab
