#pragma once
// HTTP status codes: the one table of reason phrases.

#include <string_view>

namespace weft::http {

// The RFC 9110 reason phrase of a status code ("" for codes it does not name).
std::string_view reasonPhrase(int status);

}  // namespace weft::http
