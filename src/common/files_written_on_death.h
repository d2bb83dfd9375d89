// Small files written by a helper process if this process dies before it says it is done: how a
// checkpoint makes sure a CLI killed half way never leaves a container frozen (the helper thaws
// its cgroup).
//
// The helper is a clone of this process that shares its memory (CLONE_VM) and runs a few raw
// syscalls on a stack of its own, in a session of its own (a Ctrl-C to the CLI's terminal does not
// reach it), with every signal but SIGKILL blocked. It costs a clone, not an exec: an exec'd
// helper took ~20 ms of CPU to load beside the checkpoint. It waits on a socket whose other end
// only this process holds; end of file without the "done" byte means this process died.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/unique_fd.h"

namespace cryo {

class FilesWrittenOnDeath {
 public:
  // `writes`: (path, content) in order; each file is opened O_WRONLY (not created) and written
  // once, errors ignored (nobody is left to tell).
  explicit FilesWrittenOnDeath(std::vector<std::pair<std::string, std::string>> writes);
  // Tells the helper this process is done, and reaps it.
  ~FilesWrittenOnDeath();
  FilesWrittenOnDeath(const FilesWrittenOnDeath&) = delete;
  FilesWrittenOnDeath& operator=(const FilesWrittenOnDeath&) = delete;

  pid_t helper_pid() const { return pid_; }

  struct Plan;  // what the helper reads, in memory it shares with this process

 private:
  // Read by the helper; freed after the destructor's body has reaped it.
  std::vector<std::pair<std::string, std::string>> writes_;
  std::unique_ptr<Plan> plan_;
  std::unique_ptr<char[]> stack_;
  pid_t pid_ = -1;
  UniqueFd done_;
};

}  // namespace cryo
