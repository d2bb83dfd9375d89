#include "engine/image/image_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <set>

#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/strings.h"
#include "engine/storage/digest.h"
#include "engine/storage/layer_store.h"
#include "engine/storage/tar.h"

namespace cryo::engine {
namespace {

constexpr const char* kManifestMediaType = "application/vnd.oci.image.manifest.v1+json";
constexpr const char* kConfigMediaType = "application/vnd.oci.image.config.v1+json";
constexpr const char* kLayerMediaType = "application/vnd.oci.image.layer.v1.tar";

// Seconds of an RFC 3339 time ("2024-05-01T10:00:00.5+02:00"); 0 when it does not parse.
int64_t parse_rfc3339_time(const std::string& text) {
  struct tm tm = {};
  int consumed = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6)
    return 0;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  int64_t seconds = timegm(&tm);
  std::string rest = text.substr(static_cast<size_t>(consumed));
  if (!rest.empty() && rest[0] == '.') rest = rest.substr(rest.find_first_not_of("0123456789", 1));
  int sign_hours = 0, offset_minutes = 0;
  if (!rest.empty() && (rest[0] == '+' || rest[0] == '-') &&
      std::sscanf(rest.c_str() + 1, "%2d:%2d", &sign_hours, &offset_minutes) == 2) {
    int64_t offset = sign_hours * 3600 + offset_minutes * 60;
    seconds -= rest[0] == '+' ? offset : -offset;
  }
  return seconds;
}

bool is_hex(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// A name without a registry ("busybox", "org/app:1"), valid as a reference.
bool is_short_name(const std::string& ref) {
  try {
    return normalize_image_name(ref, "example.invalid") != normalize_image_name(ref);
  } catch (const Error&) {
    return false;
  }
}

// Whether a stored full name ends with the repository path and tag of a normalized short name.
bool short_name_matches(const std::string& full_name, const std::string& normalized_short) {
  std::string wanted = normalized_short.substr(normalized_short.find('/') + 1);
  std::string rest = full_name.substr(full_name.find('/') + 1);
  return rest == wanted || (rest.size() > wanted.size() && rest.ends_with("/" + wanted));
}

// "sha256:abc" -> "abc" when it is hex; otherwise unchanged.
std::string strip_sha256(const std::string& ref) {
  if (starts_with(ref, "sha256:") && is_hex(ref.substr(7))) return ref.substr(7);
  return ref;
}

// The OCI manifest `save --format oci-archive` writes; its digest is the image's Digest.
nlohmann::json make_manifest(const std::string& id, size_t config_size,
                             const std::vector<std::string>& layers,
                             const storage::LayerStore& layer_store) {
  nlohmann::json manifest = {
      {"schemaVersion", 2},
      {"mediaType", kManifestMediaType},
      {"config",
       {{"mediaType", kConfigMediaType}, {"digest", "sha256:" + id}, {"size", config_size}}},
      {"layers", nlohmann::json::array()}};
  for (const std::string& layer : layers) {
    struct stat st;
    std::string tar = layer_store.tar_path(layer);
    if (::stat(tar.c_str(), &st) < 0) throw_errno("stat " + tar);
    manifest["layers"].push_back(
        {{"mediaType", kLayerMediaType}, {"digest", layer}, {"size", st.st_size}});
  }
  return manifest;
}

std::vector<std::string> diff_ids_of(const nlohmann::json& config) {
  std::vector<std::string> out;
  if (!config.contains("rootfs") || !config["rootfs"].contains("diff_ids") ||
      !config["rootfs"]["diff_ids"].is_array())
    throw Error("image config has no rootfs.diff_ids");
  for (const auto& d : config["rootfs"]["diff_ids"]) {
    std::string digest = d.get<std::string>();
    storage::digest_hex(digest);  // validates
    out.push_back(digest);
  }
  return out;
}

// A path named inside an image archive, checked to stay inside the extracted archive.
std::string archive_member(const std::string& root, const std::string& name) {
  if (name.empty() || name[0] == '/') throw Error("archive names invalid member \"" + name + "\"");
  for (const std::string& c : split(name, '/'))
    if (c == "..") throw Error("archive names invalid member \"" + name + "\"");
  // No component may be a symlink: the archive could point "blobs" at any host directory.
  std::string path = root;
  std::vector<std::string> comps = split(name, '/');
  for (size_t i = 0; i < comps.size(); ++i) {
    if (comps[i].empty() || comps[i] == ".") continue;
    path += "/" + comps[i];
    struct stat st;
    if (::lstat(path.c_str(), &st) < 0) throw_errno("archive member " + name);
    bool last = i + 1 == comps.size();
    if (last ? !S_ISREG(st.st_mode) : !S_ISDIR(st.st_mode))
      throw Error("archive member " + name + ": " + comps[i] +
                  (last ? " is not a regular file" : " is not a directory"));
  }
  return path;
}

// An OCI layout blob, verified against its digest.
std::string verified_blob(const std::string& root, const std::string& digest) {
  std::string hex = storage::digest_hex(digest);
  std::string path = archive_member(root, "blobs/sha256/" + hex);
  std::string actual = storage::sha256_file_hex(path);
  if (actual != hex)
    throw Error("blob " + digest + ": digest mismatch, the content has sha256:" + actual);
  return path;
}

// A temporary directory removed, with everything in it, on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& parent) {
    fs::mkdir_p(parent, 0700);
    path_ = parent + "/" + random_hex(8);
    if (::mkdir(path_.c_str(), 0700) < 0) throw_errno("mkdir " + path_);
  }
  ~TempDir() {
    try {
      fs::remove_all(path_);
    } catch (const Error& e) {
      LOG_WARN << "leaving " << path_ << ": " << e.what();
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct PendingImage {
  std::string config_bytes;
  std::vector<std::string> names;
  std::vector<storage::PreparedLayer> layers;
};

}  // namespace

// flock on <root>/storage.lock: concurrent cryo commands see whole images only.
class ImageStore::Lock {
 public:
  Lock(const StorePaths& paths, bool exclusive) {
    if (!fs::exists(paths.root))
      fs::mkdir_p(paths.root, 0700);  // keep the mode of an existing root
    std::string path = paths.root + "/storage.lock";
    fd_ = fs::open_or_throw(path, O_RDWR | O_CREAT, 0600);
    while (::flock(fd_.get(), exclusive ? LOCK_EX : LOCK_SH) < 0) {
      if (errno != EINTR) throw_errno("flock " + path);
    }
  }

 private:
  UniqueFd fd_;
};

ImageStore::ImageStore(StorePaths paths) : paths_(std::move(paths)) {}

ImageRecord ImageStore::read_record(const std::string& id) const {
  std::string dir = paths_.images_dir() + "/" + id;
  return with_context("image " + id, [&] {
    auto j = nlohmann::json::parse(fs::read_file(dir + "/image.json"));
    ImageRecord r;
    r.id = j.at("id").get<std::string>();
    r.names = j.at("names").get<std::vector<std::string>>();
    r.layer_digests = j.at("layers").get<std::vector<std::string>>();
    r.created = j.at("created").get<int64_t>();
    r.size = j.at("size").get<uint64_t>();
    r.digest = j.at("digest").get<std::string>();
    r.config = image_config_from_oci(nlohmann::json::parse(fs::read_file(dir + "/config.json")));
    return r;
  });
}

void ImageStore::write_record(const ImageRecord& r) const {
  nlohmann::json j = {{"id", r.id},           {"names", r.names}, {"layers", r.layer_digests},
                      {"created", r.created}, {"size", r.size},   {"digest", r.digest}};
  fs::write_file_atomic(paths_.images_dir() + "/" + r.id + "/image.json", j.dump(2) + "\n");
}

std::vector<ImageRecord> ImageStore::list_locked() const {
  std::vector<ImageRecord> out;
  std::error_code ec;
  if (!std::filesystem::is_directory(paths_.images_dir(), ec)) return out;
  for (const auto& entry : std::filesystem::directory_iterator(paths_.images_dir())) {
    std::string id = entry.path().filename().string();
    if (!storage::is_sha256_hex(id) || !fs::exists(entry.path().string() + "/image.json")) continue;
    out.push_back(read_record(id));
  }
  std::sort(out.begin(), out.end(), [](const ImageRecord& a, const ImageRecord& b) {
    return a.created != b.created ? a.created > b.created : a.id < b.id;
  });
  return out;
}

std::vector<ImageRecord> ImageStore::list() const {
  Lock lock(paths_, false);
  return list_locked();
}

std::optional<ImageRecord> ImageStore::find_locked(const std::string& ref) const {
  std::vector<ImageRecord> images = list_locked();
  std::string bare = strip_sha256(ref);
  for (const ImageRecord& image : images)
    if (image.id == bare) return image;

  std::optional<std::string> normalized;
  try {
    normalized = normalize_image_name(ref);
  } catch (const Error&) {
  }
  if (normalized) {
    for (const ImageRecord& image : images)
      if (std::find(image.names.begin(), image.names.end(), *normalized) != image.names.end())
        return image;
    // A short name also matches the same repository in any registry or namespace ("busybox"
    // finds "docker.io/library/busybox:latest", "motd:v1" finds "quay.io/cryo/motd:v1").
    if (is_short_name(ref))
      for (const ImageRecord& image : images)
        for (const std::string& name : image.names)
          if (short_name_matches(name, *normalized)) return image;
  }
  if (is_hex(bare)) {
    std::vector<const ImageRecord*> matches;
    for (const ImageRecord& image : images)
      if (starts_with(image.id, bare)) matches.push_back(&image);
    if (matches.size() == 1) return *matches[0];
    if (matches.size() > 1)
      throw ExitCodeError(ref + ": ambiguous image ID prefix, it matches " +
                              std::to_string(matches.size()) + " images",
                          125);
  }
  return std::nullopt;
}

std::optional<ImageRecord> ImageStore::find(const std::string& ref) const {
  Lock lock(paths_, false);
  return find_locked(ref);
}

ImageRecord ImageStore::resolve(const std::string& ref) const {
  std::optional<ImageRecord> found = find(ref);
  if (!found) throw ExitCodeError(ref + ": image not known", 125);
  return *found;
}

void ImageStore::with_image(const std::string& ref,
                            const std::function<void(const ImageRecord&)>& fn) const {
  Lock lock(paths_, false);
  std::optional<ImageRecord> found = find_locked(ref);
  if (!found) throw ExitCodeError(ref + ": image not known", 125);
  fn(*found);
}

std::vector<std::string> ImageStore::layer_dirs(const ImageRecord& image) const {
  storage::LayerStore layers(paths_);
  std::vector<std::string> out;
  for (const std::string& digest : image.layer_digests) {
    if (!layers.exists(digest))
      throw Error("image " + image.id.substr(0, 12) + ": layer " + digest + " is missing");
    out.push_back(layers.diff_dir(digest));
  }
  return out;
}

std::string ImageStore::config_bytes(const ImageRecord& image) const {
  return fs::read_file(paths_.images_dir() + "/" + image.id + "/config.json");
}

void ImageStore::remove_name_from_others_locked(const std::string& name,
                                                const std::string& keep_id) {
  for (ImageRecord& other : list_locked()) {
    if (other.id == keep_id) continue;
    auto it = std::find(other.names.begin(), other.names.end(), name);
    if (it == other.names.end()) continue;
    other.names.erase(it);
    write_record(other);
  }
}

ImageRecord ImageStore::add_image_locked(const std::string& config_bytes,
                                         const std::vector<std::string>& names, uint64_t size) {
  nlohmann::json config = nlohmann::json::parse(config_bytes);
  ImageRecord record;
  record.id = storage::sha256_hex(config_bytes);
  record.layer_digests = diff_ids_of(config);
  record.created = config.contains("created") && config["created"].is_string()
                       ? parse_rfc3339_time(config["created"].get<std::string>())
                       : 0;
  record.size = size;
  record.config = image_config_from_oci(config);
  storage::LayerStore layers(paths_);
  record.digest =
      "sha256:" +
      storage::sha256_hex(
          make_manifest(record.id, config_bytes.size(), record.layer_digests, layers).dump());

  std::string dir = paths_.images_dir() + "/" + record.id;
  if (fs::exists(dir + "/image.json")) {
    ImageRecord existing = read_record(record.id);
    record.names = existing.names;
  } else {
    fs::mkdir_p(dir, 0700);
    fs::write_file_atomic(dir + "/config.json", config_bytes);
  }
  for (const std::string& name : names) {
    remove_name_from_others_locked(name, record.id);
    if (std::find(record.names.begin(), record.names.end(), name) == record.names.end())
      record.names.push_back(name);
  }
  write_record(record);
  return record;
}

ImageRecord ImageStore::import_rootfs(const std::string& tarball, const ImportOptions& options) {
  return with_context("import " + tarball, [&] {
    return add_layer_image("", tarball, options, "cryo import " + tarball);
  });
}

ImageRecord ImageStore::commit_layer(const std::string& base_ref, const std::string& layer_tar,
                                     const ImportOptions& options) {
  return with_context("commit " + layer_tar,
                      [&] { return add_layer_image(base_ref, layer_tar, options, "cryo commit"); });
}

ImageRecord ImageStore::add_layer_image(const std::string& base_ref, const std::string& tarball,
                                        const ImportOptions& options,
                                        const std::string& created_by) {
  std::string name;
  if (!options.reference.empty()) name = normalize_image_name(options.reference);
  nlohmann::json config = {{"architecture", "amd64"},
                           {"os", "linux"},
                           {"config", nlohmann::json::object()},
                           {"rootfs", {{"type", "layers"}, {"diff_ids", nlohmann::json::array()}}},
                           {"history", nlohmann::json::array()}};
  std::optional<ImageRecord> base;
  if (!base_ref.empty()) {
    base = resolve(base_ref);
    config = nlohmann::json::parse(config_bytes(*base));
    if (!config.contains("history") || !config["history"].is_array())
      config["history"] = nlohmann::json::array();
  }
  storage::LayerStore layers(paths_);
  storage::PreparedLayer layer = layers.prepare(tarball, std::nullopt);

  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  std::string created = rfc3339_time(now.tv_sec, now.tv_nsec);
  config["created"] = created;
  config["rootfs"]["diff_ids"].push_back(layer.diff_id());
  nlohmann::json history = {{"created", created}, {"created_by", created_by}};
  if (!options.message.empty()) history["comment"] = options.message;
  config["history"].push_back(history);
  for (const std::string& change : options.changes) apply_image_change(config, change);
  std::string bytes = config.dump();

  Lock lock(paths_, true);
  uint64_t size = layer.size();
  if (base) {
    // The base was resolved without the lock: an rmi may have removed its layers since.
    for (const std::string& digest : base->layer_digests)
      if (!layers.exists(digest))
        throw Error("base image " + base_ref + " was removed while committing");
    size += base->size;
  }
  layers.commit(layer);
  return add_image_locked(
      bytes, name.empty() ? std::vector<std::string>{} : std::vector<std::string>{name}, size);
}

std::vector<ImageRecord> ImageStore::load(const std::string& archive_path) {
  try {
    return load_archive(archive_path);
  } catch (const nlohmann::json::exception& e) {
    throw Error("load " + archive_path + ": malformed image archive: " + e.what());
  }
}

std::vector<ImageRecord> ImageStore::load_archive(const std::string& archive_path) {
  return with_context("load " + archive_path, [&] {
    TempDir temp(paths_.root + "/tmp");
    storage::ExtractOptions plain;
    plain.preserve_owner = false;
    storage::extract_tar(archive_path, temp.path(), plain);
    const std::string& root = temp.path();
    storage::LayerStore layers(paths_);
    std::vector<PendingImage> pending;

    auto prepare_layers = [&](PendingImage& image, const std::vector<std::string>& layer_paths) {
      std::vector<std::string> diff_ids = diff_ids_of(nlohmann::json::parse(image.config_bytes));
      if (diff_ids.size() != layer_paths.size())
        throw Error("the manifest lists " + std::to_string(layer_paths.size()) +
                    " layers but the config has " + std::to_string(diff_ids.size()) + " diff_ids");
      for (size_t i = 0; i < diff_ids.size(); ++i)
        image.layers.push_back(layers.prepare(layer_paths[i], diff_ids[i]));
    };

    if (fs::exists(root + "/index.json") && fs::exists(root + "/oci-layout")) {
      nlohmann::json index = nlohmann::json::parse(fs::read_file(root + "/index.json"));
      std::vector<nlohmann::json> descriptors(index.at("manifests").begin(),
                                              index.at("manifests").end());
      for (size_t d = 0; d < descriptors.size(); ++d) {
        const nlohmann::json desc = descriptors[d];  // a copy: the loop appends to the vector
        std::string media = desc.value("mediaType", std::string(kManifestMediaType));
        nlohmann::json doc =
            nlohmann::json::parse(fs::read_file(verified_blob(root, desc.at("digest"))));
        if (media == "application/vnd.oci.image.index.v1+json") {
          // A multi-platform index: take the linux/amd64 manifest(s).
          for (const auto& m : doc.at("manifests")) {
            const auto platform = m.value("platform", nlohmann::json::object());
            if (platform.value("os", "linux") == "linux" &&
                platform.value("architecture", "amd64") == "amd64") {
              nlohmann::json sub = m;
              if (desc.contains("annotations")) sub["annotations"] = desc["annotations"];
              descriptors.push_back(sub);
            }
          }
          continue;
        }
        PendingImage image;
        image.config_bytes = fs::read_file(verified_blob(root, doc.at("config").at("digest")));
        std::vector<std::string> layer_paths;
        for (const auto& l : doc.at("layers"))
          layer_paths.push_back(verified_blob(root, l.at("digest")));
        if (desc.contains("annotations")) {
          const auto& ann = desc["annotations"];
          std::string ref = ann.value("io.containerd.image.name",
                                      ann.value("org.opencontainers.image.ref.name", ""));
          // A bare tag ("latest") names no repository: the image stays unnamed.
          if (ref.find('/') != std::string::npos || ref.find(':') != std::string::npos)
            image.names.push_back(normalize_image_name(ref));
        }
        prepare_layers(image, layer_paths);
        pending.push_back(std::move(image));
      }
    } else if (fs::exists(root + "/manifest.json")) {
      nlohmann::json manifest = nlohmann::json::parse(fs::read_file(root + "/manifest.json"));
      for (const auto& item : manifest) {
        PendingImage image;
        std::string config_name = item.at("Config").get<std::string>();
        image.config_bytes = fs::read_file(archive_member(root, config_name));
        // docker-archive names the config after its digest ("<hex>.json" or "blobs/sha256/<hex>").
        std::string base = std::filesystem::path(config_name).stem().string();
        std::string actual = storage::sha256_hex(image.config_bytes);
        if (storage::is_sha256_hex(base) && base != actual)
          throw Error("config " + config_name +
                      ": digest mismatch, the content has sha256:" + actual);
        if (item.contains("RepoTags") && item["RepoTags"].is_array())
          for (const auto& tag : item["RepoTags"])
            image.names.push_back(normalize_image_name(tag.get<std::string>(), "docker.io"));
        std::vector<std::string> layer_paths;
        for (const auto& l : item.at("Layers"))
          layer_paths.push_back(archive_member(root, l.get<std::string>()));
        prepare_layers(image, layer_paths);
        pending.push_back(std::move(image));
      }
    } else {
      throw Error(
          "payload does not match any of the supported image formats (oci-archive, "
          "docker-archive)");
    }
    if (pending.empty()) throw Error("the archive holds no image");

    Lock lock(paths_, true);
    std::vector<ImageRecord> loaded;
    for (PendingImage& image : pending) {
      uint64_t size = 0;
      for (storage::PreparedLayer& layer : image.layers) {
        size += layer.size();
        layers.commit(layer);
      }
      loaded.push_back(add_image_locked(image.config_bytes, image.names, size));
    }
    return loaded;
  });
}

void ImageStore::save(const std::string& ref, const std::string& out_path,
                      ArchiveFormat format) const {
  Lock lock(paths_, false);
  std::optional<ImageRecord> found = find_locked(ref);
  if (!found) throw ExitCodeError(ref + ": image not known", 125);
  const ImageRecord& image = *found;
  with_context("save " + ref + " to " + out_path, [&] {
    storage::LayerStore layers(paths_);
    std::string config = config_bytes(image);
    // A regular file is replaced atomically; anything else (/dev/null, a fifo) is written to.
    struct stat st;
    bool direct = ::stat(out_path.c_str(), &st) == 0 && !S_ISREG(st.st_mode);
    std::string temp_out = direct ? out_path : out_path + ".tmp-" + random_hex(4);
    try {
      storage::TarBuilder tar(temp_out);
      if (format == ArchiveFormat::kDockerArchive) {
        nlohmann::json item = {{"Config", image.id + ".json"},
                               {"RepoTags", image.names},
                               {"Layers", nlohmann::json::array()}};
        tar.add_bytes(image.id + ".json", config);
        for (const std::string& layer : image.layer_digests) {
          std::string name = storage::digest_hex(layer) + ".tar";
          tar.add_file(name, layers.tar_path(layer));
          item["Layers"].push_back(name);
        }
        tar.add_bytes("manifest.json", nlohmann::json::array({item}).dump());
        // The legacy "repositories" file maps each name to its top layer, as Docker writes it.
        nlohmann::json repositories = nlohmann::json::object();
        for (const std::string& name : image.names) {
          size_t colon = name.rfind(':');
          repositories[name.substr(0, colon)][name.substr(colon + 1)] =
              storage::digest_hex(image.layer_digests.back());
        }
        if (!image.names.empty()) tar.add_bytes("repositories", repositories.dump());
      } else {
        std::string manifest =
            make_manifest(image.id, config.size(), image.layer_digests, layers).dump();
        std::string manifest_hex = storage::sha256_hex(manifest);
        nlohmann::json index = {{"schemaVersion", 2}, {"manifests", nlohmann::json::array()}};
        nlohmann::json desc = {{"mediaType", kManifestMediaType},
                               {"digest", "sha256:" + manifest_hex},
                               {"size", manifest.size()}};
        if (!image.names.empty())
          desc["annotations"] = {{"org.opencontainers.image.ref.name", image.names.front()}};
        index["manifests"].push_back(desc);
        tar.add_bytes("oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
        tar.add_bytes("index.json", index.dump());
        tar.add_directory("blobs");
        tar.add_directory("blobs/sha256");
        tar.add_bytes("blobs/sha256/" + manifest_hex, manifest);
        tar.add_bytes("blobs/sha256/" + image.id, config);
        for (const std::string& layer : image.layer_digests)
          tar.add_file("blobs/sha256/" + storage::digest_hex(layer), layers.tar_path(layer));
      }
      tar.close();
      if (!direct && ::rename(temp_out.c_str(), out_path.c_str()) < 0)
        throw_errno("rename " + temp_out + " to " + out_path);
    } catch (...) {
      if (!direct) ::unlink(temp_out.c_str());
      throw;
    }
  });
}

void ImageStore::tag(const std::string& ref, const std::string& new_name) {
  std::string name = normalize_image_name(new_name);
  Lock lock(paths_, true);
  std::optional<ImageRecord> found = find_locked(ref);
  if (!found) throw ExitCodeError(ref + ": image not known", 125);
  remove_name_from_others_locked(name, found->id);
  if (std::find(found->names.begin(), found->names.end(), name) == found->names.end()) {
    found->names.push_back(name);
    write_record(*found);
  }
}

std::vector<std::string> ImageStore::containers_using(const std::string& image_id) const {
  std::vector<std::string> users;
  std::error_code ec;
  if (!std::filesystem::is_directory(paths_.containers_dir(), ec)) return users;
  for (const auto& dir : std::filesystem::directory_iterator(paths_.containers_dir())) {
    if (!dir.is_directory()) continue;
    for (const auto& file : std::filesystem::directory_iterator(dir.path())) {
      if (file.path().extension() != ".json") continue;
      std::optional<std::string> text = fs::read_file_if_exists(file.path().string());
      if (!text) continue;
      nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
      if (j.is_object() && j.contains("image_id") && j["image_id"] == image_id) {
        users.push_back(dir.path().filename().string());
        break;
      }
    }
  }
  std::sort(users.begin(), users.end());
  return users;
}

void ImageStore::delete_image_locked(const ImageRecord& record) {
  std::string dir = paths_.images_dir() + "/" + record.id;
  std::string doomed = paths_.images_dir() + "/.rm-" + random_hex(8);
  if (::rename(dir.c_str(), doomed.c_str()) < 0) throw_errno("rename " + dir);
  fs::remove_all(doomed);
  std::set<std::string> still_used;
  for (const ImageRecord& other : list_locked())
    still_used.insert(other.layer_digests.begin(), other.layer_digests.end());
  storage::LayerStore layers(paths_);
  // Under the lock every complete layer belongs to an image (commit and record happen under the
  // same lock), so unreferenced ones, e.g. left by a crash between the two, are garbage too.
  // ".tmp-" directories are not: another command may be unpacking into one right now.
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(paths_.layers_dir(), ec))
    names.push_back(entry.path().filename().string());
  for (const std::string& name : names) {
    if (storage::is_sha256_hex(name) && !still_used.count("sha256:" + name))
      layers.remove("sha256:" + name);
    else if (starts_with(name, ".rm-"))
      fs::remove_all(paths_.layers_dir() + "/" + name);
  }
}

namespace {
// The name of `image` that `ref` designates, if `ref` is a name rather than an ID.
std::optional<std::string> name_matching(const ImageRecord& image, const std::string& ref) {
  std::string normalized;
  try {
    normalized = normalize_image_name(ref);
  } catch (const Error&) {
    return std::nullopt;
  }
  for (const std::string& n : image.names)
    if (n == normalized) return n;
  if (is_short_name(ref))
    for (const std::string& n : image.names)
      if (short_name_matches(n, normalized)) return n;
  return std::nullopt;
}
}  // namespace

RemoveResult ImageStore::remove(const std::string& ref, bool force) {
  if (force && container_remover_) {
    // Containers go first, without our lock: removing them may need the image store again, and
    // a second flock on another descriptor of this process would wait for us forever.
    std::vector<std::string> users;
    {
      Lock lock(paths_, false);
      std::optional<ImageRecord> found = find_locked(ref);
      bool untag_only = found && found->names.size() > 1 && name_matching(*found, ref);
      if (found && !untag_only) users = containers_using(found->id);
    }
    for (const std::string& container : users) container_remover_(container);
  }

  Lock lock(paths_, true);
  std::optional<ImageRecord> found = find_locked(ref);
  if (!found) throw ExitCodeError(ref + ": image not known", 1);
  ImageRecord image = *found;
  RemoveResult result;

  std::optional<std::string> name = name_matching(image, ref);
  if (name && image.names.size() > 1) {
    std::erase(image.names, *name);
    write_record(image);
    result.untagged.push_back(*name);
    return result;
  }
  if (!name && image.names.size() > 1 && !force)
    throw ExitCodeError("unable to delete image \"" + image.id +
                            "\" by ID with more than one tag (" + join(image.names, ", ") +
                            "): please force removal",
                        125);
  std::vector<std::string> users = containers_using(image.id);
  if (!users.empty()) {
    if (!force)
      throw ExitCodeError("image used by " + users.front() + ": image is in use by a container", 2);
    throw ExitCodeError(
        container_remover_
            ? "image used by " + users.front() +
                  ": a container using the image appeared during removal"
            : "not supported yet: rmi --force of an image in use by container " + users.front(),
        2);
  }
  delete_image_locked(image);
  result.untagged = image.names;
  result.deleted = image.id;
  return result;
}

std::vector<std::string> ImageStore::prune(bool all) {
  Lock lock(paths_, true);
  std::vector<std::string> pruned;
  for (const ImageRecord& image : list_locked()) {
    if ((!all && !image.names.empty()) || !containers_using(image.id).empty()) continue;
    delete_image_locked(image);
    pruned.push_back(image.id);
  }
  return pruned;
}

nlohmann::json ImageStore::inspect(const ImageRecord& image) const {
  nlohmann::json config = nlohmann::json::parse(config_bytes(image));
  nlohmann::json repo_digests = nlohmann::json::array();
  for (const std::string& name : image.names)
    repo_digests.push_back(name.substr(0, name.rfind(':')) + "@" + image.digest);
  std::vector<std::string> dirs = layer_dirs(image);
  std::vector<std::string> lower(dirs.rbegin() + 1, dirs.rend());
  nlohmann::json graph_data = {{"UpperDir", dirs.back()}};
  if (!lower.empty()) graph_data["LowerDir"] = join(lower, ":");
  std::string comment;
  if (config.contains("history") && config["history"].is_array() && !config["history"].empty())
    comment = config["history"].back().value("comment", "");
  nlohmann::json out = {
      {"Id", image.id},
      {"Digest", image.digest},
      {"RepoTags", image.names},
      {"RepoDigests", repo_digests},
      {"Parent", ""},
      {"Comment", comment},
      {"Created", config.value("created", rfc3339_time(image.created, 0))},
      {"Config", config.value("config", nlohmann::json::object())},
      {"Version", ""},
      {"Author", config.value("author", "")},
      {"Architecture", config.value("architecture", "amd64")},
      {"Os", config.value("os", "linux")},
      {"Size", image.size},
      {"VirtualSize", image.size},
      {"GraphDriver", {{"Name", "overlay"}, {"Data", graph_data}}},
      {"RootFS", {{"Type", "layers"}, {"Layers", image.layer_digests}}},
      {"Labels",
       image.config.labels.empty() ? nlohmann::json(nullptr) : nlohmann::json(image.config.labels)},
      {"Annotations", nlohmann::json::object()},
      {"ManifestType", kManifestMediaType},
      {"User", image.config.user},
      {"History", config.value("history", nlohmann::json::array())},
      {"NamesHistory", image.names}};
  return out;
}

}  // namespace cryo::engine
