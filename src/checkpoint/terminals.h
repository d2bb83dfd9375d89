// Controlling terminals of restored sessions: pseudo-terminals created inside the tree
// (file_kinds/tty.cc) are recreated by the file pool; the sessions that had one as controlling
// terminal take it again while the tree is forked.
#pragma once

#include <sys/types.h>

namespace cryo::ckpt {

// In a restoring process, right after it has set its session and process group and before it
// forks its children (which inherit the controlling terminal): a session leader whose session
// had a pty of the tree as controlling terminal takes it again (TIOCSCTTY), and the leader of the
// terminal's foreground process group makes its group the foreground one (TIOCSPGRP). Pids are
// the dumped ones. Throws cryo::Error.
void restore_terminal_control(pid_t pid, pid_t sid, pid_t pgid);

// The coordinator keeps one fd per recreated pty for restore_terminal_control (the restoring
// processes inherit it, their fd install closes it); this closes the coordinator's once the tree
// is restored or the restore failed.
class RestoredTerminalsScope {
 public:
  RestoredTerminalsScope() = default;
  ~RestoredTerminalsScope();
  RestoredTerminalsScope(const RestoredTerminalsScope&) = delete;
  RestoredTerminalsScope& operator=(const RestoredTerminalsScope&) = delete;
};

}  // namespace cryo::ckpt
