#pragma once
// Text helpers for error messages.

#include <string>
#include <string_view>

namespace weft {

// `s` in double quotes for an error message, cut to `max_chars` bytes with "..." appended when
// longer (so a huge value does not make a huge message). No escaping.
std::string quoted(std::string_view s, size_t max_chars = 100);

}  // namespace weft
