#include "common/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>

namespace cryo::log {

namespace {
std::atomic<Level> g_level{Level::kWarn};
const char* name_of(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warning";
    case Level::kError:
      return "error";
  }
  return "?";
}
}  // namespace

void set_level(Level level) {
  g_level = level;
}
Level level() {
  return g_level;
}

bool parse_level(const std::string& name, Level* out) {
  if (name == "debug" || name == "trace")
    *out = Level::kDebug;
  else if (name == "info")
    *out = Level::kInfo;
  else if (name == "warn" || name == "warning")
    *out = Level::kWarn;
  else if (name == "error" || name == "fatal" || name == "panic")
    *out = Level::kError;
  else
    return false;
  return true;
}

void write(Level level, const std::string& message) {
  std::string line = std::string("cryo[") + std::to_string(::getpid()) + "] " + name_of(level) +
                     ": " + message + "\n";
  // One write() so that lines of concurrent processes do not interleave.
  (void)!::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace cryo::log
