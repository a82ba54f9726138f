#pragma once
// Test helpers: hand-built DNS queries and the decoding of answers.

#include <string>
#include <string_view>

#include "control/registry/dns_message.h"

namespace weft::control::registry::testing {

inline std::string wireName(std::string_view name) {
  std::string out;
  size_t pos = 0;
  while (pos < name.size()) {
    size_t dot = name.find('.', pos);
    if (dot == std::string_view::npos) dot = name.size();
    out.push_back(static_cast<char>(dot - pos));
    out.append(name.substr(pos, dot - pos));
    pos = dot + 1;
  }
  out.push_back('\0');
  return out;
}

inline std::string u16(uint16_t v) {
  return {static_cast<char>(v >> 8), static_cast<char>(v & 0xFF)};
}

// A query for (name, type), id 0x4242, RD set; `edns_size` > 0 adds an OPT record.
inline std::string query(std::string_view name, uint16_t type, uint16_t edns_size = 0) {
  std::string m =
      u16(0x4242) + u16(dns::kFlagRd) + u16(1) + u16(0) + u16(0) + u16(edns_size ? 1 : 0);
  m += wireName(name) + u16(type) + u16(dns::kClassIn);
  if (edns_size)
    m += std::string(1, '\0') + u16(dns::kTypeOpt) + u16(edns_size) + u16(0) + u16(0) + u16(0);
  return m;
}

}  // namespace weft::control::registry::testing
