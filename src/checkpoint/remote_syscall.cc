#include "checkpoint/remote_syscall.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "checkpoint/arch/x86_64/blob.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/unique_fd.h"

namespace cryo::ckpt {

namespace {

constexpr size_t kPageSize = 4096;
constexpr size_t kBlobStackSize = 16 * 1024;

size_t round_up(size_t n, size_t to) {
  return (n + to - 1) / to * to;
}

// Start address and size of the [vdso] mapping of `tid`.
std::pair<uint64_t, uint64_t> find_vdso(pid_t tid) {
  std::ifstream maps("/proc/" + std::to_string(tid) + "/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find("[vdso]") == std::string::npos) continue;
    uint64_t start = 0, end = 0;
    char dash = 0;
    std::istringstream in(line);
    in >> std::hex >> start >> dash >> end;
    return {start, end - start};
  }
  throw Error("thread " + std::to_string(tid) + " has no [vdso] mapping");
}

}  // namespace

struct RemoteSyscalls::Impl {
  PtraceAttachment& thread;
  user_regs_struct saved{};
  UniqueFd mem;
  uint64_t syscall_insn = 0;
  RemoteAddr scratch_base;
  size_t scratch_size = 0;
  RemoteAddr fixed_place;
  std::vector<pid_t> new_threads;
  static constexpr long kNoSyscallInFlight = -1;
  long in_flight_nr = kNoSyscallInFlight;
  uint64_t in_flight_insn = 0;
  std::vector<int> stashed_signals;
  bool finished = false;

  explicit Impl(PtraceAttachment& t) : thread(t) {}

  std::string who() const { return "thread " + std::to_string(thread.tid()); }

  uint64_t find_syscall_instruction() {
    if (syscall_insn) return syscall_insn;
    auto [start, size] = find_vdso(thread.tid());
    std::vector<uint8_t> bytes(size);
    ssize_t n = ::pread(mem.get(), bytes.data(), size, static_cast<off_t>(start));
    if (n != static_cast<ssize_t>(size)) throw_errno(who() + ": reading [vdso] from /proc/PID/mem");
    for (size_t i = 0; i + 1 < size; ++i) {
      if (bytes[i] == 0x0f && bytes[i + 1] == 0x05) {
        syscall_insn = start + i;
        return syscall_insn;
      }
    }
    throw Error(who() + ": no syscall instruction in [vdso]");
  }

  // Waits for the stop that ends injected code (its SIGSTOP to itself, inside the code at
  // [code, code_end)), remembering unrelated signals for later.
  int wait_trap(RemoteAddr code, RemoteAddr code_end) {
    for (;;) {
      int status = thread.wait_stop();
      int sig = WSTOPSIG(status);
      int event = status >> 16;
      if (event == 0 && sig == SIGSTOP) {
        uint64_t rip = thread.get_regs().rip;
        if (rip >= code.value() && rip < code_end.value()) return status;
      }
      if (event == 0 &&
          (sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGTRAP)) {
        user_regs_struct regs = thread.get_regs();
        std::ostringstream msg;
        msg << who() << ": injected code got signal " << sig << " at rip 0x" << std::hex << regs.rip
            << " (rax 0x" << regs.rax << ")";
        throw Error(msg.str());
      }
      if (event == PTRACE_EVENT_CLONE) {
        unsigned long new_tid = 0;
        if (::ptrace(PTRACE_GETEVENTMSG, thread.tid(), nullptr, &new_tid) != 0)
          throw_errno(who() + ": PTRACE_GETEVENTMSG");
        new_threads.push_back(static_cast<pid_t>(new_tid));
        // The new thread starts in an event stop before running any instruction; collect it.
        PtraceAttachment new_thread = PtraceAttachment::adopt_stopped(static_cast<pid_t>(new_tid));
        new_thread.wait_stop();
        new_thread.release();  // stays traced and stopped: the caller adopts it
      } else if (event == 0 && sig != (SIGTRAP | 0x80)) {
        stashed_signals.push_back(sig);
      }
      if (::ptrace(PTRACE_CONT, thread.tid(), nullptr, nullptr) != 0)
        throw_errno(who() + ": PTRACE_CONT");
    }
  }

  void run_code(RemoteAddr code, RemoteAddr block, RemoteAddr stack) {
    settle();
    user_regs_struct regs = saved;
    regs.rip = code.value();
    regs.rdi = block.value();
    regs.rsp = stack.value();
    regs.orig_rax = static_cast<uint64_t>(-1);
    regs.rax = 0;
    thread.set_regs(regs);
    new_threads.clear();
    if (::ptrace(PTRACE_CONT, thread.tid(), nullptr, nullptr) != 0)
      throw_errno(who() + ": PTRACE_CONT into the injected code");
    wait_trap(code, code + x86_64::blob_size());
  }

