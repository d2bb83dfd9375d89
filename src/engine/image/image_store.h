// Local images: content-addressed layers shared as overlayfs lower dirs.
//
// Layout under --root:
//   images/<id>/config.json   the OCI image config, byte for byte (its sha256 is the image ID)
//   images/<id>/image.json    the record: names, layer diff_ids, created, size, manifest digest
//   layers/<hex>/             see storage/layer_store.h
//   storage.lock              flock: shared for readers, exclusive for writers
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
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
  std::map<std::string, std::string> labels;
  std::string stop_signal;
  std::vector<std::string> volumes;
};

struct ImageRecord {
  std::string id;                  // sha256 hex of the image config (64 chars)
  std::vector<std::string> names;  // fully qualified: "localhost/busybox:latest"
  ImageConfig config;
  std::vector<std::string> layer_digests;  // "sha256:...", lowest layer first
  int64_t created = 0;                     // unix seconds
  uint64_t size = 0;                       // unpacked bytes
  std::string digest;                      // "sha256:..." of the OCI manifest `save` writes
};

// "busybox" -> "localhost/busybox:latest", "foo:1" -> "localhost/foo:1",
// "quay.io/a/b" -> "quay.io/a/b:latest". With default_domain "docker.io" a single component gets
// "library/" as Docker does ("busybox" -> "docker.io/library/busybox:latest"). Throws
// ExitCodeError(125) for names that are not valid references.
std::string normalize_image_name(const std::string& name,
                                 const std::string& default_domain = "localhost");

// Applies one Dockerfile-style instruction, as `podman import --change` takes it ("CMD [\"sh\"]",
// "CMD=sh -c 'x'", "ENV A=1 B=2", "EXPOSE 80/tcp", "WORKDIR /x", "USER nobody", "ENTRYPOINT ...",
// "LABEL k=v", "STOPSIGNAL SIGTERM", "VOLUME /data") to an OCI image config document. Throws
// ExitCodeError(125) for unknown instructions or malformed values.
void apply_image_change(nlohmann::json& oci_config, const std::string& change);
ImageConfig image_config_from_oci(const nlohmann::json& oci_config);

// "2 minutes ago" (Docker's units.HumanDuration) and "4.53 MB" (HumanSize, decimal units).
std::string human_duration_since(int64_t then_seconds, int64_t now_seconds);
std::string human_size(uint64_t bytes);
// "2024-05-01T10:00:00Z", with ".nnnnnnnnn" before the Z when nanos is not 0.
std::string rfc3339_time(int64_t seconds, long nanos = 0);

enum class ArchiveFormat { kDockerArchive, kOciArchive };

struct ImportOptions {
  std::vector<std::string> changes;  // --change
  std::string message;               // --message: history comment
  std::string reference;             // name to give, may be empty
};

struct RemoveResult {
  std::vector<std::string> untagged;   // names removed
  std::optional<std::string> deleted;  // image ID, when the image itself went away
};

class ImageStore {
 public:
  explicit ImageStore(StorePaths paths);
  // By name ("busybox", "localhost/busybox:latest"), full ID or unique ID prefix, with or without
  // "sha256:". Throws ExitCodeError(125) with Podman's "NAME: image not known" when there is none.
  ImageRecord resolve(const std::string& ref) const;
  std::optional<ImageRecord> find(const std::string& ref) const;
  // Resolves `ref` and runs fn while holding the store lock shared, so that no `rmi` can remove
  // the image meanwhile: the runtime writes its container record (naming image_id) inside fn.
  // fn may call the other const methods (shared locks do not conflict) but not modify images.
  void with_image(const std::string& ref, const std::function<void(const ImageRecord&)>& fn) const;
  // Unpacked layer directories, lowest first, for overlayfs lowerdir (which wants highest first).
  std::vector<std::string> layer_dirs(const ImageRecord& image) const;
  // Newest first.
  std::vector<ImageRecord> list() const;

  // A rootfs tarball (plain, gzip, zstd...) as a one-layer image.
  ImageRecord import_rootfs(const std::string& tarball, const ImportOptions& options);
  // A new image: the layers of `base_ref` (none when empty) plus the layer tar (e.g. a container's
  // rootfs diff from storage::create_tar with overlay_whiteouts_to_oci), the base's config with
  // `options.changes` applied. For `commit`.
  ImageRecord commit_layer(const std::string& base_ref, const std::string& layer_tar,
                           const ImportOptions& options);
  // docker-archive or OCI layout tarball; every layer digest is verified, a mismatch loads
  // nothing. Returns the loaded images.
  std::vector<ImageRecord> load(const std::string& archive_path);
  void save(const std::string& ref, const std::string& out_path, ArchiveFormat format) const;
  // Adds a name (moving it away from any other image that had it).
  void tag(const std::string& ref, const std::string& new_name);
  // Podman's rmi for one reference. A name of an image with several names only untags it. Throws
  // ExitCodeError(1) for an unknown image and ExitCodeError(2) when a container uses it.
  RemoveResult remove(const std::string& ref, bool force);

  // Removes images no container uses: only unnamed ones, or all with `all`. Returns their IDs.
  std::vector<std::string> prune(bool all);

  // `podman image inspect` object for one image.
  nlohmann::json inspect(const ImageRecord& image) const;
  // The OCI config document, byte for byte.
  std::string config_bytes(const ImageRecord& image) const;

  // IDs of containers whose record (any containers/<id>/*.json with "image_id") names the image.
  std::vector<std::string> containers_using(const std::string& image_id) const;
  // `rmi --force` of an image in use removes those containers first through this hook (set by
  // the runtime). Without it, forced removal of an image in use is refused.
  void set_container_remover(std::function<void(const std::string& container_id)> remover) {
    container_remover_ = std::move(remover);
  }

 private:
  class Lock;
  std::optional<ImageRecord> find_locked(const std::string& ref) const;
  std::vector<ImageRecord> list_locked() const;
  ImageRecord read_record(const std::string& id) const;
  void write_record(const ImageRecord& record) const;
  // Commits a new image (config bytes + prepared layers already committed) and moves `names`.
  ImageRecord add_image_locked(const std::string& config_bytes,
                               const std::vector<std::string>& names, uint64_t size);
  std::vector<ImageRecord> load_archive(const std::string& archive_path);
  ImageRecord add_layer_image(const std::string& base_ref, const std::string& tarball,
                              const ImportOptions& options, const std::string& created_by);
  void remove_name_from_others_locked(const std::string& name, const std::string& keep_id);
  void delete_image_locked(const ImageRecord& record);

  StorePaths paths_;
  std::function<void(const std::string&)> container_remover_;
};

}  // namespace cryo::engine
