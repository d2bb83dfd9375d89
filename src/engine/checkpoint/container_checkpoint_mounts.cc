#include "engine/checkpoint/container_checkpoint_mounts.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <map>
#include <sstream>

#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/strings.h"
#include "engine/storage/tar.h"

namespace cryo::engine {

namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape_mountinfo(const std::string& field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      int value = 0;
      bool octal = true;
      for (size_t k = 1; k <= 3; ++k) {
        char c = field[i + k];
        if (c < '0' || c > '7') octal = false;
        value = value * 8 + (c - '0');
      }
      if (octal) {
        out += static_cast<char>(value);
        i += 3;
        continue;
      }
    }
    out += field[i];
  }
  return out;
}

bool is_under(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  return path.size() > dir.size() && starts_with(path, dir) && path[dir.size()] == '/';
}

// The per-mount flags of mountinfo's options field.
unsigned long mount_flags(const std::string& options) {
  static const std::map<std::string, unsigned long> kFlags = {
      {"ro", MS_RDONLY},         {"nosuid", MS_NOSUID},           {"nodev", MS_NODEV},
      {"noexec", MS_NOEXEC},     {"noatime", MS_NOATIME},         {"nodiratime", MS_NODIRATIME},
      {"relatime", MS_RELATIME}, {"strictatime", MS_STRICTATIME}, {"sync", MS_SYNCHRONOUS}};
  unsigned long flags = 0;
  for (const std::string& option : split(options, ',')) {
    auto it = kFlags.find(option);
    if (it != kFlags.end()) flags |= it->second;
  }
  return flags;
}

// tmpfs superblock options without the read-only state (a per-mount flag here).
std::string tmpfs_data(const std::string& super_options) {
  std::string data;
  for (const std::string& option : split(super_options, ',')) {
    if (option.empty() || option == "rw" || option == "ro") continue;
    data += (data.empty() ? "" : ",") + option;
  }
  return data;
}

}  // namespace

std::vector<MountInfoEntry> read_mountinfo(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/mountinfo";
  std::string text = fs::read_file(path);
  std::vector<MountInfoEntry> entries;
  for (const std::string& line : split(text, '\n')) {
    if (line.empty()) continue;
    std::vector<std::string> fields = split(line, ' ');
    // id parent major:minor root mount_point options [optional...] - fstype source super_options
    size_t dash = 6;
    while (dash < fields.size() && fields[dash] != "-") ++dash;
    if (fields.size() < 6 || dash + 2 >= fields.size())
      throw Error("unexpected line in " + path + ": " + line);
    MountInfoEntry entry;
    entry.mount_point = unescape_mountinfo(fields[4]);
    entry.mount_options = fields[5];
    entry.fstype = fields[dash + 1];
    entry.source = unescape_mountinfo(fields[dash + 2]);
    entry.super_options = dash + 3 < fields.size() ? fields[dash + 3] : "";
    entries.push_back(std::move(entry));
  }
  return entries;
}

nlohmann::json to_json(const SavedTmpfs& tmpfs) {
  return {{"path", tmpfs.path}, {"made_by_app", tmpfs.made_by_app}, {"flags", tmpfs.flags},
          {"data", tmpfs.data}, {"source", tmpfs.source},           {"archive", tmpfs.archive}};
}

SavedTmpfs saved_tmpfs_from_json(const nlohmann::json& json) {
  SavedTmpfs tmpfs;
  tmpfs.path = json.at("path");
  tmpfs.made_by_app = json.at("made_by_app");
  tmpfs.flags = json.at("flags");
  tmpfs.data = json.at("data");
  tmpfs.archive = json.at("archive");
  tmpfs.source = json.value("source", "tmpfs");
  return tmpfs;
}

