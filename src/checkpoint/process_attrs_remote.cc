// The engine's entry points of the attribute dump: the batch runs in the target through
// RemoteSyscalls. Kept apart from process_attrs.cc so that the rest links without it.
#include "checkpoint/process_attrs.h"
#include "checkpoint/process_attrs_internal.h"
#include "common/error.h"
#include "common/fs.h"

namespace cryo::ckpt {

json dump_process_attrs(pid_t pid, RemoteSyscalls& main_thread) {
  return attrs::dump_process_attrs_with(
      pid, [&](const SyscallBatch& batch) { return main_thread.run_batch(batch); });
}

json dump_thread_attrs(pid_t tid, RemoteSyscalls& thread) {
  // /proc/TID/task/TID names the thread whichever process it belongs to.
  return attrs::dump_thread_attrs_with(
      tid, tid, [&](const SyscallBatch& batch) { return thread.run_batch(batch); });
}

}  // namespace cryo::ckpt
