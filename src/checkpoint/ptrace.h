// RAII ownership of ptrace attachments.
#pragma once

#include <signal.h>
#include <sys/types.h>
#include <sys/user.h>

#include <cstdint>
#include <vector>

namespace cryo::ckpt {

// One thread attached with PTRACE_SEIZE and stopped with PTRACE_INTERRUPT. Detaches (letting the
// thread run on) when destroyed unless release()d.
class PtraceAttachment {
 public:
  static PtraceAttachment seize_and_interrupt(pid_t tid, unsigned long options = 0);
  // Seizes and asks for the stop without waiting for it (a thread in a frozen v1 freezer cgroup
  // reaches the stop only once thawed); wait_interrupted() waits for it.
  static PtraceAttachment seize_and_request_stop(pid_t tid, unsigned long options = 0);
  void wait_interrupted() const;
  // Adopts a thread that is already traced by us and stopped (e.g. a restored thread).
  static PtraceAttachment adopt_stopped(pid_t tid);
  PtraceAttachment(PtraceAttachment&& other) noexcept;
  PtraceAttachment& operator=(PtraceAttachment&& other) noexcept;
  PtraceAttachment(const PtraceAttachment&) = delete;
  PtraceAttachment& operator=(const PtraceAttachment&) = delete;
  ~PtraceAttachment();

  pid_t tid() const { return tid_; }
  user_regs_struct get_regs() const;
  void set_regs(const user_regs_struct& regs) const;
  std::vector<uint8_t> get_xstate() const;
  void set_xstate(const std::vector<uint8_t>& xstate) const;
  uint64_t get_sigmask() const;
  void set_sigmask(uint64_t mask) const;
  // Lets the thread run until its next stop and waits for it (used for injected code).
  // Returns the wait status.
  int continue_and_wait(int signal = 0) const;
  int single_step_and_wait() const;
  // Waits for the next stop of this thread (any kind); returns the wait status. Throws if the
  // thread exited.
  int wait_stop() const;
  // Stops a running (e.g. just continued) thread again and waits for the stop.
  void interrupt_and_wait() const;
  void set_options(unsigned long options) const;
  // Signals queued for this thread (shared = the process-wide queue), without dequeuing them.
  std::vector<siginfo_t> peek_pending_signals(bool shared) const;
  void detach();
  // Gives up ownership without detaching (e.g. the thread is being killed).
  void release() { tid_ = -1; }

 private:
  explicit PtraceAttachment(pid_t tid) : tid_(tid) {}
  pid_t tid_ = -1;
};

}  // namespace cryo::ckpt
