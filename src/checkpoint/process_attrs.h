// Per-process and per-thread attributes other than memory, registers and files: signal handlers,
// sigaltstack, itimers and POSIX timers, personality, rlimits, credentials (uids, gids, groups,
// capabilities, securebits), no_new_privs, seccomp filters, dumpable, pdeath signal, comm, cwd,
// root, umask, THP-disable, child subreaper.
#pragma once

#include <sys/types.h>

#include <nlohmann/json.hpp>

#include "checkpoint/remote_syscall.h"
#include "checkpoint/syscall_batch.h"

namespace cryo::ckpt {

using json = nlohmann::json;

// Dump, with the process frozen; `main_thread` runs syscalls in the thread-group leader.
json dump_process_attrs(pid_t pid, RemoteSyscalls& main_thread);
// Dump of what each thread owns itself (sigaltstack, pdeath signal...); `thread` runs in it.
json dump_thread_attrs(pid_t tid, RemoteSyscalls& thread);

// Restore, in the restoring process before its address space is rebuilt (native calls):
// rlimits, sigactions (with all signals blocked), personality, umask, cwd, root, comm...
void restore_process_attrs_early(const json& attrs);
// Appended to the restorer's batch after memory is rebuilt: credentials, itimers and POSIX timers,
// and seccomp filters last.
void append_late_process_restore(const json& attrs, SyscallBatch& batch);
// What each thread must do itself, appended to that thread's own batch.
void append_thread_restore(const json& thread_attrs, SyscallBatch& batch);

}  // namespace cryo::ckpt
