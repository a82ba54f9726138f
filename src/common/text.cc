#include "common/text.h"

namespace weft {

std::string quoted(std::string_view s, size_t max_chars) {
  std::string out = "\"";
  out.append(s.substr(0, max_chars));
  if (s.size() > max_chars) out += "...";
  out += '"';
  return out;
}

}  // namespace weft
