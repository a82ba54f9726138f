#pragma once
// Text helpers: error messages, flag values.

#include <string>
#include <string_view>
#include <vector>

namespace weft {

// `s` in double quotes for an error message, cut to `max_chars` bytes with "..." appended when
// longer (so a huge value does not make a huge message). No escaping.
std::string quoted(std::string_view s, size_t max_chars = 100);

// `s` without leading and trailing ASCII white space (space, \t, \n, \r, \f, \v).
std::string trimSpace(std::string_view s);

// The items of a comma-separated list ("a, b,,c"), each trimmed; empty items are dropped.
std::vector<std::string> splitList(std::string_view s);

}  // namespace weft
