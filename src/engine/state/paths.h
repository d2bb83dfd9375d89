// Where the engine keeps its state. Two engines with different roots are independent "hosts".
#pragma once

#include <string>

namespace cryo::engine {

struct StorePaths {
  std::string root;     // persistent: images/, layers/, containers/, volumes/, networks/
  std::string runroot;  // runtime: containers/ID/ (monitor, sockets), locks/

  std::string images_dir() const { return root + "/images"; }
  std::string layers_dir() const { return root + "/layers"; }
  std::string containers_dir() const { return root + "/containers"; }
  std::string container_dir(const std::string& id) const { return containers_dir() + "/" + id; }
  std::string volumes_dir() const { return root + "/volumes"; }
  std::string networks_dir() const { return root + "/networks"; }
  std::string run_container_dir(const std::string& id) const {
    return runroot + "/containers/" + id;
  }
  std::string locks_dir() const { return runroot + "/locks"; }
};

}  // namespace cryo::engine
