// Container lifecycle commands: run, create, start, stop, restart, kill, rm, ps, logs, inspect,
// exec, port, wait.
#include "cli/cli.h"

namespace cryo::cli {

void register_container_commands(CLI::App& app, CLI::App& container, GlobalOptions& global) {
  (void)app;
  (void)container;
  (void)global;
}

bool run_internal_command(int argc, char** argv) {
  (void)argc;
  (void)argv;
  return false;
}

}  // namespace cryo::cli
