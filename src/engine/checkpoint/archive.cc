#include "engine/checkpoint/archive.h"
#include "engine/checkpoint/container_checkpoint_mounts.h"

#include "checkpoint/image/image_sink.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <optional>
#include <set>

#include "common/clock.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/interruption.h"
#include "common/log.h"
#include "common/phase_trace.h"
#include "common/strings.h"
#include "engine/container/container.h"
#include "engine/container/manager.h"
#include "engine/container/oci_spec.h"
#include "engine/image/image_store.h"
#include "engine/network/network.h"
#include "engine/storage/tar.h"
#include "engine/volume/volume_store.h"

namespace cryo::engine {

namespace {

// The checkpoint directory's description of the container (container_checkpoint.cc).
constexpr const char* kCheckpointContainerFile = "container.json";
const char* const kUserdataFiles[] = {"hosts", "hostname", "resolv.conf"};

// Removes a path on scope exit unless disarmed.
class RemoveOnExit {
 public:
  explicit RemoveOnExit(std::string path) : path_(std::move(path)) {}
  ~RemoveOnExit() {
    if (path_.empty()) return;
    try {
      fs::remove_all(path_);
    } catch (const std::exception& e) {
      LOG_WARN << "removing " << path_ << ": " << e.what();
    }
  }
  RemoveOnExit(const RemoveOnExit&) = delete;
  RemoveOnExit& operator=(const RemoveOnExit&) = delete;
  void disarm() { path_.clear(); }

