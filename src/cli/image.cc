// Image commands: import, load, save, images, rmi, image inspect.
#include "cli/cli.h"

namespace cryo::cli {

void register_image_commands(CLI::App& app, GlobalOptions& global) {
  (void)app;
  (void)global;
}

}  // namespace cryo::cli
