// Checkpoint and restore of whole containers in place (`cryo container checkpoint|restore`): the
// container's processes are dumped by the checkpoint engine into <container dir>/checkpoint and
// end; a restore rebuilds the same container (network with the same IP, MAC and ports, cgroup,
// mounts on the same upper dir, PID and time namespaces) under a new monitor and continues the
// processes where they were.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/image/image_sink.h"
#include "engine/container/container.h"
#include "engine/runtime/runtime.h"
#include "engine/state/paths.h"

namespace cryo::engine {

struct ContainerCheckpointOptions {
  bool leave_running = false;  // -R
  bool keep = false;           // -k: keep the engine's log of the dump (dump.log) as well
  bool tcp_established = false;
  bool file_locks = false;
  // checkpoint -e: the images (and container.json) go to this sink (an archive being written)
  // instead of <container dir>/checkpoint; not owned.
  ckpt::ImageSink* sink = nullptr;
  // checkpoint -e: the dump's statistics as known when the sink is finished (for its stats-dump).
  ckpt::DumpStats* stats_at_finish = nullptr;
};

struct ContainerCheckpointResult {
  std::string id;
  uint64_t runtime_checkpoint_duration_us = 0;
  ckpt::DumpStats stats;
};

// The container must be running. Throws ExitCodeError (Podman's messages); a failed checkpoint
// leaves the container running as before and no checkpoint directory.
ContainerCheckpointResult checkpoint_container(const StorePaths& paths, const std::string& id,
                                               const ContainerCheckpointOptions& options);

struct ContainerRestoreOptions {
  bool keep = false;
  bool tcp_established = false;
  bool file_locks = false;
  std::string log_level = "warn";
};

struct ContainerRestoreResult {
  std::string id;
  uint64_t runtime_restore_duration_us = 0;
  ckpt::RestoreStats stats;
};

// The container must be checkpointed and not running. A failed restore leaves nothing running
// and keeps the checkpoint.
ContainerRestoreResult restore_container(const StorePaths& paths, const std::string& id,
                                         const ContainerRestoreOptions& options);

// Throws Podman's error (exit 125) unless `record` can be checkpointed: it runs, and one started
// with --rm is only checkpointed with --leave-running (or, in place, not at all). Export checks
// it before it creates the archive file.
void require_checkpointable(const ContainerRecord& record, bool leave_running, bool exporting);

// <container dir>/checkpoint
std::string checkpoint_dir(const StorePaths& paths, const std::string& id);

// For the monitor of a restored container, before it reports the restore done: unless the restore
// keeps its checkpoint (--keep), moves the checkpoint directory aside (one rename) and returns its
// new path, which the monitor removes after reporting, off the restore's critical path (removing
// a checkpoint's files costs tens of ms on some file systems). A checkpoint made meanwhile goes
// to the usual place; `rm` of the container removes a leftover with the container's directory.
std::string retire_restored_checkpoint(const StorePaths& paths, const std::string& id);

// For the monitor in restore mode: forks a helper that joins `cgroup`, builds the sandbox of
// `spec` and restores the checkpoint of container `id` with its init as a child of the caller
// (CLONE_PARENT). `stdio` are the caller's new ends for the container's dumped stdio pipes; with
// a terminal, the returned console_master is the master of the new console. `stats_json` gets
// the restore statistics. `mount_namespace` gets the helper's mount namespace, which the caller
// keeps while the container runs (the restored files' mounts stay attached to it). Throws
// cryo::Error with nothing of the container left running.
SpawnedProcess restore_container_init(const StorePaths& paths, const std::string& id,
                                      const nlohmann::json& spec, const ContainerCgroup& cgroup,
                                      const ProcessStdio& stdio, bool terminal,
                                      nlohmann::json* stats_json, UniqueFd* mount_namespace);

}  // namespace cryo::engine
