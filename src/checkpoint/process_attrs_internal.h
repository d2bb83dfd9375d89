// Pieces of the process-attribute dump and restore shared by signals.cc, timers.cc, creds.cc,
// seccomp.cc and process_attrs.cc. Not part of the engine's interface; unit tests use it to run
// batches in-process.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "checkpoint/syscall_batch.h"

namespace cryo::ckpt::attrs {

using json = nlohmann::json;

// Runs a batch inside the process being dumped and returns the block as it is after the run
// (RemoteSyscalls::run_batch in the engine; an in-process runner in unit tests).
using BatchRunner = std::function<std::vector<uint8_t>(const SyscallBatch&)>;

// The block of a batch after it ran: results and outputs.
class BatchOutput {
 public:
  BatchOutput(const SyscallBatch& batch, const std::vector<uint8_t>& block)
      : batch_(batch), block_(block) {}
  int64_t result(size_t index) const { return SyscallBatch::result_of(block_, index); }
  // Throws SysError naming the syscall (its batch description) when it failed.
  int64_t checked_result(size_t index) const;
  template <typename T>
  T read(BatchArg ref) const {
    T value;
    read_bytes(ref, &value, sizeof value);
    return value;
  }
  void read_bytes(BatchArg ref, void* out, size_t size) const;

 private:
  const SyscallBatch& batch_;
  const std::vector<uint8_t>& block_;
};

// Queries of one dump batch: each concern adds its syscalls and a parser that reads their
// outputs once the whole batch has run (one round trip into the target for all of them).
class DumpQueries {
 public:
  SyscallBatch& batch() { return batch_; }
  // Adds a query syscall; a failing query does not stop the others (each parser checks its own).
  size_t add(long nr, std::initializer_list<BatchArg> args, std::string description);
  void then(std::function<void(const BatchOutput&)> parser) {
    parsers_.push_back(std::move(parser));
  }
  void run(const BatchRunner& runner);

 private:
  SyscallBatch batch_;
  std::vector<std::function<void(const BatchOutput&)>> parsers_;
};

// Adds a restore syscall that stops the batch when it fails, with a description for the error.
size_t add_step(SyscallBatch& batch, long nr, std::initializer_list<BatchArg> args,
                std::string description);

// /proc/PID/task/TID/status as key -> value (trimmed).
std::map<std::string, std::string> read_status(pid_t pid, pid_t tid);
// The id of `tid` in the innermost PID namespace of the task (last NSpid field).
pid_t innermost_tid(pid_t pid, pid_t tid);

// signals.cc
void queue_sigactions_dump(DumpQueries& queries, json& out);
void queue_sigaltstack_dump(DumpQueries& queries, json& out);
void restore_sigactions(const json& sigactions);
void append_sigaltstack_restore(const json& sigaltstack, SyscallBatch& batch);

// timers.cc
struct ProcTimer {
  int id = 0;
  int signal = 0;
  uint64_t sigev_value = 0;
  int notify = 0;        // SIGEV_SIGNAL/SIGEV_NONE, | SIGEV_THREAD_ID when aimed at one thread
  pid_t notify_pid = 0;  // as /proc shows it (the reader's PID namespace)
  int clock = 0;
};
std::vector<ProcTimer> parse_proc_timers(const std::string& text);
void queue_itimers_dump(DumpQueries& queries, json& out);
void queue_posix_timers_dump(pid_t pid, DumpQueries& queries, json& out);
void append_timers_restore(const json& attrs, SyscallBatch& batch);

// creds.cc
void queue_creds_dump(pid_t pid, pid_t tid, DumpQueries& queries, json& out);
// Everything of the credentials but the final capset (see append_final_capset): groups, gids,
// uids, bounding set, ambient set, securebits. Leaves the effective set at the caller's
// permitted set so that what follows (prctl, seccomp) keeps its privileges.
void append_creds_restore(const json& creds, SyscallBatch& batch);
void append_final_capset(const json& creds, SyscallBatch& batch);

// seccomp.cc: read from outside; `tid` must be ptrace-stopped by the caller when mode is filter.
json dump_seccomp(pid_t pid, pid_t tid);
void append_seccomp_restore(const json& seccomp, SyscallBatch& batch);

// process_attrs.cc
// Sets the rlimits of the calling process; a hard limit above ours is clamped (with a warning).
void restore_rlimits(const json& rlimits);
// Dumps run with an explicit runner (the public functions pass
// RemoteSyscalls::run_batch).
json dump_process_attrs_with(pid_t pid, const BatchRunner& runner);
json dump_thread_attrs_with(pid_t pid, pid_t tid, const BatchRunner& runner);

// Linux capability numbers known to this kernel (CAP_LAST_CAP at run time).
int last_capability();

}  // namespace cryo::ckpt::attrs
