// Leveled logging to stderr. `--log-level` of the CLI sets the threshold.
#pragma once

#include <sstream>
#include <string>

namespace cryo::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void set_level(Level level);
// The lowest level any sink takes: the stderr threshold, or debug while a FileSink is open.
Level level();
bool parse_level(const std::string& name, Level* out);
void write(Level level, const std::string& message);

// While alive, every log line of this process, whatever the stderr threshold, is also appended to
// `path` (an operation's own debug log, e.g. the dump.log of a checkpoint). One at a time.
class FileSink {
 public:
  explicit FileSink(const std::string& path);
  ~FileSink();
  FileSink(const FileSink&) = delete;
  FileSink& operator=(const FileSink&) = delete;

 private:
  int fd_ = -1;
};

class Line {
 public:
  explicit Line(Level level) : level_(level) {}
  ~Line() { write(level_, stream_.str()); }
  template <typename T>
  Line& operator<<(const T& value) {
    stream_ << value;
    return *this;
  }

 private:
  Level level_;
  std::ostringstream stream_;
};

}  // namespace cryo::log

#define CRYO_LOG(lvl)                                   \
  if (::cryo::log::Level::lvl < ::cryo::log::level()) { \
  } else                                                \
    ::cryo::log::Line(::cryo::log::Level::lvl)
#define LOG_DEBUG CRYO_LOG(kDebug)
#define LOG_INFO CRYO_LOG(kInfo)
#define LOG_WARN CRYO_LOG(kWarn)
#define LOG_ERROR CRYO_LOG(kError)
