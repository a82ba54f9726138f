#pragma once
// JSON output helpers shared by the admin pages, metrics, the config dump and the access log.

#include <string>
#include <string_view>

namespace weft {

// Appends the contents of a JSON string literal for `s` (no quotes). Valid UTF-8 passes through;
// control characters and DEL are escaped; a byte that is not part of a valid UTF-8 sequence is
// written as \u00XX (read as Latin-1), so the output is always valid JSON whatever the input.
void appendJsonEscaped(std::string& out, std::string_view s);

// Appends `s` as a JSON string literal, quotes included.
void appendJsonString(std::string& out, std::string_view s);

inline std::string jsonString(std::string_view s) {
  std::string out;
  appendJsonString(out, s);
  return out;
}

}  // namespace weft
