#include "checkpoint/ptrace.h"

#include <elf.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include <cerrno>
#include <string>
#include <utility>

#include "checkpoint/arch/x86_64/cpu.h"
#include "common/error.h"

namespace cryo::ckpt {

namespace {

std::string thread_name(pid_t tid) {
  return "thread " + std::to_string(tid);
}

long do_ptrace(int request, pid_t tid, void* addr, void* data, const char* what) {
  errno = 0;
  long r = ::ptrace(static_cast<__ptrace_request>(request), tid, addr, data);
  if (r == -1 && errno != 0) throw_errno(thread_name(tid) + ": " + what);
  return r;
}

bool is_event_stop(int status) {
  return WIFSTOPPED(status) && (status >> 16) == PTRACE_EVENT_STOP;
}

}  // namespace

PtraceAttachment PtraceAttachment::seize_and_request_stop(pid_t tid, unsigned long options) {
  // TRACESYSGOOD: injected syscalls are run to their syscall-stops (see RemoteSyscalls).
  options |= PTRACE_O_TRACESYSGOOD;
  do_ptrace(PTRACE_SEIZE, tid, nullptr, reinterpret_cast<void*>(options), "PTRACE_SEIZE");
  PtraceAttachment attachment(tid);
  do_ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr, "PTRACE_INTERRUPT");
  return attachment;
}

void PtraceAttachment::wait_interrupted() const {
  for (;;) {
    int status = wait_stop();
    if (is_event_stop(status)) return;
    int sig = WSTOPSIG(status);
    if ((status >> 16) == 0 && sig != SIGTRAP) {
      // A signal was being delivered when we attached: let it go on as it would have (the
      // pending interrupt stops the thread right after).
      do_ptrace(PTRACE_CONT, tid_, nullptr, reinterpret_cast<void*>(static_cast<long>(sig)),
                "PTRACE_CONT");
      continue;
    }
    do_ptrace(PTRACE_CONT, tid_, nullptr, nullptr, "PTRACE_CONT");
  }
}

PtraceAttachment PtraceAttachment::seize_and_interrupt(pid_t tid, unsigned long options) {
  PtraceAttachment attachment = seize_and_request_stop(tid, options);
  attachment.wait_interrupted();
  return attachment;
}

PtraceAttachment PtraceAttachment::adopt_stopped(pid_t tid) {
  return PtraceAttachment(tid);
}

PtraceAttachment::PtraceAttachment(PtraceAttachment&& other) noexcept : tid_(other.tid_) {
  other.tid_ = -1;
}

PtraceAttachment& PtraceAttachment::operator=(PtraceAttachment&& other) noexcept {
  if (this != &other) {
    if (tid_ > 0) ::ptrace(PTRACE_DETACH, tid_, nullptr, nullptr);
    tid_ = other.tid_;
    other.tid_ = -1;
  }
  return *this;
}

PtraceAttachment::~PtraceAttachment() {
  if (tid_ > 0) ::ptrace(PTRACE_DETACH, tid_, nullptr, nullptr);
}

user_regs_struct PtraceAttachment::get_regs() const {
  user_regs_struct regs{};
  iovec iov{&regs, sizeof regs};
  do_ptrace(PTRACE_GETREGSET, tid_, reinterpret_cast<void*>(NT_PRSTATUS), &iov,
            "PTRACE_GETREGSET NT_PRSTATUS");
  return regs;
}

void PtraceAttachment::set_regs(const user_regs_struct& regs) const {
  user_regs_struct copy = regs;
  iovec iov{&copy, sizeof copy};
  do_ptrace(PTRACE_SETREGSET, tid_, reinterpret_cast<void*>(NT_PRSTATUS), &iov,
            "PTRACE_SETREGSET NT_PRSTATUS");
}

