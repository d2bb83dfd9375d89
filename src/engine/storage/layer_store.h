// Image layers, content-addressed by the sha256 of their uncompressed tar (the OCI diff_id) and
// unpacked once under <root>/layers/<hex>/diff. Each layer directory also keeps the uncompressed
// tar (layer.tar) so that `save` writes the exact bytes the digest names. Which images use a layer
// is the image store's business: it removes a layer when no image record names it any more.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "engine/state/paths.h"

namespace cryo::storage {

// A layer unpacked into a private temporary directory, not yet visible in the store. Removed on
// destruction unless committed.
class PreparedLayer {
 public:
  PreparedLayer() = default;
  PreparedLayer(std::string temp_dir, std::string diff_id, uint64_t size)
      : temp_dir_(std::move(temp_dir)), diff_id_(std::move(diff_id)), size_(size) {}
  PreparedLayer(PreparedLayer&& other) noexcept;
  PreparedLayer& operator=(PreparedLayer&& other) noexcept;
  PreparedLayer(const PreparedLayer&) = delete;
  PreparedLayer& operator=(const PreparedLayer&) = delete;
  ~PreparedLayer();

  const std::string& diff_id() const { return diff_id_; }  // "sha256:<hex>"
  uint64_t size() const { return size_; }                  // bytes of regular files
  const std::string& temp_dir() const { return temp_dir_; }
  void release() { temp_dir_.clear(); }

 private:
  void discard() noexcept;
  std::string temp_dir_;
  std::string diff_id_;
  uint64_t size_ = 0;
};

class LayerStore {
 public:
  explicit LayerStore(engine::StorePaths paths);

  // Decompresses and unpacks a layer tar (any compression) into a temporary directory under the
  // layers dir. With `expected_diff_id`, a different digest of the uncompressed tar is an error
  // (and leaves nothing behind). Does not need the store lock.
  PreparedLayer prepare(const std::string& tar_path,
                        const std::optional<std::string>& expected_diff_id) const;
  // Makes the layer visible (a no-op when the same digest is already there). Caller holds the
  // store lock.
  void commit(PreparedLayer& layer) const;

  bool exists(const std::string& diff_id) const;
  std::string dir(const std::string& diff_id) const;       // layers/<hex>
  std::string diff_dir(const std::string& diff_id) const;  // layers/<hex>/diff
  std::string tar_path(const std::string& diff_id) const;  // layers/<hex>/layer.tar
  uint64_t size(const std::string& diff_id) const;
  // Caller holds the store lock and knows no image uses the layer.
  void remove(const std::string& diff_id) const;

 private:
  engine::StorePaths paths_;
};

}  // namespace cryo::storage
