#include "common/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>

namespace cryo::log {

namespace {
std::atomic<Level> g_level{Level::kWarn};
std::atomic<int> g_file_fd{-1};
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
  return g_file_fd >= 0 ? Level::kDebug : g_level.load();
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
  if (level >= g_level) (void)!::write(STDERR_FILENO, line.data(), line.size());
  int file = g_file_fd;
  if (file >= 0) (void)!::write(file, line.data(), line.size());
}

FileSink::FileSink(const std::string& path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  // Without its file the operation still runs: the log is for diagnosis only.
  if (fd_ >= 0) g_file_fd = fd_;
}

FileSink::~FileSink() {
  if (fd_ < 0) return;
  g_file_fd = -1;
  ::close(fd_);
}

}  // namespace cryo::log
