#pragma once
// Minimal JSON output helpers shared by the admin pages, metrics and the config dump.

#include <string>
#include <string_view>

namespace weft {

// Appends `s` as a JSON string literal, quotes included. Control characters are escaped; bytes
// >= 0x80 are copied as they are (callers pass UTF-8).
void appendJsonString(std::string& out, std::string_view s);

inline std::string jsonString(std::string_view s) {
  std::string out;
  appendJsonString(out, s);
  return out;
}

}  // namespace weft
