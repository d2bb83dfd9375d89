// The OCI runtime spec (config.json) of a container: generated at create time from the record and
// the image, kept as the record of what the runtime sets up, and read back by the runtime (and by
// restore, to rebuild the same sandbox).
#pragma once

#include <sys/types.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/container/container.h"

namespace cryo::engine {

// Podman's default capability set.
const std::vector<std::string>& default_capabilities();
const std::vector<std::string>& default_masked_paths();
const std::vector<std::string>& default_readonly_paths();

struct ResolvedUser {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> additional_gids;
  std::string home = "/";
};

// Resolves -u "name|uid[:group|gid]" with the image's /etc/passwd and /etc/group, looked up in
// `layer_dirs` (highest first). ExitCodeError(125) for an unknown user or group name.
ResolvedUser resolve_user(const std::string& user, const std::vector<std::string>& layer_dirs);

struct SpecInputs {
  std::vector<std::string> lower_dirs;  // overlay lowerdirs, highest first
  std::string upper_dir, work_dir, rootfs_dir;
  ResolvedUser user;
  std::string netns_path;               // "" = the host's network namespace (--network host)
  bool new_netns_without_path = false;  // --network none without a managed netns
  std::string hosts_file, resolv_file, hostname_file;
  std::string cgroups_path;  // container_cgroup_name(); "" = the default store's cryo/<id>
};

nlohmann::json make_oci_spec(const ContainerRecord& record, const SpecInputs& inputs);

// Annotations that carry what the OCI spec has no field for.
inline constexpr const char* kAnnotationLowerDirs = "io.cryo.overlay.lowerdirs";
inline constexpr const char* kAnnotationUpperDir = "io.cryo.overlay.upperdir";
inline constexpr const char* kAnnotationWorkDir = "io.cryo.overlay.workdir";

}  // namespace cryo::engine
