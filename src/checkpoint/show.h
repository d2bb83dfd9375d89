// `cryo cr show`: the images of a directory in readable form (like `crit show`).
#pragma once

#include <string>
#include <vector>

namespace cryo::ckpt {

std::string show_images(const std::string& image_dir);

// `cryo cr check`: one line per kernel feature the engine uses.
struct KernelFeature {
  std::string name;
  bool available = false;
  bool required = false;  // dump/restore cannot work without it
  std::string detail;
};
std::vector<KernelFeature> check_kernel();

// Waits for the restored root (a child of the caller) and returns its exit code the way a shell
// reports it (128 + signal when killed).
int wait_restored_root(pid_t root);

}  // namespace cryo::ckpt
