// Running helper programs (used sparingly: the engine prefers direct kernel interfaces).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace cryo {

struct ProcessResult {
  int exit_code = -1;  // 128+signal when killed by a signal
  std::string output;  // stdout and stderr combined
};

// Runs argv[0] (searched in PATH) and waits; never throws for a non-zero exit.
ProcessResult run_process(const std::vector<std::string>& argv, const std::string& input = "");
// Like run_process but throws cryo::Error with the output when the exit code is not 0.
std::string run_process_or_throw(const std::vector<std::string>& argv,
                                 const std::string& input = "");

// Starts this program again (/proc/self/exe) with `argv` in a session of its own, every signal
// at its default and none blocked, its fd i being `child_fds[i]` of this process and every other
// fd closed. A vfork and an exec (posix_spawn): unlike a fork, it copies none of this process's
// page tables and leaves none of its pages copy-on-write. Returns the child's pid; throws
// cryo::Error naming `what`.
pid_t spawn_self_in_new_session(const std::vector<std::string>& argv,
                                const std::vector<int>& child_fds, const std::string& what);

}  // namespace cryo
