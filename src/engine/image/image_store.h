// Local images: content-addressed layers shared as overlayfs lower dirs.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/state/paths.h"

namespace cryo::engine {

// The parts of an OCI image config that create/run use.
struct ImageConfig {
  std::vector<std::string> cmd;
  std::vector<std::string> entrypoint;
  std::vector<std::string> env;  // "KEY=value"
  std::string working_dir;
  std::string user;
  std::vector<std::string> exposed_ports;  // "8080/tcp"
};

struct ImageRecord {
  std::string id;                          // sha256 hex of the image config (64 chars)
  std::vector<std::string> names;          // fully qualified: "localhost/busybox:latest"
  ImageConfig config;
  std::vector<std::string> layer_digests;  // "sha256:...", lowest layer first
  int64_t created = 0;                     // unix seconds
  uint64_t size = 0;                       // unpacked bytes
};

class ImageStore {
 public:
  explicit ImageStore(StorePaths paths);
  // By name ("busybox", "localhost/busybox:latest"), full ID or unique ID prefix. Throws
  // ExitCodeError(125) with Podman's "NAME: image not known" when there is none.
  ImageRecord resolve(const std::string& ref) const;
  // Unpacked layer directories, lowest first, for overlayfs lowerdir (which wants highest first).
  std::vector<std::string> layer_dirs(const ImageRecord& image) const;
  std::vector<ImageRecord> list() const;

 private:
  StorePaths paths_;
};

}  // namespace cryo::engine
