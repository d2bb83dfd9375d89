// Deterministic fault injection for tests: a process dies by SIGKILL at a named point of its work,
// exactly as if it had been killed from outside at that moment, without the race of timing a kill.
//
// CRYO_FAULT_KILL_AT=point[,point...] in the environment arms the points (inherited by children,
// e.g. the restore helper). Unset, a point costs one cached comparison.
#pragma once

#include <string_view>

namespace cryo {

// Points armed today (named here so that tests and code agree):
//   dump-first-memory-written       the dump wrote the memory images of its first process
//   restore-tree-forked             the restore forked every process of the tree
void fault_point(std::string_view point);

}  // namespace cryo
