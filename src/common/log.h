// Leveled logging to stderr. `--log-level` of the CLI sets the threshold.
#pragma once

#include <sstream>
#include <string>

namespace cryo::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void set_level(Level level);
Level level();
bool parse_level(const std::string& name, Level* out);
void write(Level level, const std::string& message);

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
