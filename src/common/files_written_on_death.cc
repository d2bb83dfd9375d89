#include "common/files_written_on_death.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <memory>
#include <stdexcept>

#include "common/error.h"

namespace cryo {

namespace {

constexpr size_t kMaxWrites = 4;
constexpr size_t kHelperStackSize = 64 << 10;

#if !defined(__x86_64__)
#error "the helper of FilesWrittenOnDeath makes raw x86-64 syscalls"
#endif

// The helper shares this process's memory and the TLS of the thread that cloned it: it must not
// touch errno or any libc state, so it calls the kernel directly. Returns -errno on failure.
long raw_syscall(long nr, long a1 = 0, long a2 = 0, long a3 = 0, long a4 = 0) {
  long result;
  register long r10 __asm__("r10") = a4;
  __asm__ volatile("syscall"
                   : "=a"(result)
                   : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10)
                   : "rcx", "r11", "memory");
  return result;
}

}  // namespace

struct FilesWrittenOnDeath::Plan {
  int read_fd = -1;
  size_t count = 0;
  std::array<const char*, kMaxWrites> paths{};
  std::array<const char*, kMaxWrites> contents{};
  std::array<size_t, kMaxWrites> sizes{};
};

namespace {

int run_helper(void* arg) {
  const auto* plan = static_cast<const FilesWrittenOnDeath::Plan*>(arg);
  uint64_t all_signals = ~uint64_t{0};
  raw_syscall(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&all_signals), 0,
              sizeof all_signals);
  raw_syscall(SYS_setsid);
  // Only the helper's end of the socket pair stays open here: a copy of the other end, or of any
  // other fd of the process (an archive being written, a socket), must not outlive the process
  // because of us.
  if (plan->read_fd > 0) raw_syscall(SYS_close_range, 0, plan->read_fd - 1, 0);
  raw_syscall(SYS_close_range, plan->read_fd + 1, ~0U, 0);
  char byte = 0;
  long n;
  do {
    n = raw_syscall(SYS_read, plan->read_fd, reinterpret_cast<long>(&byte), 1);
  } while (n == -EINTR);
  if (n == 1 && byte == 'd') return 0;
  for (size_t i = 0; i < plan->count; ++i) {
    long fd = raw_syscall(SYS_open, reinterpret_cast<long>(plan->paths[i]), O_WRONLY | O_CLOEXEC);
    if (fd < 0) continue;
    raw_syscall(SYS_write, fd, reinterpret_cast<long>(plan->contents[i]),
                static_cast<long>(plan->sizes[i]));
    raw_syscall(SYS_close, fd);
  }
  return 0;
}

}  // namespace

FilesWrittenOnDeath::FilesWrittenOnDeath(std::vector<std::pair<std::string, std::string>> writes)
    : writes_(std::move(writes)) {
  if (writes_.size() > kMaxWrites)
    throw std::logic_error("FilesWrittenOnDeath: more than " + std::to_string(kMaxWrites) +
                           " files");
  // A socket pair rather than a pipe: "done" is sent with MSG_NOSIGNAL, so a helper that died
  // (killed by hand) costs this process an EPIPE, not a SIGPIPE.
  int p[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) < 0)
    throw_errno("socketpair for the helper that writes on death");
  UniqueFd read_end(p[0]);
  done_.reset(p[1]);
  // Owned here, read by the helper. Both live as long as the helper needs them: this object until
  // the helper is reaped, or the whole memory, which the helper keeps when this process dies.
  plan_ = std::make_unique<Plan>();
  plan_->read_fd = read_end.get();
  plan_->count = writes_.size();
  for (size_t i = 0; i < writes_.size(); ++i) {
    plan_->paths[i] = writes_[i].first.c_str();
    plan_->contents[i] = writes_[i].second.data();
    plan_->sizes[i] = writes_[i].second.size();
  }
  // Not zeroed: only the pages the helper uses are touched. new[] aligns it for any type, which
  // keeps its top 16-byte aligned as the ABI wants.
  stack_.reset(new char[kHelperStackSize]);
  // The helper starts with every signal blocked (it inherits this thread's mask): no handler of
  // this process may run on its stack, and it keeps them blocked.
  sigset_t all, previous;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &previous);
  pid_ = ::clone(run_helper, stack_.get() + kHelperStackSize, CLONE_VM | SIGCHLD, plan_.get());
  int err = errno;
  ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  if (pid_ < 0) throw_errno("clone the helper that writes on death", err);
}

FilesWrittenOnDeath::~FilesWrittenOnDeath() {
  if (pid_ <= 0) return;
  (void)!::send(done_.get(), "d", 1, MSG_NOSIGNAL);
  done_.reset();
  while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace cryo
