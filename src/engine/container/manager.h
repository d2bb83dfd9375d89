// Container lifecycle operations (create, start, stop, kill, remove, wait, exec) on top of the
// record store, the image store, the network manager, the runtime and the monitor. The CLI only
// parses arguments and prints; the checkpoint integration uses the same operations.
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "engine/container/container.h"
#include "engine/container/oci_spec.h"
#include "engine/monitor/monitor.h"
#include "engine/runtime/runtime.h"
#include "engine/state/paths.h"

namespace cryo::engine {

struct CreateRequest {
  std::string image;
  std::string name;
  std::vector<std::string> command;       // what follows the image on the command line
  std::optional<std::string> entrypoint;  // --entrypoint: a word or a JSON array
  std::vector<std::string> env;           // -e and --env-file entries: KEY=value or KEY
  std::string workdir, user, hostname;
  bool tty = false, interactive = false, auto_remove = false;
  std::vector<std::string> volumes;  // -v host:ctr[:ro] or name:ctr[:ro]
  std::string network = "bridge";
  std::string ip, mac;
  std::vector<std::string> publish;  // -p specs
  int64_t memory_limit = 0;
  int64_t pids_limit = 0;
  std::map<std::string, std::string> labels;
  std::optional<unsigned> stop_timeout;
  std::optional<int> stop_signal;  // --stop-signal; otherwise the image's StopSignal, or SIGTERM
};

struct ExecRequest {
  std::vector<std::string> command;
  std::vector<std::string> env;
  std::string workdir, user;
  bool tty = false;
  ProcessStdio stdio;
};

// A signal by name ("TERM", "SIGTERM", case-insensitive) or number; ExitCodeError(125) otherwise.
int parse_signal(const std::string& text);

// Creates the directories of container `record` (overlay upper, work and mount point, userdata)
// and returns the spec inputs that point at them, on top of the image `layers`.
SpecInputs make_container_dirs(const StorePaths& paths, const ContainerRecord& record,
                               const std::vector<std::string>& layers, const ResolvedUser& user);
// Parses a memory size as podman does: "512m", "1g", "1048576", "100k", "1.5g".
int64_t parse_memory_size(const std::string& text);
// Parses -v: "host:ctr[:ro|rw]" (host path absolute) or "name:ctr[:opts]" (named volume).
MountRequest parse_volume(const std::string& spec, const StorePaths& paths);

class ContainerManager {
 public:
  explicit ContainerManager(StorePaths paths);
  const ContainerStore& store() const { return store_; }

  ContainerRecord create(const CreateRequest& request);
  // Starts a created or exited container: network, OCI spec, monitor. With `attach` the returned
  // connection carries the container's output (and input for -i).
  MonitorStart start(const std::string& id, bool attach, const std::string& log_level);
  // Stop signal, then SIGKILL after `timeout` seconds; returns when the monitor has recorded the
  // exit and cleaned up.
  void stop(const std::string& id, std::optional<unsigned> timeout);
  void kill(const std::string& id, int signal);
  // rm: a running container needs `force` (then it is stopped with `timeout`).
  void remove(const std::string& id, bool force, std::optional<unsigned> timeout);
  // Blocks until the container is not running; returns its exit code.
  int wait(const std::string& id);
  SpawnedProcess exec(const std::string& id, const ExecRequest& request);

  // The record, with a running container whose monitor died marked exited.
  ContainerRecord load(const std::string& id);
  std::vector<ContainerRecord> list();

  // Network and cgroup of a container that no longer runs: torn down. Idempotent.
  void release_resources(const std::string& id);
  // Records the exit of a container's init (by its monitor, after the cgroup is gone): network
  // torn down (kept when an in-place checkpoint asked for it: ContainerRecord::network_kept),
  // state exited, exit code and time, in one write of the record.
  void record_exit(const std::string& id, int exit_code, int64_t finished_ns);
  // Deletes a container that is not running (resources released first).
  void remove_stopped(const std::string& id);

 private:
  ContainerRecord reconcile(ContainerRecord record);
  // release_resources with the container's lock held; `save` writes the record afterwards.
  // `keep_checkpointed_network`: the network of a record marked network_kept stays.
  void release_resources_locked(ContainerRecord& record, bool save = true,
                                bool keep_checkpointed_network = false);
  // Waits up to `timeout_ms` (-1: forever) for the monitor of `record` to exit.
  bool wait_for_monitor(const ContainerRecord& record, int timeout_ms);

  StorePaths paths_;
  ContainerStore store_;
};

}  // namespace cryo::engine
