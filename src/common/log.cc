#include "common/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>

namespace weft::log {
namespace {
std::atomic<Level> g_level{Level::kInfo};
const char* name(Level l) {
  switch (l) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
  }
  return "?";
}
}  // namespace

void setLevel(Level level) { g_level.store(level, std::memory_order_relaxed); }
Level level() { return g_level.load(std::memory_order_relaxed); }

bool parseLevel(std::string_view s, Level& out) {
  for (Level l : {Level::kDebug, Level::kInfo, Level::kWarn, Level::kError}) {
    if (s == name(l)) {
      out = l;
      return true;
    }
  }
  return false;
}

void write(Level l, std::string_view component, std::string_view message) {
  if (l < level()) return;
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t;
  gmtime_r(&ts.tv_sec, &t);
  char stamp[40];
  std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", t.tm_year + 1900,
                t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, ts.tv_nsec / 1000000);
  std::string line;
  line.reserve(64 + message.size());
  line.append(stamp).append(" ").append(name(l)).append(" [").append(component).append("] ");
  line.append(message).push_back('\n');
  ssize_t unused = ::write(2, line.data(), line.size());
  (void)unused;
}

void fatal(const char* file, int line, const char* cond, std::string_view msg) {
  std::string m = std::string(file) + ":" + std::to_string(line) + ": check failed: " + cond +
                  ": " + std::string(msg);
  write(Level::kError, "fatal", m);
  std::abort();
}

}  // namespace weft::log
