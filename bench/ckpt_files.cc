// Cost of dumping and restoring open files: a child opens FILES regular files and PIPES pipes (one
// in ten with bytes queued); FileDumper dumps its fds, FilePool recreates them, a fork installs
// them. Usage: ckpt_files DIR [FILES] [PIPES]   (DIR: scratch directory, removed at the end)
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "checkpoint/files.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/unique_fd.h"

using namespace cryo;
using namespace cryo::ckpt;

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The process whose fds are dumped; killed and reaped on destruction.
struct Tree {
  pid_t pid = -1;
  ~Tree() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR [FILES] [PIPES]\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const int files = argc > 2 ? std::atoi(argv[2]) : 2000;
  const int pipes = argc > 3 ? std::atoi(argv[3]) : 1000;
  try {
    struct rlimit lim;
    check_sys(::getrlimit(RLIMIT_NOFILE, &lim), "getrlimit");
    lim.rlim_cur = lim.rlim_max;
    check_sys(::setrlimit(RLIMIT_NOFILE, &lim), "setrlimit");
    fs::mkdir_p(dir + "/images");
    for (int i = 0; i < files; i++) fs::write_file(dir + "/f" + std::to_string(i), "x");

    int ready[2];
    check_sys(::pipe(ready), "pipe");
    Tree tree;
    tree.pid = check_sys(::fork(), "fork");
    if (tree.pid == 0) {
      ::close(ready[0]);
      for (int i = 0; i < files; i++)
        if (::open((dir + "/f" + std::to_string(i)).c_str(), O_RDONLY) < 0) _exit(1);
      for (int i = 0; i < pipes; i++) {
        int p[2];
        if (::pipe(p) < 0) _exit(1);
        if (i % 10 == 0 && ::write(p[1], "queued", 6) != 6) _exit(1);
      }
      ::close(ready[1]);
      for (;;) ::pause();
    }
    ::close(ready[1]);
    char c;
    if (::read(ready[0], &c, 1) != 0) throw Error("the tree did not set up its fds");
    ::close(ready[0]);
    UniqueFd pidfd(check_sys(static_cast<int>(::syscall(SYS_pidfd_open, tree.pid, 0)), "pidfd"));

    double t0 = now_ms();
    {
      FileDumper dumper(dir + "/images", {});
      dumper.dump_process(tree.pid, pidfd.get());
      dumper.finish();
    }
    double t1 = now_ms();
    const pid_t dumped = tree.pid;
    ::kill(tree.pid, SIGKILL);
    ::waitpid(tree.pid, nullptr, 0);
    tree.pid = -1;

    double t2 = now_ms();
    std::unique_ptr<FilePool> pool = FilePool::open(dir + "/images", {});
    double t3 = now_ms();
    pid_t restored = check_sys(::fork(), "fork");
    if (restored == 0) {
      std::vector<int> keep;
      try {
        pool->install(dumped, &keep);
      } catch (const Error&) {
        _exit(1);
      }
      _exit(0);
    }
    int status = 0;
    ::waitpid(restored, &status, 0);
    double t4 = now_ms();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw Error("install failed");
    int fds = files + 2 * pipes;
    std::printf("%d fds (%d files, %d pipes, 1 in 10 with bytes) in %s\n", fds, files, pipes,
                dir.c_str());
    std::printf("dump          %8.1f ms  (%.1f us/fd)\n", t1 - t0, (t1 - t0) * 1000 / fds);
    std::printf("pool open     %8.1f ms  (%.1f us/fd)\n", t3 - t2, (t3 - t2) * 1000 / fds);
    std::printf("fork+install  %8.1f ms\n", t4 - t3);
    pool.reset();
    fs::remove_all(dir);
  } catch (const Error& e) {
    std::fprintf(stderr, "Error: %s\n", e.what());
    fs::remove_all(dir);
    return 1;
  }
  return 0;
}
