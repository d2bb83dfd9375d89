// The process tree being dumped: who is in it, and holding every thread of it stopped.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/ptrace.h"

namespace cryo::ckpt {

struct ProcessInfo {
  pid_t pid = -1;
  pid_t ppid = -1;
  pid_t pgid = -1;
  pid_t sid = -1;
  bool zombie = false;
  int exit_code = 0;  // for zombies: the wait status the parent would get
  std::string comm;
};

// Reads /proc/PID/stat.
ProcessInfo read_process_info(pid_t pid);
// Thread ids of `pid` (from /proc/PID/task), the thread-group leader first.
std::vector<pid_t> list_threads(pid_t pid);
// Children of every thread of `pid` (from /proc/PID/task/*/children).
std::vector<pid_t> list_children(pid_t pid);

struct FrozenProcess {
  ProcessInfo info;
  std::vector<PtraceAttachment> threads;  // empty for zombies; leader first
  std::vector<pid_t> children;
};

// Every thread of every process of a tree, stopped by ptrace. Destroying it detaches them all
// (the tree runs on) unless kill() was called.
class FrozenTree {
 public:
  // Seizes and interrupts every thread, repeating until no new thread or process appears. With a
  // freezer cgroup (v1 freezer.state or cgroup2 cgroup.freeze), the cgroup is frozen first so
  // that nothing can fork while the tree is walked.
  static FrozenTree freeze(pid_t root, const std::string& freezer_cgroup = "");
  FrozenTree(FrozenTree&&) = default;
  FrozenTree& operator=(FrozenTree&&) = default;
  ~FrozenTree();

  // Parents before children; processes_[0] is the root.
  std::vector<FrozenProcess>& processes() { return processes_; }
  // SIGKILLs every process (ends of the dump without -R). With `wait_for_exit`, waits until every
  // thread has died, which includes the kernel tearing down the address spaces (~100 ms per GiB
  // here); without, returns once every process has been sent SIGKILL: none can run user code
  // again, and the kernel finishes their exit after we let go of them (a PID may stay in use a
  // little longer, see restore's wait for exiting PIDs).
  void kill(bool wait_for_exit = true);
  // Detaches every thread (the tree runs on).
  void resume();

 private:
  FrozenTree() = default;
  std::vector<FrozenProcess> processes_;
};

}  // namespace cryo::ckpt