std::vector<uint8_t> PtraceAttachment::get_xstate() const {
  std::vector<uint8_t> buffer(x86_64::xstate_size() + 4096);
  iovec iov{buffer.data(), buffer.size()};
  do_ptrace(PTRACE_GETREGSET, tid_, reinterpret_cast<void*>(NT_X86_XSTATE), &iov,
            "PTRACE_GETREGSET NT_X86_XSTATE");
  buffer.resize(iov.iov_len);
  return buffer;
}

void PtraceAttachment::set_xstate(const std::vector<uint8_t>& xstate) const {
  std::vector<uint8_t> copy = xstate;
  iovec iov{copy.data(), copy.size()};
  do_ptrace(PTRACE_SETREGSET, tid_, reinterpret_cast<void*>(NT_X86_XSTATE), &iov,
            "PTRACE_SETREGSET NT_X86_XSTATE");
}

uint64_t PtraceAttachment::get_sigmask() const {
  uint64_t mask = 0;
  do_ptrace(PTRACE_GETSIGMASK, tid_, reinterpret_cast<void*>(sizeof mask), &mask,
            "PTRACE_GETSIGMASK");
  return mask;
}

void PtraceAttachment::set_sigmask(uint64_t mask) const {
  do_ptrace(PTRACE_SETSIGMASK, tid_, reinterpret_cast<void*>(sizeof mask), &mask,
            "PTRACE_SETSIGMASK");
}

int PtraceAttachment::wait_stop() const {
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(tid_, &status, __WALL);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno(thread_name(tid_) + ": waitpid");
    }
    if (WIFEXITED(status))
      throw Error(thread_name(tid_) + " exited with status " + std::to_string(WEXITSTATUS(status)) +
                  " while traced");
    if (WIFSIGNALED(status))
      throw Error(thread_name(tid_) + " was killed by signal " + std::to_string(WTERMSIG(status)) +
                  " while traced");
    return status;
  }
}

int PtraceAttachment::continue_and_wait(int signal) const {
  do_ptrace(PTRACE_CONT, tid_, nullptr, reinterpret_cast<void*>(static_cast<long>(signal)),
            "PTRACE_CONT");
  return wait_stop();
}

int PtraceAttachment::single_step_and_wait() const {
  do_ptrace(PTRACE_SINGLESTEP, tid_, nullptr, nullptr, "PTRACE_SINGLESTEP");
  return wait_stop();
}

void PtraceAttachment::interrupt_and_wait() const {
  do_ptrace(PTRACE_INTERRUPT, tid_, nullptr, nullptr, "PTRACE_INTERRUPT");
  for (;;) {
    int status = wait_stop();
    if (is_event_stop(status)) return;
    do_ptrace(
        PTRACE_CONT, tid_, nullptr,
        reinterpret_cast<void*>(static_cast<long>((status >> 16) == 0 ? WSTOPSIG(status) : 0)),
        "PTRACE_CONT");
  }
}

void PtraceAttachment::set_options(unsigned long options) const {
  do_ptrace(PTRACE_SETOPTIONS, tid_, nullptr, reinterpret_cast<void*>(options),
            "PTRACE_SETOPTIONS");
}

std::vector<siginfo_t> PtraceAttachment::peek_pending_signals(bool shared) const {
  std::vector<siginfo_t> out;
  for (;;) {
    __ptrace_peeksiginfo_args args{};
    args.off = out.size();
    args.flags = shared ? PTRACE_PEEKSIGINFO_SHARED : 0;
    args.nr = 32;
    siginfo_t batch[32];
    long n = do_ptrace(PTRACE_PEEKSIGINFO, tid_, &args, batch, "PTRACE_PEEKSIGINFO");
    if (n <= 0) break;
    out.insert(out.end(), batch, batch + n);
  }
  return out;
}

void PtraceAttachment::detach() {
  if (tid_ <= 0) return;
  pid_t tid = std::exchange(tid_, -1);
  do_ptrace(PTRACE_DETACH, tid, nullptr, nullptr, "PTRACE_DETACH");
}

}  // namespace cryo::ckpt
