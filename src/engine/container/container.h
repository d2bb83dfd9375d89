// Container records: what a container is (container.json under <root>/containers/<id>/), how it is
// found (full ID, unique ID prefix, name) and how concurrent cryo processes agree on it (flock).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "engine/state/paths.h"

namespace cryo::engine {

enum class ContainerState { kCreated, kRunning, kPaused, kStopped, kExited };
std::string to_string(ContainerState state);
ContainerState container_state_from_string(const std::string& name);

// A -v/--volume or --mount: `source` is a host path; for a named volume `volume_name` is set and
// `source` is its _data directory.
struct MountRequest {
  std::string source;
  std::string destination;
  std::string volume_name;
  bool read_only = false;
};

// -p/--publish as given; the network manager turns it into NAT rules.
struct PublishedPort {
  std::string host_ip;
  uint16_t host_port = 0;
  uint16_t container_port = 0;
  std::string protocol = "tcp";
};

// What the user asked for at create time (podman's "Config" + "HostConfig").
struct ContainerConfig {
  std::vector<std::string> entrypoint;  // effective entrypoint (image's unless --entrypoint)
  std::vector<std::string> cmd;         // effective command (image's unless given)
  std::vector<std::string> env;         // "KEY=value", complete: image + defaults + user
  std::string working_dir = "/";
  std::string user;  // as given (-u) or from the image; resolved into the OCI spec
  std::string hostname;
  bool tty = false;
  bool interactive = false;
  bool auto_remove = false;
  std::vector<MountRequest> mounts;
  std::string network_mode = "bridge";  // bridge | host | none
  std::string static_ip;
  std::string static_mac;
  std::vector<PublishedPort> ports;
  int64_t memory_limit = 0;  // bytes, 0 = unlimited
  int64_t pids_limit = 0;    // 0 = unlimited
  std::map<std::string, std::string> labels;
  unsigned stop_timeout = 10;
  int stop_signal = 15;
};

struct ContainerRecord {
  std::string id;  // 64 hex
  std::string name;
  std::string image_id;
  std::string image_name;
  int64_t created_ns = 0;  // unix time in nanoseconds
  ContainerConfig config;

  ContainerState state = ContainerState::kCreated;
  pid_t pid = 0;          // the container's init in the host PID namespace, 0 when not running
  pid_t monitor_pid = 0;  // its monitor, 0 when none
  // Start time of the monitor (/proc/PID/stat field 22): tells it from a later process that got
  // the same PID.
  uint64_t monitor_start_time = 0;
  int exit_code = 0;
  bool oom_killed = false;
  int64_t started_ns = 0;
  int64_t finished_ns = 0;
  // Set by the network manager at start (NetworkStatus as JSON); null when there is none.
  nlohmann::json network_status;

  // Reserved for checkpoint/restore.
  bool checkpointed = false;
  int64_t checkpointed_ns = 0;
  bool restored = false;
  int64_t restored_ns = 0;
  // An in-place checkpoint keeps the container's network (netns, veth, addresses, NAT rules and
  // its port records) and its (empty, thawed) cgroup for the restore: the monitor that sees the
  // dumped tree die leaves them, the restore takes them over (or tears the network down and
  // builds it again when it is incomplete), `rm` removes them. Cleared as soon as a restore or
  // start begins.
  bool network_kept = false;

  std::vector<std::string> full_command() const;  // entrypoint + cmd
};

nlohmann::json to_json(const ContainerRecord& record);
ContainerRecord container_record_from_json(const nlohmann::json& j);

// flock(2) on a lock file, released on destruction.
class FileLock {
 public:
  FileLock() = default;
  static FileLock exclusive(const std::string& path);
  FileLock(FileLock&&) = default;
  FileLock& operator=(FileLock&&) = default;

 private:
  UniqueFd fd_;
};

int64_t now_ns();
// Start time of a process in clock ticks since boot (/proc/PID/stat field 22); 0 when it is gone.
uint64_t process_start_time(pid_t pid);
// "2026-11-22T20:00:00.123456789Z"-style RFC 3339 with nanoseconds, in UTC ("+00:00" suffix).
std::string format_rfc3339_ns(int64_t ns);
// Podman-style random name: adjective_surname.
std::string generate_container_name();
bool valid_container_name(const std::string& name);

class ContainerStore {
 public:
  explicit ContainerStore(StorePaths paths);
  const StorePaths& paths() const { return paths_; }

  std::string record_path(const std::string& id) const;
  std::string spec_path(const std::string& id) const;  // OCI config.json
  std::string log_path(const std::string& id) const;
  std::string exit_file_path(const std::string& id) const;

  // Allocates ID and name (under the global name lock, Podman's error when the name is taken),
  // creates the directories, lets `complete` fill in what depends on the ID (and write files into
  // the new directories), and writes the record once. On failure nothing is left.
  ContainerRecord create(ContainerRecord record,
                         const std::function<void(ContainerRecord&)>& complete = nullptr);
  // Crash-safe: readers see the old or the new record, never a torn one (temp file + rename).
  // `durable` also fsyncs first, for what must survive a power loss (the container's config);
  // live state (network status, PIDs) is meaningless after a reboot and skips that cost.
  void save(const ContainerRecord& record, bool durable = true) const;
  ContainerRecord load(const std::string& id) const;
  std::optional<ContainerRecord> try_load(const std::string& id) const;
  // Full ID, unique ID prefix or name. ExitCodeError(125) "no container with name or ID ..."
  std::string resolve_id(const std::string& name_or_id) const;
  std::vector<ContainerRecord> list() const;
  // Lock held while a container's record is read, changed and written.
  FileLock lock(const std::string& id) const;
  // Removes the record and the container's directories (persistent and runtime).
  void remove(const std::string& id) const;
  // Removes what creates killed midway left: container directories without a record.
  void remove_incomplete() const;

 private:
  void remove_incomplete_locked() const;
  StorePaths paths_;
};

}  // namespace cryo::engine
