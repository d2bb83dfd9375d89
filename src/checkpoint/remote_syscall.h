// Running syscalls inside a ptrace-stopped thread of another process (rr's AutoRemoteSyscalls is
// the model). The thread's registers are saved on construction and put back on destruction, so the
// thread resumes exactly where it was.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "checkpoint/ptrace.h"
#include "checkpoint/remote_addr.h"
#include "checkpoint/syscall_batch.h"

namespace cryo::ckpt {

class RemoteSyscalls {
 public:
  explicit RemoteSyscalls(PtraceAttachment& thread);
  ~RemoteSyscalls();
  RemoteSyscalls(const RemoteSyscalls&) = delete;
  RemoteSyscalls& operator=(const RemoteSyscalls&) = delete;

  pid_t tid() const;
  // One syscall through a `syscall` instruction of the target (~30 µs). Returns the raw kernel
  // result (-errno on failure); never throws for a failing syscall.
  long syscall(long nr, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0, uint64_t a4 = 0,
               uint64_t a5 = 0, uint64_t a6 = 0);
  // Starts a syscall without arguments and returns without waiting for it; its result is
  // dropped. The session's next call, or its end, waits for it. What it is for: the first return
  // to user mode of a process, after other processes ran, costs this VM's hypervisor 10-20 ms per
  // GiB of the process (its page tables are shadowed anew); started early, it goes on while the
  // caller works.
  void start_unawaited_syscall(long nr);
  // Waits for the syscall start_unawaited_syscall started, if any: the thread is back in its
  // ptrace stop. Any ptrace request on the thread made outside this session (seccomp filters,
  // registers) needs that stop; while the syscall runs, the kernel answers ESRCH.
  void wait_until_stopped();
  // Scratch memory in the target, mapped on first use and unmapped on destruction.
  RemoteAddr scratch(size_t size);
  void write_memory(RemoteAddr addr, const void* data, size_t size);
  void read_memory(RemoteAddr addr, void* out, size_t size);
  // Runs all syscalls of the batch inside the target in one stop. Returns the serialized block as
  // it is after the run: read results with SyscallBatch::result_of, outputs at offset_of(ref).
  std::vector<uint8_t> run_batch(const SyscallBatch& batch);
  // Runs a blob and batch the target placed in its own memory (the restorer) and returns the
  // block after the run. The area [code, code + area_size) becomes this session's scratch area:
  // it is unmapped by finish(). `first_entry` (default: the block's first) lets a batch with a
  // pause (SyscallBatch::add_pause) go on after it.
  std::vector<uint8_t> run_prepared(RemoteAddr code, size_t area_size, RemoteAddr block,
                                    size_t block_size, RemoteAddr stack_top,
                                    RemoteAddr first_entry = RemoteAddr());
  // Places the scratch area (blob + batch) at exactly `addr` when it is first mapped (restore:
  // an address free in both the current and the dumped layout). Call before any use.
  void place_scratch_at(RemoteAddr addr);
  // Threads created by the last run_batch (clone3 under PTRACE_O_TRACECLONE); each is stopped.
  const std::vector<pid_t>& new_threads() const;
  // Registers the thread had when this session began (restored on destruction).
  const user_regs_struct& saved_regs() const;
  // Frees the scratch area and puts the saved registers back now instead of on destruction.
  // `keep_registers`: leave the registers as they are (the caller sets its own afterwards).
  void finish(bool keep_registers = false);

 private:
  struct Impl;
  Impl* impl_;
};

}  // namespace cryo::ckpt
