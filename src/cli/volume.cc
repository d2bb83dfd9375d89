// Volume commands: volume create, ls, rm, inspect.
#include "cli/cli.h"

namespace cryo::cli {

void register_volume_commands(CLI::App& app, GlobalOptions& global) {
  (void)app;
  (void)global;
}

}  // namespace cryo::cli
