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

// Dump, with the process frozen; `main_thread` runs syscalls in the thread-group leader. The
// result includes the leader's own thread attributes (under "thread").
json dump_process_attrs(pid_t pid, RemoteSyscalls& main_thread);
// Dump of what each thread owns itself (comm, sigaltstack, pdeath signal, timer slack,
// credentials, no_new_privs, seccomp); `thread` runs in it. For the thread-group leader it returns
// {"leader": true} at no cost: the leader's are part of dump_process_attrs.
json dump_thread_attrs(pid_t tid, RemoteSyscalls& thread);

// Restore, in the restoring process before its address space is rebuilt (native calls):
// rlimits, personality, chroot and chdir, umask, the leader's comm and timer slack, child
// subreaper, THP disable, and sigactions last. Blocks all signals first (handlers point into
// memory not restored yet); the restorer never unblocks them, the coordinator sets the dumped
// masks. Call it after the process's zombie children have been created (SIGCHLD may become
// SIG_IGN) and after opening by path what the restorer needs (the root may change).
void restore_process_attrs_early(const json& attrs);
// Appended to the leader's restorer batch after memory is rebuilt and after the other threads
// were created: itimers and POSIX timers (thread-directed ones need their thread), then the
// leader's thread part (as append_thread_restore), with dumpable after the credentials and seccomp
// filters last.
void append_late_process_restore(const json& attrs, SyscallBatch& batch);
// What a thread other than the leader does itself, appended to that thread's own batch: comm,
// timer slack, sigaltstack, credentials, pdeath signal, no_new_privs, seccomp filters last.
// Credentials are per thread in the kernel: threads created before the leader's batch set its
// credentials keep the restorer's until they run this. Appends nothing for {"leader": true}.
void append_thread_restore(const json& thread_attrs, SyscallBatch& batch);

}  // namespace cryo::ckpt
