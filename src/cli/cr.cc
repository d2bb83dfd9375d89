// `cryo cr check|dump|restore|show`: the checkpoint engine on any process tree, like CRIU.
#include "cli/cli.h"

namespace cryo::cli {

void register_cr_commands(CLI::App& app, GlobalOptions& global) {
  (void)app;
  (void)global;
}

}  // namespace cryo::cli