  void ensure_scratch(size_t size) {
    size = round_up(size, kPageSize);
    if (scratch_size >= size) return;
    if (scratch_size) unmap_scratch();
    uint64_t hint = fixed_place.value();
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | (hint ? MAP_FIXED_NOREPLACE : 0);
    long r = do_syscall(SYS_mmap, hint, size, PROT_READ | PROT_WRITE | PROT_EXEC, flags, -1, 0);
    if (r < 0 && r > -4096)
      throw SysError(who() + ": injected mmap of " + std::to_string(size) + " bytes",
                     static_cast<int>(-r));
    if (hint && static_cast<uint64_t>(r) != hint)
      throw Error(who() + ": injected mmap did not land at the requested address");
    scratch_base = RemoteAddr(static_cast<uint64_t>(r));
    scratch_size = size;
  }

  void unmap_scratch() {
    if (!scratch_size) return;
    long r = do_syscall(SYS_munmap, scratch_base.value(), scratch_size, 0, 0, 0, 0);
    if (r < 0)
      throw SysError(who() + ": injected munmap of the scratch area", static_cast<int>(-r));
    scratch_size = 0;
    scratch_base = RemoteAddr();
  }

  // Sets the registers for syscall `nr` at the [vdso]'s syscall instruction and lets the thread
  // run to it; complete_syscall() collects it.
  void launch_syscall(long nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5,
                      uint64_t a6) {
    uint64_t insn = find_syscall_instruction();
    user_regs_struct regs = saved;
    regs.rax = static_cast<uint64_t>(nr);
    regs.orig_rax = static_cast<uint64_t>(-1);  // no syscall-restart fixup on resume
    regs.rdi = a1;
    regs.rsi = a2;
    regs.rdx = a3;
    regs.r10 = a4;
    regs.r8 = a5;
    regs.r9 = a6;
    regs.rip = insn;
    thread.set_regs(regs);
    // From syscall-entry stop to syscall-exit stop (no single-step: its forced SIGTRAP would reset
    // a blocked or ignored SIGTRAP handler of the target).
    if (::ptrace(PTRACE_SYSCALL, thread.tid(), nullptr, nullptr) != 0)
      throw_errno(who() + ": PTRACE_SYSCALL");
    in_flight_nr = nr;
    in_flight_insn = insn;
  }

  long complete_syscall() {
    long nr = in_flight_nr;
    in_flight_nr = kNoSyscallInFlight;  // waited for once, even if the wait fails
    int stops = 0;
    for (;;) {
      int status = thread.wait_stop();
      int sig = WSTOPSIG(status);
      if ((status >> 16) == 0 && sig == (SIGTRAP | 0x80)) {
        if (++stops == 2) break;
      } else if ((status >> 16) == 0 && sig != SIGSTOP) {
        stashed_signals.push_back(sig);
      }
      if (::ptrace(PTRACE_SYSCALL, thread.tid(), nullptr, nullptr) != 0)
        throw_errno(who() + ": PTRACE_SYSCALL");
    }
    user_regs_struct after = thread.get_regs();
    if (after.rip != in_flight_insn + 2) {
      std::ostringstream msg;
      msg << who() << ": injected syscall " << nr << " ended at unexpected rip 0x" << std::hex
          << after.rip;
      throw Error(msg.str());
    }
    return static_cast<long>(after.rax);
  }

  // Collects a syscall started without waiting (start_unawaited_syscall), if any.
  void settle() {
    if (in_flight_nr != kNoSyscallInFlight) complete_syscall();
  }

  long do_syscall(long nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5,
                  uint64_t a6) {
    settle();
    launch_syscall(nr, a1, a2, a3, a4, a5, a6);
    return complete_syscall();
  }

  void write(RemoteAddr addr, const void* data, size_t size) {
    const auto* p = static_cast<const uint8_t*>(data);
    size_t done = 0;
    while (done < size) {
      ssize_t n =
          ::pwrite(mem.get(), p + done, size - done, static_cast<off_t>(addr.value() + done));
      if (n <= 0) throw_errno(who() + ": writing " + (addr + done).hex() + " in /proc/PID/mem");
      done += static_cast<size_t>(n);
    }
  }

