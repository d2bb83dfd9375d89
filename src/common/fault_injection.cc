#include "common/fault_injection.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "common/phase_trace.h"

namespace cryo {

void fault_point(std::string_view point) {
  // The named points are also the phases of a command that CRYO_PHASE_TRACE follows.
  phase_mark(point);
  // Read once per process: the environment does not change under a running engine.
  static const std::string armed = [] {
    const char* value = ::getenv("CRYO_FAULT_KILL_AT");
    return value ? "," + std::string(value) + "," : std::string();
  }();
  if (armed.empty()) return;
  if (armed.find("," + std::string(point) + ",") == std::string::npos) return;
  std::string message = "cryo: fault injection: SIGKILL at " + std::string(point) + "\n";
  [[maybe_unused]] ssize_t ignored = ::write(STDERR_FILENO, message.data(), message.size());
  ::kill(::getpid(), SIGKILL);
}

}  // namespace cryo
