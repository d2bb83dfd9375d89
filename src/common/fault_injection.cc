#include "common/fault_injection.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "common/phase_trace.h"
#include "common/signal_names.h"
#include "common/strings.h"

namespace cryo {

namespace {

// "a:INT,b:TERM" -> {("a", SIGINT), ("b", SIGTERM)}; unknown signal names are skipped.
std::vector<std::pair<std::string, int>> parse_signal_points(const char* value) {
  std::vector<std::pair<std::string, int>> points;
  for (const std::string& item : split(value ? value : "", ',')) {
    size_t colon = item.rfind(':');
    if (colon == std::string::npos) continue;
    if (int sig = signal_number(item.substr(colon + 1)))
      points.emplace_back(item.substr(0, colon), sig);
  }
  return points;
}

void announce(std::string_view what, std::string_view point) {
  std::string message =
      "cryo: fault injection: " + std::string(what) + " at " + std::string(point) + "\n";
  [[maybe_unused]] ssize_t ignored = ::write(STDERR_FILENO, message.data(), message.size());
}

}  // namespace

void fault_point(std::string_view point) {
  // The named points are also the phases of a command that CRYO_PHASE_TRACE follows.
  phase_mark(point);
  // Read once per process: the environment does not change under a running engine.
  static const std::string armed_kill = [] {
    const char* value = ::getenv("CRYO_FAULT_KILL_AT");
    return value ? "," + std::string(value) + "," : std::string();
  }();
  static const std::vector<std::pair<std::string, int>> armed_signals =
      parse_signal_points(::getenv("CRYO_FAULT_SIGNAL_AT"));
  for (const auto& [name, sig] : armed_signals)
    if (name == point) {
      announce(signal_name(sig), point);
      ::kill(::getpid(), sig);
    }
  if (armed_kill.empty()) return;
  if (armed_kill.find("," + std::string(point) + ",") == std::string::npos) return;
  announce("SIGKILL", point);
  ::kill(::getpid(), SIGKILL);
}

}  // namespace cryo
