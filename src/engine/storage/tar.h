// Tar archives of directory trees: safe extraction (nothing lands outside the destination) and
// creation. Used for image layers, image archives and container rootfs diffs.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

struct archive;

namespace cryo::storage {

struct ExtractOptions {
  // Image layers: ".wh.NAME" becomes an overlayfs whiteout (char device 0:0 named NAME) and
  // ".wh..wh..opq" marks its directory opaque (xattr trusted.overlay.opaque=y).
  bool oci_whiteouts = false;
  // Keep the uid/gid recorded in the archive (root only); otherwise files belong to the caller.
  bool preserve_owner = true;
};

struct ExtractStats {
  uint64_t entries = 0;
  uint64_t regular_bytes = 0;  // sum of regular file sizes
};

// Extracts the archive at `archive_path` (tar, plain or compressed with anything libarchive
// detects) into the existing directory `dest`. Refuses, with an Error naming the entry, absolute
// paths, ".." components, and any entry whose parent path goes through a symlink or non-directory
// (so neither symlinks nor hardlinks let a write escape `dest`). Keeps ownership, permissions,
// times, xattrs, device nodes, fifos and hardlinks. On error `dest` may hold a partial tree: the
// caller extracts into a directory it removes on failure.
ExtractStats extract_tar(const std::string& archive_path, const std::string& dest,
                         const ExtractOptions& options = {});

enum class Compression { kNone, kGzip, kZstd };

struct CreateOptions {
  Compression compression = Compression::kNone;
  // Container rootfs diffs: overlayfs whiteouts (char device 0:0) become ".wh.NAME" entries and
  // opaque directories get a ".wh..wh..opq" entry; trusted.overlay.* xattrs are not archived.
  bool overlay_whiteouts_to_oci = false;
};

// Writes a tar (pax) of the tree under `dir` to `out_path`, paths relative to `dir` ("etc/passwd"),
// entries in name order, hardlinks preserved. Never follows symlinks inside `dir`.
void create_tar(const std::string& dir, const std::string& out_path,
                const CreateOptions& options = {});

// Builds a tar archive entry by entry (image archives: manifests, configs, layer files).
class TarBuilder {
 public:
  explicit TarBuilder(const std::string& out_path, Compression compression = Compression::kNone);
  ~TarBuilder();
  TarBuilder(const TarBuilder&) = delete;
  TarBuilder& operator=(const TarBuilder&) = delete;

  void add_directory(const std::string& name);
  void add_bytes(const std::string& name, std::string_view data);
  // Copies the regular file at `source_path` as entry `name`.
  void add_file(const std::string& name, const std::string& source_path);
  // Finishes the archive; without it the destructor leaves an incomplete file.
  void close();

 private:
  struct Free {
    void operator()(archive* a) const;
  };
  std::string out_path_;
  std::unique_ptr<archive, Free> archive_;
};

// Writes the decompressed byte stream of `in_path` (gzip, zstd, xz, bzip2 or uncompressed) to
// `out_path` and returns the lowercase hex sha256 of those decompressed bytes.
std::string decompress_file(const std::string& in_path, const std::string& out_path);

}  // namespace cryo::storage
