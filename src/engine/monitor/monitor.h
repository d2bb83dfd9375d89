// The container monitor (like conmon): one small daemon per running container, a re-exec of the
// cryo binary (`cryo __monitor ...`). It starts the container's init (it is its parent and a child
// subreaper), holds the pty master or the stdio pipes, writes the log (k8s-file format), serves
// one attached client, records the exit code and finished time, and cleans up (cgroup, network,
// and the container itself for --rm) when the init exits. It outlives the CLI that started it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "engine/state/paths.h"

namespace cryo::engine {

inline constexpr const char* kMonitorCommand = "__monitor";

// Frames on the attach connection: [type u8][size u32 little endian][payload].
enum class AttachFrame : uint8_t {
  kStdin = 0,       // client -> monitor
  kStdout = 1,      // monitor -> client
  kStderr = 2,      // monitor -> client
  kExit = 3,        // monitor -> client: payload is the exit code as decimal text
  kStdinClose = 4,  // client -> monitor
  kResize = 5,      // client -> monitor: "ROWS COLS"
};
void write_attach_frame(int fd, AttachFrame type, const void* data, size_t size);

struct MonitorStart {
  pid_t container_pid = -1;
  UniqueFd attach;            // the client end of the attach connection, when asked for
  std::string restore_stats;  // container-cr: restore mode, the restore's statistics (JSON)
};

// How the monitor process comes to life. kFork runs the monitor code in the daemonized fork of
// the CLI (no exec: the start of a container pays no second program start, which costs tens of
// ms on a loaded machine); kExec re-executes the binary as `cryo __monitor ...` (a fresh process
// image, for callers that are themselves not a plain CLI, e.g. multi-threaded ones).
enum class MonitorLaunch { kFork, kExec };

// Starts the monitor of container `id` (daemonized: setsid + double fork) and waits until the
// container's init has exec'd. Throws the init's failure as ExitCodeError (125/126/127); nothing of
// the container is running then. The caller must be single-threaded for kFork.
// container-cr: with `restore`, the monitor restores the container's checkpoint
// (engine/checkpoint) instead of starting its init.
MonitorStart start_monitor(const StorePaths& paths, const std::string& id, bool attach,
                           const std::string& log_level,
                           MonitorLaunch launch = MonitorLaunch::kFork, bool restore = false);

// `cryo __monitor` entry point: argv after the command name. Returns the process exit code.
int monitor_main(const std::vector<std::string>& args);

}  // namespace cryo::engine
