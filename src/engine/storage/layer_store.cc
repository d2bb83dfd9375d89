#include "engine/storage/layer_store.h"

#include <sys/stat.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/strings.h"
#include "engine/storage/digest.h"
#include "engine/storage/tar.h"

namespace cryo::storage {

PreparedLayer::PreparedLayer(PreparedLayer&& other) noexcept
    : temp_dir_(std::exchange(other.temp_dir_, {})),
      diff_id_(std::move(other.diff_id_)),
      size_(other.size_) {}

PreparedLayer& PreparedLayer::operator=(PreparedLayer&& other) noexcept {
  if (this != &other) {
    discard();
    temp_dir_ = std::exchange(other.temp_dir_, {});
    diff_id_ = std::move(other.diff_id_);
    size_ = other.size_;
  }
  return *this;
}

PreparedLayer::~PreparedLayer() {
  discard();
}

void PreparedLayer::discard() noexcept {
  if (temp_dir_.empty()) return;
  try {
    fs::remove_all(temp_dir_);
  } catch (const std::exception& e) {
    LOG_WARN << "leaving temporary layer " << temp_dir_ << ": " << e.what();
  }
  temp_dir_.clear();
}

LayerStore::LayerStore(engine::StorePaths paths) : paths_(std::move(paths)) {}

std::string LayerStore::dir(const std::string& diff_id) const {
  return paths_.layers_dir() + "/" + digest_hex(diff_id);
}
std::string LayerStore::diff_dir(const std::string& diff_id) const {
  return dir(diff_id) + "/diff";
}
std::string LayerStore::tar_path(const std::string& diff_id) const {
  return dir(diff_id) + "/layer.tar";
}
bool LayerStore::exists(const std::string& diff_id) const {
  return fs::exists(dir(diff_id) + "/layer.json");
}

uint64_t LayerStore::size(const std::string& diff_id) const {
  auto info = nlohmann::json::parse(fs::read_file(dir(diff_id) + "/layer.json"));
  return info.at("size").get<uint64_t>();
}

PreparedLayer LayerStore::prepare(const std::string& tar_path,
                                  const std::optional<std::string>& expected_diff_id) const {
  return with_context("layer " + tar_path, [&] {
    fs::mkdir_p(paths_.layers_dir(), 0700);
    std::string temp = paths_.layers_dir() + "/.tmp-" + random_hex(8);
    if (::mkdir(temp.c_str(), 0700) < 0) throw_errno("mkdir " + temp);
    PreparedLayer guard(temp, "", 0);
    std::string hex = decompress_file(tar_path, temp + "/layer.tar");
    std::string diff_id = "sha256:" + hex;
    if (expected_diff_id && *expected_diff_id != diff_id)
      throw Error("digest mismatch: expected " + *expected_diff_id + ", the content has " +
                  diff_id);
    if (::mkdir((temp + "/diff").c_str(), 0755) < 0) throw_errno("mkdir " + temp + "/diff");
    ExtractOptions options;
    options.oci_whiteouts = true;
    ExtractStats stats = extract_tar(temp + "/layer.tar", temp + "/diff", options);
    nlohmann::json info = {{"diff_id", diff_id}, {"size", stats.regular_bytes}};
    fs::write_file_atomic(temp + "/layer.json", info.dump());
    guard.release();
    return PreparedLayer(temp, diff_id, stats.regular_bytes);
  });
}

void LayerStore::commit(PreparedLayer& layer) const {
  std::string target = dir(layer.diff_id());
  if (exists(layer.diff_id())) return;  // same content already unpacked; the guard drops ours
  if (fs::exists(target)) fs::remove_all(target);  // leftover of an interrupted removal
  if (::rename(layer.temp_dir().c_str(), target.c_str()) < 0)
    throw_errno("rename " + layer.temp_dir() + " to " + target);
  layer.release();
}

void LayerStore::remove(const std::string& diff_id) const {
  std::string target = dir(diff_id);
  // Rename first so that a crash midway never leaves a half-removed layer that looks complete.
  std::string doomed = paths_.layers_dir() + "/.rm-" + random_hex(8);
  if (::rename(target.c_str(), doomed.c_str()) < 0) {
    if (errno == ENOENT) return;
    throw_errno("rename " + target + " to " + doomed);
  }
  fs::remove_all(doomed);
}

}  // namespace cryo::storage
