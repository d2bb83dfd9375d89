// The checkpoint engine's public interface. Knows processes, not containers: the container engine
// passes what it knows (a cgroup to freeze, namespaces to create) through the options.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>

namespace cryo::ckpt {

class ImageSink;
struct DumpStats;

struct DumpOptions {
  bool leave_running = false;
  // Without leave_running: whether dump() returns only once every task of the tree has exited
  // (true: the tree's PIDs are free, its memory is given back) or as soon as every task has been
  // sent SIGKILL (false: the images are complete and durable and the tree can never run user code
  // again, but the kernel may still be freeing its memory; `cr dump` does this, and restore waits
  // for PIDs held by exiting tasks). The dying tasks stay traced by the calling process, which is
  // where their death is reported: for a caller that exits right after dump() returns.
  bool wait_for_exit = true;
  bool shell_job = false;
  bool tcp_established = false;
  bool file_locks = false;
  bool ext_unix_sk = false;    // unix sockets whose peer is outside the tree are allowed
  std::string freezer_cgroup;  // cgroup directory (v1 freezer or cgroup2) holding exactly the tree
  // container-cr: links of fds outside the tree (FileDumpOptions::external_files).
  std::set<std::string> external_files;
  // Where the images go (not owned; must outlive dump()). Unset: a DirectorySink on image_dir
  // (files exactly as docs/IMAGE-FORMAT.md says). A dump that fails never calls the sink's
  // finish(); the outputs it had open are aborted.
  ImageSink* sink = nullptr;
  // container-cr: called once every image is written and the sink finished, before the tree is
  // killed (the caller commits the checkpoint there, so that no moment exists where the tree is
  // gone and its images are not committed; when it throws, the tree runs on), or after it is
  // resumed with leave_running.
  std::function<void()> images_complete;
  // Filled just before the sink is finished with the figures known then (the frozen time up to
  // that moment), for a sink that records them (an export's stats-dump).
  DumpStats* stats_at_finish = nullptr;
};

// Measured, in microseconds (Podman's --print-stats names).
struct DumpStats {
  uint64_t freezing_time = 0;
  uint64_t frozen_time = 0;
  uint64_t memdump_time = 0;
  uint64_t memwrite_time = 0;
  uint64_t pages_scanned = 0;
  uint64_t pages_written = 0;
};

// Dumps the tree rooted at `pid` into `image_dir` (or options.sink, when set: image_dir is then
// only used in messages). Throws cryo::Error; on failure the tree runs on as it was.
DumpStats dump(pid_t pid, const std::string& image_dir, const DumpOptions& options);

struct RestoreOptions {
  bool detach = false;  // -d: do not wait for the tree
  bool shell_job = false;
  bool tcp_established = false;
  bool file_locks = false;
  std::string pidfile;
  // The root is created in a new PID namespace as its PID 1 (container restore).
  bool new_pid_namespace = false;
  // Extra clone flags for the root (CLONE_NEWNS, CLONE_NEWUTS...), for callers that set up the
  // namespaces from inside; and a hook run in the root before anything else is restored.
  uint64_t root_clone_flags = 0;
  std::function<void()> in_root_before_restore;
  // container-cr: the root is cloned with CLONE_PARENT (the caller's parent reaps it, e.g. a
  // container monitor that forked a short-lived restore helper).
  bool root_parent_is_caller_parent = false;
  // container-cr: when the images hold the tree's clocks (timens.img), the root gets a new time
  // namespace whose CLOCK_MONOTONIC/CLOCK_BOOTTIME continue from them. Changes the time namespace
  // for the caller's future children (unshare CLONE_NEWTIME).
  bool new_time_namespace = false;
  // container-cr: external fds of the dump (key -> fd of the caller), FileRestoreOptions.
  std::map<std::string, int> inherit_fds;
  // When the images hold an IPC namespace (ipc.h: the tree had one of its own), its objects are
  // recreated in a new IPC namespace that the root inherits (CLONE_NEWIPC in root_clone_flags is
  // then redundant). With this set, the caller has already moved into a fresh IPC namespace made
  // for the tree (a container restore's helper), and the objects are recreated in that one.
  bool ipc_namespace_prepared = false;
  // container-cr: a key of inherit_fds (a terminal): the root, when it leads its session, makes
  // it its controlling terminal before forking its children, who inherit it.
  std::string root_controlling_terminal;
};

struct RestoreStats {
  uint64_t forking_time = 0;
  uint64_t restore_time = 0;
  uint64_t pages_restored = 0;
  uint64_t pages_compared = 0;
  uint64_t pages_skipped_cow = 0;
};

struct RestoreResult {
  pid_t root_pid = -1;  // in the caller's PID namespace
  RestoreStats stats;
};

// Restores the tree in `image_dir`. On failure nothing of the new tree is left and the images are
// untouched.
RestoreResult restore(const std::string& image_dir, const RestoreOptions& options);

}  // namespace cryo::ckpt
