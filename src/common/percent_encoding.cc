#include "common/percent_encoding.h"

#include "common/hex.h"

namespace weft {

Result<std::string> percentDecode(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    if (c != '%') {
      out.push_back(c);
      continue;
    }
    int hi = i + 2 < raw.size() ? hexDigitValue(raw[i + 1]) : -1;
    int lo = i + 2 < raw.size() ? hexDigitValue(raw[i + 2]) : -1;
    if (hi < 0 || lo < 0)
      return makeError("malformed percent-encoding at byte " + std::to_string(i));
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

}  // namespace weft
