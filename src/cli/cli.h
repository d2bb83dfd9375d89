// The command line: parses Podman-compatible arguments and calls the engines. Each command group
// lives in its own file and registers its subcommands here.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace cryo::cli {

// Options every command sees (podman's global flags).
struct GlobalOptions {
  std::string root = "/var/lib/cryo";  // persistent state: images, layers, containers, volumes
  std::string runroot = "/run/cryo";   // runtime state: monitors, locks, sockets
  std::string log_level = "warn";
};

// Exit code that the handler of the parsed command asks main() to return.
int& exit_code();

// `app` is the top level; `container` is the `cryo container` group. Podman offers most container
// commands at both levels (`podman run` == `podman container run`), so groups add to both.
void register_container_commands(CLI::App& app, CLI::App& container, GlobalOptions& global);
void register_image_commands(CLI::App& app, GlobalOptions& global);
void register_volume_commands(CLI::App& app, GlobalOptions& global);
void register_checkpoint_commands(CLI::App& app, CLI::App& container, GlobalOptions& global);
// `cryo cr ...`: the low-level checkpoint engine, modelled on CRIU's command line.
void register_cr_commands(CLI::App& app, GlobalOptions& global);
// Hidden entry points the engine re-executes itself into (monitor, container init helpers).
// Returns true and sets exit_code() when argv named one of them.
bool run_internal_command(int argc, char** argv);

}  // namespace cryo::cli
