#include "common/signal_names.h"

#include <signal.h>
#include <string.h>

#include <cctype>
#include <cstdlib>

#include "common/strings.h"

namespace cryo {

int signal_number(std::string_view text) {
  std::string name(text);
  for (auto& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (!name.empty() && std::isdigit(static_cast<unsigned char>(name[0]))) {
    char* end = nullptr;
    long sig = std::strtol(name.c_str(), &end, 10);
    return *end == '\0' && sig > 0 && sig < NSIG ? static_cast<int>(sig) : 0;
  }
  if (starts_with(name, "SIG")) name = name.substr(3);
  for (int sig = 1; sig < NSIG; ++sig) {
    const char* abbrev = ::sigabbrev_np(sig);
    if (abbrev && name == abbrev) return sig;
  }
  return 0;
}

std::string signal_name(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

}  // namespace cryo
