#pragma once
// A cheap pre-scan of untrusted JSON text, run before a full parser sees it: full parsers
// (protobuf's JSON reader, recursive-descent parsers) spend time or stack super-linear in the
// nesting depth, so every API that parses a request body refuses deep nesting here first.

#include <cstddef>
#include <string_view>

#include "common/result.h"

namespace weft {

// The nesting limit every JSON intake of the control plane applies.
inline constexpr size_t kMaxJsonDepth = 64;

// Fails when some '[' or '{' outside string literals is nested deeper than `max_depth` (the
// outermost object is depth 1). Linear, no allocation; it does not validate the JSON otherwise
// (unbalanced or malformed text passes and is left to the parser).
Status checkJsonDepth(std::string_view text, size_t max_depth = kMaxJsonDepth);

}  // namespace weft
