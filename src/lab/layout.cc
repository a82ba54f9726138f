#include "lab/layout.h"

#include <cstdint>

namespace weft::lab {

std::string labTag(std::string_view lab) {
  uint32_t h = 2166136261u;
  for (char c : lab) {
    h ^= static_cast<unsigned char>(c);
    h *= 16777619u;
  }
  static const char kHex[] = "0123456789abcdef";
  std::string out = "wl";
  for (int shift = 28; shift >= 0; shift -= 4) out += kHex[(h >> shift) & 15];
  return out;
}

}  // namespace weft::lab
