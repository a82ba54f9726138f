#include "common/text.h"

namespace weft {

std::string quoted(std::string_view s, size_t max_chars) {
  std::string out = "\"";
  out.append(s.substr(0, max_chars));
  if (s.size() > max_chars) out += "...";
  out += '"';
  return out;
}

std::string trimSpace(std::string_view s) {
  const char* ws = " \t\n\r\f\v";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return "";
  return std::string(s.substr(b, s.find_last_not_of(ws) - b + 1));
}

std::vector<std::string> splitList(std::string_view s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t c = s.find(',', pos);
    if (c == std::string_view::npos) c = s.size();
    std::string item = trimSpace(s.substr(pos, c - pos));
    if (!item.empty()) out.push_back(std::move(item));
    pos = c + 1;
  }
  return out;
}

}  // namespace weft
