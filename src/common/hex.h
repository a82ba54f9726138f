#pragma once
// Hexadecimal encoding of bytes (lower-case), and its strict inverse.

#include <optional>
#include <string>
#include <string_view>

namespace weft {

// Two lower-case hex digits per byte.
std::string hexEncode(std::string_view bytes);
// The bytes of an even-length string of hex digits (either case); nullopt on anything else.
std::optional<std::string> hexDecode(std::string_view hex);
// The value of one hex digit (either case), or -1.
int hexDigitValue(char c);

}  // namespace weft
