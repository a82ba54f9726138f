#include "lab/ipv4.h"

namespace weft::lab {

Result<uint32_t> parseIpv4(std::string_view text) {
  auto bad = [&] {
    return makeError("\"" + std::string(text) + "\" is not an IPv4 address (A.B.C.D)");
  };
  uint32_t out = 0;
  size_t i = 0;
  for (int part = 0; part < 4; ++part) {
    if (part > 0) {
      if (i >= text.size() || text[i] != '.') return bad();
      ++i;
    }
    size_t start = i;
    uint32_t v = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9' && i - start < 3)
      v = v * 10 + static_cast<uint32_t>(text[i++] - '0');
    size_t digits = i - start;
    if (digits == 0 || v > 255 || (digits > 1 && text[start] == '0')) return bad();
    out = out << 8 | v;
  }
  if (i != text.size()) return bad();
  return out;
}

std::string formatIpv4(uint32_t a) {
  return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 255) + "." +
         std::to_string((a >> 8) & 255) + "." + std::to_string(a & 255);
}

std::string Ipv4Net::str() const { return formatIpv4(base) + "/" + std::to_string(len); }

Result<Ipv4Net> parseIpv4Net(std::string_view text) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos)
    return makeError("\"" + std::string(text) +
                     "\" is not a CIDR: it needs a prefix length, e.g. 198.18.0.0/16");
  auto addr = parseIpv4(text.substr(0, slash));
  if (!addr) return makeError("\"" + std::string(text) + "\" is not a CIDR (A.B.C.D/N)");
  std::string_view n = text.substr(slash + 1);
  int len = 0;
  if (n.empty() || n.size() > 2)
    return makeError("bad prefix length in \"" + std::string(text) + "\"");
  for (char c : n) {
    if (c < '0' || c > '9') return makeError("bad prefix length in \"" + std::string(text) + "\"");
    len = len * 10 + (c - '0');
  }
  if (len > 32) return makeError("prefix length over 32 in \"" + std::string(text) + "\"");
  Ipv4Net net{*addr, len};
  if ((*addr & net.mask()) != *addr) {
    Ipv4Net meant{*addr & net.mask(), len};
    return makeError("\"" + std::string(text) + "\" has host bits set (did you mean " +
                     meant.str() + "?)");
  }
  return net;
}

}  // namespace weft::lab