std::vector<SavedTmpfs> tmpfs_to_save(const nlohmann::json& spec,
                                      const std::vector<MountInfoEntry>& mounts) {
  // What the runtime mounts, each path at most once: the root, the spec's mounts, and the masks
  // and read-only binds of paths that exist. Mounts below a recursive bind came with it.
  std::map<std::string, int> expected = {{"/", 1}};
  std::map<std::string, std::string> spec_type;
  std::vector<std::string> recursive_binds;
  for (const auto& m : spec.at("mounts")) {
    std::string destination = m.at("destination");
    expected[destination] += 1;
    spec_type[destination] = m.value("type", "");
    for (const auto& option : m.value("options", nlohmann::json::array()))
      if (option == "rbind") recursive_binds.push_back(destination);
  }
  const nlohmann::json& linux_spec = spec.at("linux");
  for (const char* key : {"maskedPaths", "readonlyPaths"})
    for (const auto& path : linux_spec.value(key, nlohmann::json::array()))
      expected[path.get<std::string>()] += 1;

  std::vector<SavedTmpfs> out;
  std::map<std::string, int> seen;
  for (const MountInfoEntry& mount : mounts) {
    const std::string& path = mount.mount_point;
    bool below_recursive_bind = false;
    for (const auto& bind : recursive_binds) below_recursive_bind |= is_under(path, bind);
    int count = ++seen[path];
    if (count > 1 && spec_type.count(path) && spec_type[path] == "tmpfs")
      throw Error("not supported yet: a " + mount.fstype + " mounted on " + path +
                  " over the container's tmpfs there");
    bool from_runtime = count <= expected[path] || below_recursive_bind;
    if (from_runtime) {
      auto type = spec_type.find(path);
      // /dev is rebuilt by the runtime (device nodes, devpts, mqueue, shm mount points).
      if (count == 1 && type != spec_type.end() && type->second == "tmpfs" && path != "/dev")
        out.push_back({path, false, 0, "", "tmpfs", ""});
      continue;
    }
    if (mount.fstype != "tmpfs")
      throw Error("not supported yet: the container mounted " + mount.fstype + " (" + mount.source +
                  ") on " + path +
                  " itself; of the mounts an application makes, only tmpfs can be checkpointed");
    out.push_back({path, true, mount_flags(mount.mount_options), tmpfs_data(mount.super_options),
                   mount.source, ""});
  }
  for (size_t i = 0; i < out.size(); ++i) out[i].archive = "tmpfs-" + std::to_string(i) + ".tar";
  return out;
}

namespace {

bool directory_is_empty(const std::string& path) {
  DIR* dir = ::opendir(path.c_str());
  if (!dir) throw_errno("open directory " + path);
  bool empty = true;
  errno = 0;
  while (struct dirent* entry = ::readdir(dir)) {
    std::string name = entry->d_name;
    if (name != "." && name != "..") {
      empty = false;
      break;
    }
  }
  int read_errno = errno;
  ::closedir(dir);
  if (empty && read_errno != 0) {
    errno = read_errno;
    throw_errno("read directory " + path);
  }
  return empty;
}

}  // namespace

void save_tmpfs_contents(const std::vector<SavedTmpfs>& tmpfs, const std::vector<UniqueFd>& roots,
                         const std::string& image_dir) {
  for (size_t i = 0; i < tmpfs.size(); ++i) {
    with_context("saving the contents of tmpfs " + tmpfs[i].path, [&] {
      std::string root = "/proc/self/fd/" + std::to_string(roots.at(i).get());
      std::string archive = image_dir + "/" + tmpfs[i].archive;
      // An empty tmpfs (the usual /dev/shm) is an empty file, not a tar: neither the checkpoint
      // (frozen meanwhile) nor the restore loads the tar library for it. A tar, even of nothing,
      // is never 0 bytes long.
      if (directory_is_empty(root))
        fs::write_file_replace(archive, "", 0600);
      else
        storage::create_tar(root, archive);
    });
  }
}

bool tmpfs_archive_is_empty(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) < 0) throw_errno("stat " + path);
  return st.st_size == 0;
}

void restore_tmpfs_contents(const std::vector<SavedTmpfs>& tmpfs, const std::string& image_dir) {
  for (const SavedTmpfs& t : tmpfs) {
    with_context("restoring tmpfs " + t.path, [&] {
      if (t.made_by_app) {
        fs::mkdir_p(t.path);
        // Filled while writable; the dumped flags (ro among them) are applied after.
        if (::mount(t.source.c_str(), t.path.c_str(), "tmpfs", t.flags & ~MS_RDONLY,
                    t.data.empty() ? nullptr : t.data.c_str()) < 0)
          throw_errno("mount tmpfs on " + t.path);
      }
      std::string archive = image_dir + "/" + t.archive;
      if (!tmpfs_archive_is_empty(archive)) storage::extract_tar(archive, t.path);
      if (t.made_by_app && (t.flags & MS_RDONLY) &&
          ::mount("", t.path.c_str(), nullptr, MS_REMOUNT | MS_BIND | t.flags, nullptr) < 0)
        throw_errno("remount " + t.path + " read-only");
    });
  }
}

}  // namespace cryo::engine
