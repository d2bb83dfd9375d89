// Running helper programs (used sparingly: the engine prefers direct kernel interfaces).
#pragma once

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

}  // namespace cryo
