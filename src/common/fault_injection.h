// Deterministic fault injection for tests: a process gets a signal at a named point of its work,
// exactly as if it had been sent from outside at that moment, without the race of timing it.
//
// CRYO_FAULT_KILL_AT=point[,point...] in the environment: SIGKILL at those points (inherited by
// children, e.g. the restore helper).
// CRYO_FAULT_SIGNAL_AT=point:SIGNAL[,point:SIGNAL...]: the signal (INT, TERM, HUP...) at those
// points, sent to the process itself: it is handled as one from outside would be.
// Unset, a point costs one cached comparison.
#pragma once

#include <string_view>

namespace cryo {

// Points armed today (named here so that tests and code agree):
//   dump-cgroup-frozen              the tree's cgroup is frozen, its threads seized (the cgroup
//                                   is thawed a moment later)
//   dump-in-injected-syscalls       a thread of the dumped tree runs injected syscalls (its
//                                   registers are the injection's until the session ends)
//   dump-first-memory-written       the dump wrote the memory images of its first process
//   restore-tree-forked             the restore forked every process of the tree
void fault_point(std::string_view point);

}  // namespace cryo