 private:
  std::string path_;
};

std::vector<std::string> sorted_entries(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (!d) throw_errno("opendir " + dir);
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

// Paths (relative to `root`) of the overlayfs whiteouts under it: the files the container deleted.
void collect_whiteouts(const std::string& root, const std::string& rel,
                       std::vector<std::string>& out) {
  std::string dir = rel.empty() ? root : root + "/" + rel;
  for (const auto& name : sorted_entries(dir)) {
    std::string path = dir + "/" + name;
    std::string child = rel.empty() ? name : rel + "/" + name;
    struct stat st;
    if (::lstat(path.c_str(), &st) < 0) throw_errno("lstat " + path);
    if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0))
      out.push_back("/" + child);
    else if (S_ISDIR(st.st_mode))
      collect_whiteouts(root, child, out);
  }
}

// Opens the directory `components` below `root_fd`, creating missing ones, never following a
// symlink or leaving the tree.
UniqueFd open_parent_beneath(int root_fd, const std::vector<std::string>& components,
                             const std::string& what) {
  UniqueFd cur(::fcntl(root_fd, F_DUPFD_CLOEXEC, 0));
  if (!cur) throw_errno("dup");
  for (const auto& c : components) {
    int fd = ::openat(cur.get(), c.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
      if (::mkdirat(cur.get(), c.c_str(), 0755) < 0 && errno != EEXIST)
        throw_errno("mkdir for " + what);
      fd = ::openat(cur.get(), c.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0) {
      if (errno == ELOOP || errno == ENOTDIR)
        throw Error("refusing deleted path " + what + ": goes through a symlink or file");
      throw_errno("open parent of " + what);
    }
    cur = UniqueFd(fd);
  }
  return cur;
}

// deleted.files: each path becomes an overlayfs whiteout in the new upper dir (unless the rootfs
// diff already made one).
void apply_deleted_files(const std::string& upper, const nlohmann::json& deleted) {
  if (!deleted.is_array()) throw Error("deleted.files is not a JSON array");
  UniqueFd root = fs::open_or_throw(upper, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  for (const auto& item : deleted) {
    if (!item.is_string()) throw Error("deleted.files has a non-string entry");
    std::string path = item;
    std::vector<std::string> components;
    for (auto& c : split(path, '/')) {
      if (c.empty() || c == ".") continue;
      if (c == "..") throw Error("refusing deleted path " + path + ": \"..\" component");
      components.push_back(c);
    }
    if (components.empty()) throw Error("refusing deleted path \"" + path + "\"");
    std::string base = components.back();
    components.pop_back();
    UniqueFd parent = open_parent_beneath(root.get(), components, path);
    struct stat st;
    if (::fstatat(parent.get(), base.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) continue;
    if (::mknodat(parent.get(), base.c_str(), S_IFCHR | 0000, makedev(0, 0)) < 0)
      throw_errno("whiteout for deleted " + path);
  }
}

std::string rfc3339_now() {
  return format_rfc3339_ns(now_ns());
}

// The head of the archive: what is known before the dump starts.
void write_archive_head(ArchiveWriter& out, const StorePaths& paths, const ContainerRecord& record,
                        const ArchiveExportOptions& options) {
  ContainerStore store(paths);
  std::string container_dir = paths.container_dir(record.id);
  nlohmann::json manifest = {{"format_version", kArchiveFormatVersion},
                             {"created", rfc3339_now()},
                             {"host", describe_host()},
                             {"container",
                              {{"id", record.id},
                               {"name", record.name},
                               {"image_id", record.image_id},
                               {"image_name", record.image_name}}},
                             {"compression", to_string(options.compression)},
                             {"rootfs", !options.ignore_rootfs},
                             {"volumes", !options.ignore_volumes},
                             {"tcp_established", options.checkpoint.tcp_established},
                             {"file_locks", options.checkpoint.file_locks}};
  out.add_bytes(kManifestEntry, manifest.dump(2) + "\n");
  out.add_bytes("config.dump", to_json(record).dump(2) + "\n");
  out.add_file("spec.dump", store.spec_path(record.id));
  out.add_bytes("network.status", record.network_status.dump(2) + "\n");
  out.add_directory("userdata");
  for (const char* name : kUserdataFiles) {
    std::string path = container_dir + "/userdata/" + name;
    if (fs::exists(path)) out.add_file(std::string("userdata/") + name, path);
  }
  out.add_directory("checkpoint");
}

// The tail, written while the container is still frozen (from the sink's finish()): its rootfs
// and volumes as the dumped processes left them, then the checksums; the archive is complete and
// on disk before the dump ends the container.
void write_archive_tail(ArchiveWriter& out, int fd, const StorePaths& paths,
                        const ContainerRecord& record, const ArchiveExportOptions& options,
                        const nlohmann::json& stats) {
  ContainerStore store(paths);
  std::string container_dir = paths.container_dir(record.id);
  uint64_t t0 = steady_now_us();
  // The tree may still be frozen; a held Ctrl-C stops here rather than after the tars.
  throw_if_interrupted();
  if (!options.ignore_rootfs) {
    std::string upper = container_dir + "/upper";
    std::string tar = container_dir + "/rootfs-diff.tar.export-tmp";
    RemoveOnExit remove_tar(tar);
    storage::CreateOptions create;
    create.overlay_whiteouts_to_oci = true;
    with_context("archiving the rootfs changes", [&] { storage::create_tar(upper, tar, create); });
    out.add_file("rootfs-diff.tar", tar);
    std::vector<std::string> deleted;
    collect_whiteouts(upper, "", deleted);
    out.add_bytes("deleted.files", nlohmann::json(deleted).dump() + "\n");
  }
  if (!options.ignore_volumes) {
    bool any = false;
    VolumeStore volumes(paths);
    for (const auto& m : record.config.mounts) {
      if (m.volume_name.empty()) continue;
      throw_if_interrupted();
      if (!any) out.add_directory("volumes");
      any = true;
      std::string tar = container_dir + "/volume-" + m.volume_name + ".tar.export-tmp";
      RemoveOnExit remove_tar(tar);
      with_context("archiving volume " + m.volume_name,
                   [&] { storage::create_tar(volumes.volume_dir(m.volume_name) + "/_data", tar); });
      out.add_file("volumes/" + m.volume_name + ".tar", tar);
    }
  }
  if (fs::exists(store.log_path(record.id)))
    out.add_file("container.log", store.log_path(record.id));
  out.add_bytes("stats-dump", stats.dump(2) + "\n");
  uint64_t t1 = steady_now_us();
  out.finish();
  uint64_t t2 = steady_now_us();
  phase_mark("export: every byte written");
  if (::fsync(fd) < 0) throw_errno("fsync the archive");
  phase_mark("export: durable");
  LOG_DEBUG << "timing export tail: rootfs, volumes, log " << t1 - t0
            << " us, compressor and writer " << t2 - t1 << " us, fsync " << steady_now_us() - t2
            << " us";
}

// The dump's images as entries checkpoint/NAME of the archive, streamed as they are produced.
class ArchiveSink : public ckpt::ImageSink {
 public:
  ArchiveSink(ArchiveWriter& writer, std::string what, std::function<void()> tail)
      : writer_(writer), what_(std::move(what)), tail_(std::move(tail)) {}

  std::unique_ptr<ckpt::ImageOutput> create(const std::string& name, uint64_t size) override {
    writer_.begin_entry("checkpoint/" + name, size);
    ++images_;
    bytes_ += size;
    return std::make_unique<Output>(writer_);
  }
  void finish() override { tail_(); }
  std::string describe() const override { return "archive " + what_; }
  uint64_t images() const { return images_; }
  uint64_t bytes() const { return bytes_; }

 private:
  class Output : public ckpt::ImageOutput {
   public:
    explicit Output(ArchiveWriter& writer) : writer_(writer) {}
    void write(const void* data, size_t size) override { writer_.write(data, size); }
    std::pair<void*, size_t> write_room(size_t min_size) override {
      return writer_.write_room(min_size);
    }
    // An output abandoned without commit() leaves a short entry: the whole export fails and
    // its partial file is removed.
    void commit() override { writer_.end_entry(); }

   private:
    ArchiveWriter& writer_;
  };
  ArchiveWriter& writer_;
  std::string what_;
  std::function<void()> tail_;
  uint64_t images_ = 0;
  uint64_t bytes_ = 0;
};

}  // namespace

ArchiveExportResult export_container(const StorePaths& paths, const std::string& id,
                                     const std::string& file, const ArchiveExportOptions& options) {
  ContainerManager manager(paths);
  ContainerRecord record = manager.load(id);
  require_checkpointable(record, options.checkpoint.leave_running, /*exporting=*/true);

  // Written beside the target and renamed into place, so a failure never leaves a partial file
  // under the requested name (nor destroys an older archive there).
  std::string temp = file + ".partial-" + random_hex(4);
  UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) throw_errno("create " + temp);
  RemoveOnExit remove_temp(temp);

  ArchiveExportResult result;
  uint64_t t0 = steady_now_us();
  with_context("exporting container " + record.name + " to " + file, [&] {
    TransferProgress progress("Exporting", options.progress);
    ArchiveWriter writer(fd.get(), file, options.compression, &progress);
    uint64_t t_writer = steady_now_us();
    phase_mark("export: archive opened");
    write_archive_head(writer, paths, record, options);
    phase_mark("export: head written");
    LOG_DEBUG << "timing export head: archive writer " << t_writer - t0 << " us, entries "
              << steady_now_us() - t_writer << " us";
    ArchiveSink* sink_ptr = nullptr;
    ckpt::DumpStats stats_at_tail;
    ArchiveSink sink(writer, file, [&] {
      // The engine's figures (CRIU's stats-dump names, microseconds), frozen_time up to here.
      nlohmann::json stats = {{"freezing_time", stats_at_tail.freezing_time},
                              {"frozen_time", stats_at_tail.frozen_time},
                              {"memdump_time", stats_at_tail.memdump_time},
                              {"memwrite_time", stats_at_tail.memwrite_time},
                              {"pages_scanned", stats_at_tail.pages_scanned},
                              {"pages_written", stats_at_tail.pages_written},
                              {"images", sink_ptr->images()},
                              {"image_bytes", sink_ptr->bytes()},
                              {"leave_running", options.checkpoint.leave_running},
                              {"export_time_until_tail", steady_now_us() - t0}};
      write_archive_tail(writer, fd.get(), paths, record, options, stats);
    });
    sink_ptr = &sink;
    // The dump streams into the archive; the tail is written from the sink's finish(), before
    // the dump ends (or resumes) the container. Any failure up to there resumes it.
    ContainerCheckpointOptions checkpoint = options.checkpoint;
    checkpoint.sink = &sink;
    checkpoint.stats_at_finish = &stats_at_tail;
    result.checkpoint = checkpoint_container(paths, id, checkpoint);
    progress.finish();
    result.archive_bytes = writer.compressed_bytes();
    result.uncompressed_bytes = writer.uncompressed_bytes();
  });
  uint64_t t_close = steady_now_us();
  if (::close(fd.release()) < 0) throw_errno("close " + temp);
  if (::rename(temp.c_str(), file.c_str()) < 0) throw_errno("rename " + temp + " to " + file);
  remove_temp.disarm();
  result.archive_duration_us = steady_now_us() - t0;
  LOG_DEBUG << "timing export: checkpoint and archive " << t_close - t0 << " us, close and rename "
            << t0 + result.archive_duration_us - t_close << " us";
  return result;
}

// --- import ---

namespace {

std::optional<std::string> read_optional(const std::string& path) {
  return fs::read_file_if_exists(path);
}

nlohmann::json parse_entry(const std::string& staging, const std::string& name) {
  auto text = read_optional(staging + "/" + name);
  if (!text) throw Error("the archive has no " + name);
  try {
    return nlohmann::json::parse(*text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(name + " is not valid JSON: " + e.what());
  }
}

// The tmpfs mounts the checkpoint describes are mounted and filled inside the container on
// restore: each must be an absolute path without "..", and its contents a tmpfs-N.tar of the
// archive.
void check_saved_tmpfs(const nlohmann::json& saved, const std::string& staging) {
  if (!saved.contains("tmpfs")) return;
  if (!saved["tmpfs"].is_array()) throw Error("malformed tmpfs list");
  for (const auto& item : saved["tmpfs"]) {
    SavedTmpfs t;
    try {
      t = saved_tmpfs_from_json(item);
    } catch (const nlohmann::json::exception& e) {
      throw Error(std::string("malformed tmpfs entry: ") + e.what());
    }
    if (t.path.empty() || t.path[0] != '/')
      throw Error("refusing tmpfs at \"" + t.path + "\": not an absolute path");
    for (const auto& c : split(t.path, '/'))
      if (c == "..") throw Error("refusing tmpfs at " + t.path + ": \"..\" component");
    std::string digits = t.archive.size() > 10 ? t.archive.substr(6, t.archive.size() - 10) : "";
    if (!starts_with(t.archive, "tmpfs-") || !t.archive.ends_with(".tar") || digits.empty() ||
        digits.find_first_not_of("0123456789") != std::string::npos)
      throw Error("refusing tmpfs contents \"" + t.archive + "\": not a tmpfs-N.tar");
    if (!fs::exists(staging + "/checkpoint/" + t.archive))
      throw Error("the archive lacks checkpoint/" + t.archive + " (the contents of tmpfs " +
                  t.path + ")");
  }
}

// ContainerStore::create with a given ID (an import keeps the container's ID unless --name).
ContainerRecord create_record_with_id(const StorePaths& paths, ContainerRecord record,
                                      const std::function<void(ContainerRecord&)>& complete) {
  ContainerStore store(paths);
  fs::mkdir_p(paths.containers_dir(), 0700);
  fs::mkdir_p(paths.locks_dir(), 0700);
  FileLock names_lock = FileLock::exclusive(paths.locks_dir() + "/names.lock");
  if (!valid_container_name(record.name))
    throw ExitCodeError("container name \"" + record.name + "\" is invalid", 125);
  for (const auto& other : store.list()) {
    if (other.id == record.id)
      throw ExitCodeError("a container with ID " + record.id +
                              " already exists on this host: use --name to restore a copy "
                              "under a new name and ID",
                          125);
    if (other.name == record.name)
      throw ExitCodeError("the container name \"" + record.name + "\" is already in use by " +
                              other.id + ": use --name to restore under another name",
                          125);
  }
  if (fs::exists(paths.container_dir(record.id)))
    throw ExitCodeError("container directory " + paths.container_dir(record.id) + " exists", 125);
  try {
    fs::mkdir_p(paths.container_dir(record.id), 0700);
    fs::mkdir_p(paths.run_container_dir(record.id), 0700);
    complete(record);
    store.save(record);
  } catch (...) {
    store.remove(record.id);
    throw;
  }
  return record;
}

}  // namespace

ArchiveImportResult import_container(const StorePaths& paths, const std::string& file,
                                     const ArchiveImportOptions& options) {
  uint64_t t0 = steady_now_us();
  fs::mkdir_p(paths.root + "/tmp", 0700);
  std::string staging = paths.root + "/tmp/import-" + random_hex(8);
  fs::mkdir_p(staging, 0700);
  RemoveOnExit remove_staging(staging);

  ArchiveImportResult result;
  UnpackedArchive unpacked;
  {
    TransferProgress progress("Importing", options.progress);
    unpacked = unpack_checkpoint_archive(file, staging, &progress);
  }
  result.unpack_duration_us = steady_now_us() - t0;
  result.archive_bytes = unpacked.bytes;
  check_host_compatibility(unpacked.manifest);

  // Everything the new container needs is read and checked before anything is created.
  ContainerRecord old = with_context("config.dump", [&] {
    try {
      return container_record_from_json(parse_entry(staging, "config.dump"));
    } catch (const nlohmann::json::exception& e) {
      throw Error(std::string("malformed: ") + e.what());
    }
  });
  nlohmann::json network_json = parse_entry(staging, "network.status");
  nlohmann::json saved = with_context("checkpoint/container.json", [&] {
    return parse_entry(staging, std::string("checkpoint/") + kCheckpointContainerFile);
  });
  with_context("checkpoint/container.json", [&] { check_saved_tmpfs(saved, staging); });
  if (!fs::exists(staging + "/checkpoint/inventory.img"))
    throw Error("the archive holds no process images (checkpoint/inventory.img)");
  if (!valid_container_name(old.name) || old.id.size() != 64 ||
      old.id.find_first_not_of("0123456789abcdef") != std::string::npos)
    throw Error("config.dump: malformed container ID or name");

  ImageStore images(paths);
  std::optional<ImageRecord> image = images.find(old.image_id);
  if (!image && !old.image_name.empty()) image = images.find(old.image_name);
  if (!image)
    throw ExitCodeError("the container's image " + old.image_name + " (ID " +
                            old.image_id.substr(0, 12) +
                            ") does not exist on this host: pull or load it before the restore",
                        125);
  std::vector<std::string> layers = images.layer_dirs(*image);
  std::reverse(layers.begin(), layers.end());

  ContainerRecord record = old;
  record.image_id = image->id;
  record.state = ContainerState::kExited;
  record.pid = 0;
  record.monitor_pid = 0;
  record.monitor_start_time = 0;
  record.exit_code = 0;
  record.network_status = nullptr;
  record.checkpointed = true;
  record.restored = false;
  if (!options.name.empty()) {
    record.name = options.name;
    record.id = random_hex(32);
  }
  ContainerConfig& c = record.config;
  VolumeStore volumes(paths);
  for (auto& m : c.mounts)
    if (!m.volume_name.empty()) {
      if (!VolumeStore::valid_name(m.volume_name))
        throw Error("config.dump: invalid volume name " + m.volume_name);
      m.source = volumes.volume_dir(m.volume_name) + "/_data";
    } else if (!fs::exists(m.source)) {
      throw ExitCodeError("the container bind-mounts " + m.source + " (at " + m.destination +
                              "), which does not exist on this host",
                          125);
    }
  std::optional<NetworkStatus> network;
  if (!network_json.is_null()) {
    network = with_context("network.status", [&] {
      try {
        return network_status_from_json(network_json);
      } catch (const nlohmann::json::exception& e) {
        throw Error(std::string("malformed: ") + e.what());
      }
    });
    if (options.ignore_static_ip) network->ip.clear();
    if (options.ignore_static_mac) network->mac.clear();
    if (!options.publish.empty()) {
      network->ports.clear();
      for (const auto& p : options.publish) network->ports.push_back(parse_publish(p));
    }
  }
  if (options.ignore_static_ip) c.static_ip.clear();
  if (options.ignore_static_mac) c.static_mac.clear();
  if (!options.publish.empty()) {
    c.ports.clear();
    for (const auto& p : options.publish) {
      PortMapping m = parse_publish(p);
      c.ports.push_back({m.host_ip, m.host_port, m.container_port, m.protocol});
    }
  }
  ResolvedUser user = resolve_user(c.user, layers);

  std::vector<std::string> created_volumes;
  auto remove_created_volumes = [&] {
    for (const auto& name : created_volumes) {
      try {
        volumes.remove(name);
      } catch (const std::exception& e) {
        LOG_WARN << "removing volume " << name << ": " << e.what();
      }
    }
  };
  try {
    record = create_record_with_id(paths, record, [&](ContainerRecord& rec) {
      std::string dir = paths.container_dir(rec.id);
      SpecInputs in = make_container_dirs(paths, rec, layers, user);
      for (const char* name : kUserdataFiles) {
        std::string from = staging + "/userdata/" + name;
        fs::write_file(dir + "/userdata/" + name, read_optional(from).value_or(""));
      }
      nlohmann::json spec = make_oci_spec(rec, in);
      fs::write_file_atomic(ContainerStore(paths).spec_path(rec.id), spec.dump(2) + "\n", 0600);

      if (!options.ignore_rootfs && fs::exists(staging + "/rootfs-diff.tar")) {
        storage::ExtractOptions extract;
        extract.oci_whiteouts = true;
        with_context("applying the rootfs changes", [&] {
          storage::extract_tar(staging + "/rootfs-diff.tar", in.upper_dir, extract);
          if (auto deleted = read_optional(staging + "/deleted.files")) {
            nlohmann::json list;
            try {
              list = nlohmann::json::parse(*deleted);
            } catch (const nlohmann::json::exception& e) {
              throw Error(std::string("deleted.files is not valid JSON: ") + e.what());
            }
            apply_deleted_files(in.upper_dir, list);
          }
        });
      }
      std::set<std::string> in_archive;
      if (fs::exists(staging + "/volumes"))
        for (const auto& name : sorted_entries(staging + "/volumes"))
          in_archive.insert(name.substr(0, name.size() - 4));
      for (const auto& m : rec.config.mounts) {
        if (m.volume_name.empty()) continue;
        if (volumes.find(m.volume_name)) {
          LOG_WARN << "volume " << m.volume_name << " exists on this host: used as it is";
          continue;
        }
        volumes.create(m.volume_name);
        created_volumes.push_back(m.volume_name);
        if (!options.ignore_volumes && in_archive.count(m.volume_name)) {
          with_context("volume " + m.volume_name, [&] {
            storage::extract_tar(staging + "/volumes/" + m.volume_name + ".tar", m.source);
          });
          volumes.set_needs_copy_up(m.volume_name, false);
        }
      }
      if (fs::exists(staging + "/container.log"))
        ::rename((staging + "/container.log").c_str(),
                 ContainerStore(paths).log_path(rec.id).c_str());

      // The checkpoint directory, with the destination's spec and network.
      saved["spec"] = spec;
      if (network) saved["network_status"] = to_json(*network);
      fs::write_file_atomic(staging + "/checkpoint/" + kCheckpointContainerFile,
                            saved.dump(2) + "\n", 0600);
      // --keep: the dump's statistics stay with the checkpoint, beside the restore's.
      if (options.keep && fs::exists(staging + "/stats-dump"))
        ::rename((staging + "/stats-dump").c_str(), (staging + "/checkpoint/stats-dump").c_str());
      std::string target = checkpoint_dir(paths, rec.id);
      if (::rename((staging + "/checkpoint").c_str(), target.c_str()) < 0)
        throw_errno("rename the unpacked checkpoint to " + target);
      rec.checkpointed_ns = now_ns();
    });
  } catch (...) {
    remove_created_volumes();
    throw;
  }

  ContainerRestoreOptions restore;
  restore.keep = options.keep;
  restore.tcp_established = options.tcp_established;
  restore.file_locks = options.file_locks;
  restore.log_level = options.log_level;
  try {
    result.restore = restore_container(paths, record.id, restore);
  } catch (Error& e) {
    try {
      ContainerManager(paths).remove_stopped(record.id);
    } catch (const std::exception& again) {
      LOG_WARN << "removing the container after its failed restore: " << again.what();
    }
    remove_created_volumes();
    e.add_context("restoring container " + record.name + " from " + file);
    throw;
  }
  result.id = record.id;
  return result;
}

}  // namespace cryo::engine
