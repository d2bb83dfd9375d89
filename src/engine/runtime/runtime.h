// The container runtime: cryo creates containers itself (no runc/crun) from the OCI spec.
//
// Starting a container is two separate steps so that restore can reuse the first:
//   prepare_sandbox()          namespaces joined, rootfs (overlayfs) mounted, pivot_root, /proc,
//                              /sys, /dev, bind mounts, masked/readonly paths, hostname
//   exec_container_process()   terminal, rlimits, user, capabilities, cwd, env, exec
// A restore clones its root with RestoreOptions::root_clone_flags = sandbox_clone_flags(spec) and
// calls prepare_sandbox(spec) in RestoreOptions::in_root_before_restore instead of exec'ing.
#pragma once

#include <sys/types.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "engine/runtime/cgroup.h"

namespace cryo::engine {

// The standard streams of a container process (ignored when process.terminal is set: the process
// then gets a new pty of the container's devpts as stdin/out/err and controlling terminal).
struct ProcessStdio {
  int stdin_fd = -1;  // -1: /dev/null
  int stdout_fd = -1;
  int stderr_fd = -1;
};

// Clone flags (CLONE_NEW*) for the namespaces the spec asks to be created, except the cgroup
// namespace (entered after the move into the container's cgroup) and time (see
// enter_new_time_namespace_for_children).
int sandbox_clone_flags(const nlohmann::json& spec);

// The calling process's future children get a new time namespace, clock offsets 0 for now; a
// restore writes its offsets (/proc/self/timens_offsets) before its first child instead.
void enter_new_time_namespace_for_children();

// Runs in the container's first process, already in the new namespaces of sandbox_clone_flags.
// Throws cryo::Error.
void prepare_sandbox(const nlohmann::json& spec);

// In a process already in the container's cgroup and in the new namespaces of
// sandbox_clone_flags: a cgroup namespace rooted at that cgroup, then prepare_sandbox. Used by the
// start of a container and by its restore.
void enter_sandbox(const nlohmann::json& spec);

// For a process that became PID 1 of a new PID namespace after prepare_sandbox ran (a restore):
// a /proc of that namespace replaces the one mounted, with the spec's masked and read-only paths
// under /proc applied again.
void remount_proc(const nlohmann::json& spec);

// Sets up the process of `process` (OCI spec "process") and execs it. Never returns: a failure is
// reported through `error_fd` (exit code 125/126/127 and a message, read by
// read_exec_failure) and the process exits. `console_socket` receives the pty master when
// process.terminal is set.
[[noreturn]] void exec_container_process(const nlohmann::json& process, const ProcessStdio& stdio,
                                         int error_fd, int console_socket);

struct SpawnedProcess {
  pid_t pid = -1;
  UniqueFd pidfd;
  UniqueFd console_master;  // pty master when the process has a terminal
};

// Clones the container's init from the spec, moves it into `cgroup`, prepares the sandbox and
// execs. Returns once the exec has happened; throws ExitCodeError (125/126/127) when it could not,
// with nothing left of the child.
SpawnedProcess spawn_container_init(const nlohmann::json& spec, const ContainerCgroup& cgroup,
                                    const ProcessStdio& stdio);

// Starts `process` inside the running container whose init is `init_pid`: joins its cgroup and
// all its namespaces, then execs. The returned pid is a helper in the caller's PID namespace that
// exits with the process's exit status (128+signal when killed).
SpawnedProcess spawn_exec_process(pid_t init_pid, const std::vector<std::string>& cgroup_dirs,
                                  const nlohmann::json& process, const ProcessStdio& stdio);

}  // namespace cryo::engine
