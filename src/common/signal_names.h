// Signals by name and names by signal, spelled as kill(1) and Podman take them.
#pragma once

#include <string>
#include <string_view>

namespace cryo {

// "TERM", "SIGTERM", "term" or "15" -> 15 (SIGTERM); 0 when the text names no signal.
int signal_number(std::string_view text);

// 15 -> "SIGTERM"; "signal N" for a number without a name.
std::string signal_name(int sig);

}  // namespace cryo
