#pragma once
// RFC 3986 percent-decoding, strict: the one decoder for request paths and queries (the control
// plane's router) and for SigV4 canonicalization.

#include <string>
#include <string_view>

#include "common/result.h"

namespace weft {

// Decodes every "%XY" (two hex digits, either case). Fails on a '%' that is not followed by two
// hex digits; the error message names the byte offset. '+' stays '+' (RFC 3986, not HTML forms).
// Any decoded byte is allowed, NUL included: callers that cannot carry one check for it.
Result<std::string> percentDecode(std::string_view raw);

}  // namespace weft
