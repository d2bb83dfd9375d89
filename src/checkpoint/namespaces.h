// PID and time namespaces of a dumped tree (a container's): the dump keys its images by the PIDs
// the tree sees in its own PID namespace and records the tree's clocks; the restore recreates both
// namespaces so that PIDs and CLOCK_MONOTONIC/CLOCK_BOOTTIME continue where they were.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

namespace cryo::ckpt {

// The PID of `pid` (given in the caller's namespace) in its innermost PID namespace: the last
// field of NSpid in /proc/PID/status.
pid_t innermost_pid(pid_t pid);

// True when `root` is PID 1 of a PID namespace the caller is not in (a container's init).
bool is_init_of_other_pid_namespace(pid_t root);

// Caller's PIDs -> image PIDs. Identity when the tree shares the dumper's PID namespace; PIDs
// outside the tree (the root's parent) become 0 when the tree has a namespace of its own.
class PidTranslation {
 public:
  PidTranslation() = default;
  explicit PidTranslation(bool own_namespace) : own_namespace_(own_namespace) {}
  bool own_namespace() const { return own_namespace_; }
  // Records the pair for a process or thread of the tree.
  void add(pid_t host_pid);
  pid_t to_image(pid_t host_pid) const;

 private:
  bool own_namespace_ = false;
  std::map<pid_t, pid_t> to_image_;
};

// The CLOCK_MONOTONIC and CLOCK_BOOTTIME that process `pid` reads now (the host clock plus the
// offsets of its time namespace), in nanoseconds.
struct NamespaceClocks {
  int64_t monotonic_ns = 0;
  int64_t boottime_ns = 0;
};
NamespaceClocks read_clocks_of(pid_t pid);
nlohmann::json to_json(const NamespaceClocks& clocks);
NamespaceClocks namespace_clocks_from_json(const nlohmann::json& j);

// The caller's future children get a new time namespace whose clocks read `clocks` now (offsets
// written to /proc/self/timens_offsets before any child exists). The caller's own clocks do not
// change.
void enter_time_namespace_for_children_at(const NamespaceClocks& clocks);

// Image holding the tree's clocks at freeze time (written when the tree has its own time
// namespace).
inline constexpr const char* kTimeNamespaceImage = "timens.img";

}  // namespace cryo::ckpt
