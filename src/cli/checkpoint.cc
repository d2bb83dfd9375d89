// `cryo container checkpoint` and `cryo container restore` (whole containers, Podman options).
#include "cli/cli.h"

namespace cryo::cli {

void register_checkpoint_commands(CLI::App& app, CLI::App& container, GlobalOptions& global) {
  (void)app;
  (void)container;
  (void)global;
}

}  // namespace cryo::cli