  void read(RemoteAddr addr, void* out, size_t size) {
    auto* p = static_cast<uint8_t*>(out);
    size_t done = 0;
    while (done < size) {
      ssize_t n =
          ::pread(mem.get(), p + done, size - done, static_cast<off_t>(addr.value() + done));
      if (n <= 0) throw_errno(who() + ": reading " + (addr + done).hex() + " in /proc/PID/mem");
      done += static_cast<size_t>(n);
    }
  }
};

RemoteSyscalls::RemoteSyscalls(PtraceAttachment& thread) : impl_(new Impl(thread)) {
  try {
    impl_->saved = thread.get_regs();
    std::string path = "/proc/" + std::to_string(thread.tid()) + "/mem";
    impl_->mem = UniqueFd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!impl_->mem) throw_errno("open " + path);
  } catch (...) {
    delete impl_;
    throw;
  }
}

RemoteSyscalls::~RemoteSyscalls() {
  try {
    finish();
  } catch (const Error& e) {
    // A thread that is gone (killed after a failure) needs nothing put back.
    if (e.sys_errno() != ESRCH) {
      LOG_WARN << "leaving remote syscall session: " << e.what();
    }
  }
  delete impl_;
}

void RemoteSyscalls::finish(bool keep_registers) {
  if (impl_->finished) return;
  impl_->finished = true;
  impl_->settle();
  impl_->unmap_scratch();
  if (!keep_registers) impl_->thread.set_regs(impl_->saved);
  // Signals that arrived while injected code ran were held back; send them again.
  for (int sig : impl_->stashed_signals) ::syscall(SYS_tkill, impl_->thread.tid(), sig);
  impl_->stashed_signals.clear();
}

pid_t RemoteSyscalls::tid() const {
  return impl_->thread.tid();
}

long RemoteSyscalls::syscall(long nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                             uint64_t a5, uint64_t a6) {
  return impl_->do_syscall(nr, a1, a2, a3, a4, a5, a6);
}

void RemoteSyscalls::start_unawaited_syscall(long nr) {
  impl_->settle();
  impl_->launch_syscall(nr, 0, 0, 0, 0, 0, 0);
}

void RemoteSyscalls::wait_until_stopped() {
  impl_->settle();
}

RemoteAddr RemoteSyscalls::scratch(size_t size) {
  impl_->ensure_scratch(size);
  return impl_->scratch_base;
}

void RemoteSyscalls::place_scratch_at(RemoteAddr addr) {
  impl_->fixed_place = addr;
}

const std::vector<pid_t>& RemoteSyscalls::new_threads() const {
  return impl_->new_threads;
}

const user_regs_struct& RemoteSyscalls::saved_regs() const {
  return impl_->saved;
}

void RemoteSyscalls::write_memory(RemoteAddr addr, const void* data, size_t size) {
  impl_->write(addr, data, size);
}

void RemoteSyscalls::read_memory(RemoteAddr addr, void* out, size_t size) {
  impl_->read(addr, out, size);
}

std::vector<uint8_t> RemoteSyscalls::run_batch(const SyscallBatch& batch) {
  size_t blob_bytes = round_up(x86_64::blob_size(), 64);
  size_t total = blob_bytes + round_up(batch.size(), 64) + kBlobStackSize;
  RemoteAddr base = scratch(total);
  RemoteAddr block_addr = base + blob_bytes;
  std::vector<uint8_t> code(cryo_blob_start, cryo_blob_end);
  impl_->write(base, code.data(), code.size());
  std::vector<uint8_t> block = batch.layout(block_addr);
  impl_->write(block_addr, block.data(), block.size());

  RemoteAddr stack_top = (base + impl_->scratch_size) + 0;
  impl_->run_code(base, block_addr, RemoteAddr((stack_top.value() - 64) & ~uint64_t{15}));
  impl_->read(block_addr, block.data(), block.size());
  for (size_t i = 0; i < batch.count(); ++i) {
    int64_t result = SyscallBatch::result_of(block, i);
    if (result < 0 && result >= -4095) {
      LOG_DEBUG << impl_->who() << ": batched " << batch.description(i) << " returned " << result;
    }
  }
  return block;
}

std::vector<uint8_t> RemoteSyscalls::run_prepared(RemoteAddr code, size_t area_size,
                                                  RemoteAddr block, size_t block_size,
                                                  RemoteAddr stack_top, RemoteAddr first_entry) {
  impl_->scratch_base = code;
  impl_->scratch_size = area_size;
  impl_->run_code(code, first_entry.value() ? first_entry : block, stack_top);
  // The restorer moves the vdso: find the syscall instruction again when next needed. (Batches
  // of run_batch only ask questions; the instruction found once stays valid for the session.)
  impl_->syscall_insn = 0;
  std::vector<uint8_t> out(block_size);
  impl_->read(block, out.data(), out.size());
  return out;
}

}  // namespace cryo::ckpt
