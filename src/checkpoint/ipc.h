// IPC namespaces: a tree whose root lives in an IPC namespace of its own (a container's) takes
// the namespace's contents along: System V shared memory segments (with their contents),
// semaphore sets, message queues, POSIX message queues and the namespace's IPC sysctls. The
// restore recreates them, with the same ids, in a new IPC namespace before any process of the
// tree exists; processes then re-attach their SysV segments (VmaKind::kSysvShm) and reopen
// their message queue fds (file_kinds/mqueue.cc).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/memory.h"
#include "common/unique_fd.h"

namespace cryo::ckpt {

// Image of the namespace's contents; present only when the tree had an IPC namespace of its own.
inline constexpr const char* kIpcNamespaceImage = "ipcns.img";

// True when `pid` is in another IPC namespace than the caller.
bool has_own_ipc_namespace(pid_t pid);

// The processes of `pids` that have a System V semaphore undo list: they made a semop with
// SEM_UNDO (the kernel allocates the list then and keeps it, even once its adjustments add up to
// zero). Found with kcmp(KCMP_SYSVSEM) against a child forked for the purpose, which has none: the
// caller itself may have one, since every thread made with CLONE_SYSVSEM (as pthread_create does)
// gives its process a list. The values in a list cannot be read from outside the process (no
// /proc file, semctl command or ptrace request shows them).
std::vector<pid_t> processes_with_semaphore_undo_lists(const std::vector<pid_t>& pids);

// Dumps the IPC namespace of `root` into `sink` when it is not the caller's; every pid of
// `tree` must share it (nested IPC namespaces are refused). Queued POSIX messages are read and put
// back in the same order. Call with the tree frozen.
void dump_ipc_namespace(pid_t root, const std::vector<pid_t>& tree, ImageSink& sink);

// The restore side. create() does nothing (returns null) when the images hold no IPC namespace.
// Otherwise the calling thread enters a new IPC namespace (or, with `use_current_namespace`, keeps
// the fresh one its caller made for the tree) and the namespace's contents are recreated in it;
// the tree's root, cloned afterwards, inherits it. Destroying the object returns the calling
// thread to the namespace it was in.
class IpcNamespaceRestore {
 public:
  static std::unique_ptr<IpcNamespaceRestore> create(const std::string& image_dir,
                                                     bool use_current_namespace);
  ~IpcNamespaceRestore();
  IpcNamespaceRestore(const IpcNamespaceRestore&) = delete;
  IpcNamespaceRestore& operator=(const IpcNamespaceRestore&) = delete;

  // Once every process has re-attached its segments: segments that were already removed
  // (IPC_RMID while attached) are removed again, so that they vanish with their last detach.
  void after_processes_attached();

 private:
  IpcNamespaceRestore() = default;
  UniqueFd original_namespace_;  // invalid when the caller's namespace was kept
  std::vector<int> removed_segments_;
};

// Restorer hook (restorer.cc): the syscalls that re-attach a System V shared memory segment in
// place of the dumped VMAs vmas[first..*last] (one attachment: the VMAs from `first` on that map
// the same segment contiguously, offsets following each other; *last is set to the last one).
// Run in the restoring process, which must be in the segment's namespace already: it checks that
// the segment exists with the dumped key and is large enough.
struct SysvAttachCall {
  std::string what;
  long nr;
  uint64_t args[3];
  bool check_result;  // the call must return args[1] (shmat's address)
};
std::vector<SysvAttachCall> sysv_shm_attach_calls(const std::vector<Vma>& vmas, size_t first,
                                                  size_t* last);

}  // namespace cryo::ckpt
