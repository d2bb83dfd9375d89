#include "common/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

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

pid_t spawn_self_in_new_session(const std::vector<std::string>& argv,
                                const std::vector<int>& child_fds, const std::string& what) {
  // Each source above every target, so that no dup2 below overwrites a source still needed.
  std::vector<UniqueFd> sources;
  for (int fd : child_fds) {
    sources.emplace_back(::fcntl(fd, F_DUPFD_CLOEXEC, static_cast<int>(child_fds.size()) + 10));
    if (!sources.back()) throw_errno(what + ": dup fd " + std::to_string(fd));
  }
  std::vector<std::string> args = argv;
  std::vector<char*> pointers;
  for (auto& a : args) pointers.push_back(a.data());
  pointers.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  if (int rc = ::posix_spawn_file_actions_init(&actions); rc != 0)
    throw Error(what + ": posix_spawn_file_actions_init: " + std::strerror(rc), rc);
  if (int rc = ::posix_spawnattr_init(&attr); rc != 0) {
    ::posix_spawn_file_actions_destroy(&actions);
    throw Error(what + ": posix_spawnattr_init: " + std::strerror(rc), rc);
  }
  for (size_t i = 0; i < sources.size(); ++i)
    ::posix_spawn_file_actions_adddup2(&actions, sources[i].get(), static_cast<int>(i));
  ::posix_spawn_file_actions_addclosefrom_np(&actions, static_cast<int>(sources.size()));
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  ::posix_spawnattr_setsigmask(&attr, &none);
  ::posix_spawnattr_setsigdefault(&attr, &all);
  ::posix_spawnattr_setflags(&attr,
                             POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t child = -1;
  int rc = ::posix_spawn(&child, "/proc/self/exe", &actions, &attr, pointers.data(), environ);
  ::posix_spawn_file_actions_destroy(&actions);
  ::posix_spawnattr_destroy(&attr);
  if (rc != 0) throw Error(what + ": " + std::strerror(rc), rc);
  return child;
}

}  // namespace cryo
