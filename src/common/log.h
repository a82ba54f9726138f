#pragma once
// Process log (not the access log): one line per event to stderr, "LEVEL [component] message".
// Thread-safe: each line is formatted then written with a single write(2).

#include <string_view>

namespace weft::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void setLevel(Level level);
Level level();
bool parseLevel(std::string_view name, Level& out);

void write(Level level, std::string_view component, std::string_view message);

inline void debug(std::string_view c, std::string_view m) {
  if (level() <= Level::kDebug) write(Level::kDebug, c, m);
}
inline void info(std::string_view c, std::string_view m) { write(Level::kInfo, c, m); }
inline void warn(std::string_view c, std::string_view m) { write(Level::kWarn, c, m); }
inline void error(std::string_view c, std::string_view m) { write(Level::kError, c, m); }

}  // namespace weft::log

// Checks. WEFT_DCHECK: debug builds only. WEFT_CHECK: always, fatal (aborts with the message).
// The third level, log-plus-counter, is a normal `if` that logs and bumps a stat.
#define WEFT_CHECK(cond, msg)                                        \
  do {                                                               \
    if (!(cond)) ::weft::log::fatal(__FILE__, __LINE__, #cond, msg); \
  } while (0)
#ifdef NDEBUG
#define WEFT_DCHECK(cond, msg) \
  do {                         \
  } while (0)
#else
#define WEFT_DCHECK(cond, msg) WEFT_CHECK(cond, msg)
#endif

namespace weft::log {
[[noreturn]] void fatal(const char* file, int line, const char* cond, std::string_view msg);
}
