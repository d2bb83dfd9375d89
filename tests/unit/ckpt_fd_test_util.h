// Scaffolding shared by the fd checkpoint unit tests (files, events, sockets): a forked "tree"
// process that places fds at chosen numbers and reports when it is ready to be dumped, and a
// "restored" process that installs the fds from a FilePool and runs checks from the inside.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "checkpoint/files.h"
#include "common/error.h"
#include "common/fs.h"

namespace cryo::ckpt::testutil {

// Where a tree process gets its readiness fd: out of the way of the numbers the setups use.
inline constexpr int kReadyFd = 200;

// Closes every fd but `keep`, then puts /dev/null on 0, 1 and 2 when they are not kept, so that
// the dump never depends on what the test runner's stdio is.
inline void keep_only(const std::set<int>& keep) {
  for (int fd = 0; fd < 1024; ++fd)
    if (!keep.count(fd)) ::close(fd);
  for (int fd = 0; fd < 3; ++fd) {
    if (keep.count(fd)) continue;
    int n = ::open("/dev/null", O_RDWR);
    if (n != fd) {
      ::dup2(n, fd);
      ::close(n);
    }
  }
}

// Moves `fd` to number `to` keeping the description and its close-on-exec flag.
inline void place(int fd, int to) {
  if (fd < 0) _exit(89);
  if (fd == to) return;
  int cloexec = ::fcntl(fd, F_GETFD) & FD_CLOEXEC;
  if (::dup3(fd, to, cloexec ? O_CLOEXEC : 0) < 0) _exit(90);
  ::close(fd);
}

inline void write_string(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

inline std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// Called by a tree process once its fds are in place: one byte, then the readiness fd is closed
// (the test waits for its end of file, so the dump never sees it).
inline void signal_ready(int ready_fd) {
  write_string(ready_fd, "r");
  ::close(ready_fd);
}

// A process of the "dumped tree". Killed and reaped on destruction.
class TreeProcess {
 public:
  // Runs setup(ready_fd), which puts its fds in place and calls signal_ready(ready_fd) (directly
  // or after moving it; children it forks must close it too); then sleeps until killed.
  explicit TreeProcess(const std::function<void(int ready_fd)>& setup) {
    int ready[2];
    EXPECT_EQ(::pipe2(ready, O_CLOEXEC), 0);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(ready[0]);
      if (::dup2(ready[1], kReadyFd) < 0) _exit(91);
      ::close(ready[1]);
      setup(kReadyFd);
      for (;;) ::pause();
    }
    ::close(ready[1]);
    char c = 0;
    ssize_t n = ::read(ready[0], &c, 1);
    EXPECT_EQ(n, 1) << "tree process died during setup";
    // The readiness fd must be gone from the whole tree before it is dumped: end of file comes
    // only once every process has closed it.
    while (n == 1 && ::read(ready[0], &c, 1) > 0) {
    }
    ::close(ready[0]);
    pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
    EXPECT_GE(pidfd_, 0);
  }
  // Runs setup(), which returns the fds it holds; every other fd is closed (0, 1 and 2 become
  // /dev/null) before it reports ready.
  explicit TreeProcess(const std::function<std::set<int>()>& setup)
      : TreeProcess([&setup](int ready_fd) {
          std::set<int> keep = setup();
          keep.insert(ready_fd);
          keep_only(keep);
          signal_ready(ready_fd);
        }) {}
  TreeProcess(const TreeProcess&) = delete;
  TreeProcess& operator=(const TreeProcess&) = delete;
  ~TreeProcess() { kill(); }

  void kill() {
    if (pidfd_ >= 0) ::close(pidfd_);
    pidfd_ = -1;
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    pid_ = -1;
  }
  pid_t pid() const { return pid_; }
  int pidfd() const { return pidfd_; }

 private:
  pid_t pid_ = -1;
  int pidfd_ = -1;
};

// Collects failed checks inside a restored process; they go back to the test through a pipe.
struct Checks {
  std::ostringstream failures;
  void expect(bool ok, const std::string& what) {
    if (!ok) failures << what << " (errno " << std::strerror(errno) << ")\n";
  }
};

// A restored process: a fork of the test (as restoring processes are forks of the coordinator)
// that installs the fds of `dumped_pid` from the pool. With `verify`, runs it and exits; the test
// gets its failures. Without, it stays (for checks from outside) until destroyed. With
// `same_pid`, it is created with the dumped pid (clone3 set_tid), as the real restore does.
class RestoredProcess {
 public:
  RestoredProcess(FilePool& pool, pid_t dumped_pid, const std::function<void(Checks&)>& verify,
                  bool same_pid = false) {
    int report[2];
    EXPECT_EQ(::pipe2(report, O_CLOEXEC), 0);
    if (same_pid) {
      struct clone_args args {};
      pid_t tid = dumped_pid;
      args.exit_signal = SIGCHLD;
      args.set_tid = reinterpret_cast<uint64_t>(&tid);
      args.set_tid_size = 1;
      pid_ = static_cast<pid_t>(::syscall(SYS_clone3, &args, sizeof args));
    } else {
      pid_ = ::fork();
    }
    if (pid_ == 0) {
      ::close(report[0]);
      std::vector<int> keep{report[1]};
      try {
        pool.install(dumped_pid, &keep);
      } catch (const Error& e) {
        write_string(keep[0], std::string("install: ") + e.what());
        _exit(1);
      }
      Checks checks;
      if (keep[0] <= pool.max_fd()) checks.expect(false, "kept fd not moved above max_fd");
      if (verify) {
        verify(checks);
        write_string(keep[0], checks.failures.str());
        _exit(0);
      }
      write_string(keep[0], "installed\n" + checks.failures.str());
      ::close(keep[0]);
      for (;;) ::pause();
    }
    EXPECT_GT(pid_, 0) << "fork/clone3: " << std::strerror(errno);
    ::close(report[1]);
    report_ = report[0];
    if (!verify) {
      EXPECT_EQ(read_all(report_), "installed\n");
    }
  }
  RestoredProcess(const RestoredProcess&) = delete;
  RestoredProcess& operator=(const RestoredProcess&) = delete;
  ~RestoredProcess() {
    if (report_ >= 0) ::close(report_);
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  // The failures reported by the process (empty: every check passed).
  std::string failures() {
    std::string out = read_all(report_);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    if (!WIFEXITED(status)) out += "restored process died with status " + std::to_string(status);
    return out;
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int report_ = -1;
};

// A pid that a process of the tree writes for the test (a fork of a fork cannot return it): one
// shared anonymous page, unmapped on destruction.
class SharedPid {
 public:
  SharedPid() {
    void* page =
        ::mmap(nullptr, sizeof(pid_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(page, MAP_FAILED);
    if (page != MAP_FAILED) {
      pid_ = static_cast<pid_t*>(page);
      *pid_ = -1;
    }
  }
  SharedPid(const SharedPid&) = delete;
  SharedPid& operator=(const SharedPid&) = delete;
  ~SharedPid() {
    if (pid_ != nullptr) ::munmap(pid_, sizeof(pid_t));
  }
  void set(pid_t pid) { *pid_ = pid; }
  pid_t get() const { return pid_ != nullptr ? *pid_ : -1; }

 private:
  pid_t* pid_ = nullptr;
};

// Base fixture of the fd checkpoint tests: a temporary directory holding the images directory,
// and a dump of tree processes into it.
class FdImagesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cryo-fd-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    images_ = dir_ + "/images";
    fs::mkdir_p(images_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void dump(const std::vector<const TreeProcess*>& tree, FileDumpOptions options = {}) {
    FileDumper dumper(images_, options);
    for (const TreeProcess* p : tree) dumper.dump_process(p->pid(), p->pidfd());
    dumper.finish();
  }
  void dump(const TreeProcess& tree, FileDumpOptions options = {}) { dump({&tree}, options); }
  // The message of the error the dump of `tree` fails with ("" when it does not fail).
  std::string dump_error(const TreeProcess& tree, FileDumpOptions options = {}) {
    try {
      dump(tree, options);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  std::string dir_;
  std::string images_;
};

}  // namespace cryo::ckpt::testutil
