#include "common/subprocess.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/error.h"
#include "common/strings.h"
#include "common/unique_fd.h"

extern char** environ;

namespace cryo {

ProcessResult run_process(const std::vector<std::string>& argv, const std::string& input) {
  int out_pipe[2], in_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) < 0) throw_errno("pipe2");
  UniqueFd out_read(out_pipe[0]), out_write(out_pipe[1]);
  if (::pipe2(in_pipe, O_CLOEXEC) < 0) throw_errno("pipe2");
  UniqueFd in_read(in_pipe[0]), in_write(in_pipe[1]);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_read.get(), 0);
  posix_spawn_file_actions_adddup2(&actions, out_write.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, out_write.get(), 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw_errno("spawn " + argv[0], rc);
  in_read.reset();
  out_write.reset();
  if (!input.empty()) (void)!::write(in_write.get(), input.data(), input.size());
  in_write.reset();

  ProcessResult result;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(out_read.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    result.output.append(buf, static_cast<size_t>(n));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

std::string run_process_or_throw(const std::vector<std::string>& argv, const std::string& input) {
  ProcessResult r = run_process(argv, input);
  if (r.exit_code != 0)
    throw Error(join(argv, " ") + " exited with " + std::to_string(r.exit_code) + ": " +
                std::string(trim(r.output)));
  return r.output;
}

}  // namespace cryo
