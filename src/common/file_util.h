#pragma once
// Small file-system helpers shared by the binaries.

#include <string>
#include <string_view>

#include "common/result.h"

namespace weft {

// The whole file. Error: "cannot read PATH: <strerror>", Error::code the errno.
Result<std::string> readFile(const std::string& path);

// Writes `contents` to `path` with permission bits `mode` (never wider, whatever the umask):
// to a temporary file "<path>.tmp" in the same directory, fsynced, then renamed over `path`,
// and the directory fsynced, so readers see the old or the new file, never a partial one.
// Not safe against two writers of the same path at once (they share the temporary name).
Status writeFileAtomically(const std::string& path, std::string_view contents, unsigned mode);

}  // namespace weft
