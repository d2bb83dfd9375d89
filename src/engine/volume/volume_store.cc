#include "engine/volume/volume_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include "common/error.h"
#include "common/fs.h"
#include "common/strings.h"

namespace cryo::engine {

namespace {

std::string now_rfc3339() {
  timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  tm utc;
  ::gmtime_r(&ts.tv_sec, &utc);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &utc);
  char out[64];
  std::snprintf(out, sizeof out, "%s.%09ldZ", date, ts.tv_nsec);
  return out;
}

// Serializes creation and removal of volumes among concurrent cryo processes.
class VolumesLock {
 public:
  explicit VolumesLock(const std::string& volumes_dir) {
    fs::mkdir_p(volumes_dir, 0700);
    std::string path = volumes_dir + "/.lock";
    fd_ = fs::open_or_throw(path, O_RDWR | O_CREAT, 0600);
    while (::flock(fd_.get(), LOCK_EX) < 0)
      if (errno != EINTR) throw_errno("flock " + path);
  }

 private:
  UniqueFd fd_;
};

Volume volume_from_json(const nlohmann::json& j) {
  Volume v;
  v.name = j.at("Name").get<std::string>();
  v.driver = j.value("Driver", "local");
  v.mountpoint = j.at("Mountpoint").get<std::string>();
  v.created_at = j.value("CreatedAt", "");
  if (j.contains("Labels") && j["Labels"].is_object())
    v.labels = j["Labels"].get<std::map<std::string, std::string>>();
  if (j.contains("Options") && j["Options"].is_object())
    v.options = j["Options"].get<std::map<std::string, std::string>>();
  v.needs_copy_up = j.value("NeedsCopyUp", true);
  return v;
}

// The container record lists the volume either in a top-level "volumes" array of {name,
// destination, rw} or among its "config"."mounts" as {volume_name, ...} (the runtime's record).
bool uses_volume(const nlohmann::json& record, const std::string& name) {
  auto lists = [&](const nlohmann::json& array, const char* key) {
    if (!array.is_array()) return false;
    for (const auto& entry : array)
      if (entry.is_object() && entry.value(key, "") == name) return true;
    return false;
  };
  if (record.contains("volumes") && lists(record["volumes"], "name")) return true;
  if (record.contains("config") && record["config"].is_object() &&
      record["config"].contains("mounts"))
    return lists(record["config"]["mounts"], "volume_name");
  return false;
}

}  // namespace

nlohmann::ordered_json to_json(const Volume& v) {
  return {{"Name", v.name},
          {"Driver", v.driver},
          {"Mountpoint", v.mountpoint},
          {"CreatedAt", v.created_at},
          {"Labels", v.labels},
          {"Scope", "local"},
          {"Options", v.options},
          {"NeedsCopyUp", v.needs_copy_up}};
}

VolumeStore::VolumeStore(StorePaths paths) : paths_(std::move(paths)) {}

