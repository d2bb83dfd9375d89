// Where the time of a command goes, across the processes it starts (CLI, monitor, restore
// helper): CRYO_PHASE_TRACE=path in the environment makes each phase_mark append one line
// "<realtime µs> <pid> <phase>" to that file (one O_APPEND write per mark, so processes never
// interleave within a line). The wall clock is used so that a benchmark's own timestamps
// (bash's $EPOCHREALTIME before a command starts, after its first HTTP answer) line up with the
// marks. Unset, a mark costs one cached comparison.
#pragma once

#include <string_view>

namespace cryo {

void phase_mark(std::string_view phase);

}  // namespace cryo
