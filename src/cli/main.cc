#include <cstdio>
#include <filesystem>
#include <iostream>

#include "cli/cli.h"
#include "common/error.h"
#include "common/interruption.h"
#include "common/log.h"

namespace cryo::cli {
int& exit_code() {
  static int code = 0;
  return code;
}
}  // namespace cryo::cli

namespace {

int run_command_line(int argc, char** argv) {
  using namespace cryo::cli;
  try {
    if (run_internal_command(argc, argv)) return exit_code();

    CLI::App app{"cryo: containers with checkpoint, restore and live migration", "cryo"};
    app.require_subcommand(1);
    app.set_version_flag("-v,--version", "cryo version 0.1.0");
    GlobalOptions global;
    app.add_option("--root", global.root, "Path to the root directory of persistent state");
    app.add_option("--runroot", global.runroot, "Path to the runtime state directory");
    app.add_option("--log-level", global.log_level, "debug, info, warn or error");
    app.parse_complete_callback([&] {
      cryo::log::Level level;
      if (!cryo::log::parse_level(global.log_level, &level))
        throw CLI::ValidationError("--log-level", "unknown level " + global.log_level);
      cryo::log::set_level(level);
      // The monitor and the restore helpers work from other directories (the container's root,
      // "/"): a relative store path given here must mean the same store to them.
      for (std::string* path : {&global.root, &global.runroot})
        if (!path->empty()) {
          *path = std::filesystem::absolute(*path).lexically_normal().string();
          if (path->size() > 1 && path->back() == '/') path->pop_back();
        }
    });

    CLI::App* container = app.add_subcommand("container", "Manage containers");
    container->require_subcommand(1);
    register_container_commands(app, *container, global);
    register_checkpoint_commands(app, *container, global);
    register_image_commands(app, global);
    register_volume_commands(app, global);
    register_cr_commands(app, global);

    try {
      app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
      return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
      return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
      return app.exit(e);
    } catch (const CLI::ParseError& e) {
      // Podman reports usage errors on stderr with exit code 125.
      std::fprintf(stderr, "Error: %s\n", e.what());
      return 125;
    }
    return exit_code();
  } catch (const cryo::ExitCodeError& e) {
    std::fprintf(stderr, "Error: %s\n", e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "Error: %s\n", e.what());
    return 125;
  }
}

}  // namespace

int main(int argc, char** argv) {
  int code = run_command_line(argc, argv);
  // A termination signal held during a checkpoint ends the process now that the checkpoint is
  // undone (or complete) and the error, if any, is printed.
  cryo::raise_deferred_termination();
  return code;
}