bool VolumeStore::valid_name(const std::string& name) {
  if (name.empty() || name.size() > 255 || !std::isalnum(static_cast<unsigned char>(name[0])))
    return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

std::string VolumeStore::volume_dir(const std::string& name) const {
  return paths_.volumes_dir() + "/" + name;
}

void VolumeStore::save(const Volume& volume) const {
  fs::write_file_atomic(volume_dir(volume.name) + "/volume.json", to_json(volume).dump(2) + "\n",
                        0600);
}

Volume VolumeStore::create(const std::string& requested_name,
                           const std::map<std::string, std::string>& labels,
                           const std::map<std::string, std::string>& options,
                           bool ignore_existing) {
  std::string name = requested_name.empty() ? random_hex(32) : requested_name;
  if (!valid_name(name))
    throw ExitCodeError(
        "volume name \"" + name + "\" is invalid: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*",
        125);
  if (!options.empty())
    throw ExitCodeError("not supported yet: volume options (-o) of the local driver", 125);
  VolumesLock lock(paths_.volumes_dir());
  if (auto existing = find(name)) {
    if (ignore_existing) return *existing;
    throw ExitCodeError("volume with name " + name + " already exists: volume already exists", 125);
  }
  Volume volume;
  volume.name = name;
  volume.mountpoint = volume_dir(name) + "/_data";
  volume.created_at = now_rfc3339();
  volume.labels = labels;
  volume.options = options;
  std::string dir = volume_dir(name);
  // A directory without volume.json is adopted, never wiped: it is the leftover of a crash
  // during an earlier create, or data put there by a mkdir of the same layout.
  bool existed = fs::exists(dir);
  try {
    if (::mkdir(dir.c_str(), 0700) < 0 && errno != EEXIST) throw_errno("mkdir " + dir);
    if (::mkdir(volume.mountpoint.c_str(), 0755) < 0 && errno != EEXIST)
      throw_errno("mkdir " + volume.mountpoint);
    save(volume);
  } catch (Error& e) {
    if (!existed) {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
    e.add_context("create volume " + name);
    throw;
  }
  return volume;
}

Volume VolumeStore::ensure(const std::string& name) {
  if (auto existing = find(name)) return *existing;
  return create(name, {}, {}, /*ignore_existing=*/true);
}

std::optional<Volume> VolumeStore::find(const std::string& name) const {
  if (!valid_name(name)) return std::nullopt;
  std::string path = volume_dir(name) + "/volume.json";
  auto text = fs::read_file_if_exists(path);
  if (!text) return std::nullopt;
  try {
    return volume_from_json(nlohmann::json::parse(*text));
  } catch (const nlohmann::json::exception& e) {
    throw Error("parse " + path + ": " + e.what());
  }
}

Volume VolumeStore::get(const std::string& name) const {
  auto volume = find(name);
  if (!volume) throw ExitCodeError("no such volume " + name, 125);
  return *volume;
}

std::vector<Volume> VolumeStore::list() const {
  std::vector<Volume> volumes;
  DIR* dir = ::opendir(paths_.volumes_dir().c_str());
  if (!dir) {
    if (errno == ENOENT) return volumes;
    throw_errno("opendir " + paths_.volumes_dir());
  }
  std::vector<std::string> names;
  while (dirent* entry = ::readdir(dir)) {
    std::string name = entry->d_name;
    if (name[0] != '.') names.push_back(name);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  for (const auto& name : names)
    if (auto volume = find(name)) volumes.push_back(*volume);
  return volumes;
}

std::vector<std::string> VolumeStore::users(const std::string& name) const {
  std::vector<std::string> ids;
  DIR* dir = ::opendir(paths_.containers_dir().c_str());
  if (!dir) {
    if (errno == ENOENT) return ids;
    throw_errno("opendir " + paths_.containers_dir());
  }
  std::vector<std::string> containers;
  while (dirent* entry = ::readdir(dir)) {
    std::string id = entry->d_name;
    if (id[0] != '.') containers.push_back(id);
  }
  ::closedir(dir);
  std::sort(containers.begin(), containers.end());
  for (const auto& id : containers) {
    std::string path = paths_.container_dir(id) + "/container.json";
    auto text = fs::read_file_if_exists(path);
    if (!text) continue;
    nlohmann::json config = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded()) throw Error("parse " + path + ": invalid JSON");
    if (config.is_object() && uses_volume(config, name)) ids.push_back(id);
  }
  return ids;
}

void VolumeStore::remove(const std::string& name, bool force) {
  VolumesLock lock(paths_.volumes_dir());
  if (!find(name)) throw ExitCodeError("no such volume " + name, 125);
  std::vector<std::string> in_use = users(name);
  if (!in_use.empty()) {
    if (force)
      throw ExitCodeError("not supported yet: volume rm --force of volume " + name +
                              " in use by container(s) " + join(in_use, ", ") +
                              " (remove the containers first)",
                          125);
    throw ExitCodeError("volume " + name + " is being used by the following container(s): " +
                            join(in_use, ", ") + ": volume is being used",
                        2);
  }
  // Drop the metadata first: a crash midway leaves a directory that list() ignores and create()
  // replaces, never a volume whose data is half gone.
  std::string metadata = volume_dir(name) + "/volume.json";
  if (::unlink(metadata.c_str()) < 0) throw_errno("remove " + metadata);
  fs::remove_all(volume_dir(name));
}

std::vector<std::string> VolumeStore::prune() {
  std::vector<std::string> removed;
  for (const auto& volume : list()) {
    if (!users(volume.name).empty()) continue;
    remove(volume.name);
    removed.push_back(volume.name);
  }
  return removed;
}

void VolumeStore::set_needs_copy_up(const std::string& name, bool needs_copy_up) {
  VolumesLock lock(paths_.volumes_dir());
  Volume volume = get(name);
  volume.needs_copy_up = needs_copy_up;
  save(volume);
}

}  // namespace cryo::engine
