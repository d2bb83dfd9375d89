// Files with a name: regular files, directories, O_PATH fds (of anything with a path), files
// deleted while open ("ghosts": their content goes into the image) and memfds held as fds.
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "checkpoint/file_kinds/file_kind.h"
#include "common/error.h"
#include "common/strings.h"

namespace cryo::ckpt::files {

namespace {

constexpr std::string_view kDeletedSuffix = " (deleted)";
constexpr std::string_view kMemfdPrefix = "/memfd:";

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string strip_deleted(const std::string& link) {
  return ends_with(link, kDeletedSuffix) ? link.substr(0, link.size() - kDeletedSuffix.size())
                                         : link;
}

void check_file_type(int fd, const json& description) {
  struct stat st;
  if (::fstat(fd, &st) < 0) throw_errno("fstat");
  auto dumped = description.at("mode").get<uint32_t>();
  if ((st.st_mode & S_IFMT) != (dumped & S_IFMT))
    throw Error("the path now names a file of another type (mode " + std::to_string(st.st_mode) +
                ", dumped " + std::to_string(dumped) + ")");
  if ((S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) &&
      st.st_rdev != description.at("rdev").get<uint64_t>())
    throw Error("the path now names another device");
}

// --- named files and ghosts -------------------------------------------------------------------

bool path_claims(const DumpedFd& fd) {
  if (fd.link.empty() || fd.link[0] != '/' || starts_with(fd.link, kMemfdPrefix)) return false;
  if (fd.flags & O_PATH) return true;
  return S_ISREG(fd.st.st_mode) || S_ISDIR(fd.st.st_mode);
}

void dump_ghost(DumpContext& ctx, const DumpedFd& fd, json& description) {
  if (!S_ISREG(fd.st.st_mode))
    throw Error("not supported yet: a " +
                std::string(S_ISDIR(fd.st.st_mode) ? "directory" : "file") +
                " removed while open that is not a regular file");
  auto object = ctx.object("ghosts", fd.st.st_dev, fd.st.st_ino);
  if (object.created) {
    json& ghost = *object.entry;
    ghost["path"] = strip_deleted(fd.link);
    ghost["mode"] = static_cast<uint32_t>(fd.st.st_mode);
    ghost["uid"] = fd.st.st_uid;
    ghost["gid"] = fd.st.st_gid;
    ghost["dev"] = static_cast<uint64_t>(fd.st.st_dev);  // to find the tree's mappings of it
    ghost["ino"] = static_cast<uint64_t>(fd.st.st_ino);
    UniqueFd reader = reopen_fd(fd.stolen, O_RDONLY);
    ghost["content"] =
        dump_file_content(ctx.sink(), "ghost-" + std::to_string(object.id) + ".img", reader.get());
  }
  description["kind"] = "ghost";
  description["ghost"] = object.id;
}

void path_dump(DumpContext& ctx, const DumpedFd& fd, json& description) {
  if (S_ISCHR(fd.st.st_mode) || S_ISBLK(fd.st.st_mode))
    description["rdev"] = static_cast<uint64_t>(fd.st.st_rdev);
  if (fd.st.st_nlink == 0) return dump_ghost(ctx, fd, description);
  if (ends_with(fd.link, kDeletedSuffix))
    throw Error(
        "not supported yet: a file unlinked from its path while open that still has other "
        "links");
  // The restore opens the path again: it must still name this very file.
  std::string seen = "/proc/" + std::to_string(fd.pid) + "/root" + fd.link;
  struct stat st;
  int r = (fd.flags & O_NOFOLLOW) ? ::lstat(seen.c_str(), &st) : ::stat(seen.c_str(), &st);
  if (r < 0) throw_errno("stat " + fd.link);
  if (st.st_dev != fd.st.st_dev || st.st_ino != fd.st.st_ino)
    throw Error("not supported yet: the path " + fd.link +
                " now names another file than the open one (renamed or over-mounted)");
  description["kind"] = "path";
  description["path"] = fd.link;
}

UniqueFd ghost_open(RestoreContext& ctx, const json& description) {
  auto id = description.at("ghost").get<uint64_t>();
  if (ctx.object_fd(id) < 0) {
    const json& ghost = ctx.object("ghosts", id);
    auto path = ghost.at("path").get<std::string>();
    auto slash = path.rfind('/');
    std::string dir = slash == 0 ? "/" : path.substr(0, slash);
    std::string name = path.substr(slash + 1);
    UniqueFd dir_fd =
        with_context("directory " + dir, [&] { return ctx.open_path(dir, O_PATH | O_DIRECTORY); });
    // The original name when it is free, so /proc/PID/fd shows the same "PATH (deleted)".
    int file = ::openat(dir_fd.get(), name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (file < 0 && errno == EEXIST) {
      name = ".cryo-ghost-" + std::to_string(id) + "-" + random_hex(4);
      file = ::openat(dir_fd.get(), name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    }
    if (file < 0) throw_errno("creating deleted file " + dir + "/" + name);
    UniqueFd file_fd(file);
    if (::unlinkat(dir_fd.get(), name.c_str(), 0) < 0) throw_errno("unlink " + dir + "/" + name);
    restore_file_content(ctx.image_dir(), ghost.at("content").at("image").get<std::string>(),
                         file_fd.get(), ghost.at("content"));
    if (::fchown(file_fd.get(), ghost.at("uid").get<uid_t>(), ghost.at("gid").get<gid_t>()) < 0)
      throw_errno("fchown");
    if (::fchmod(file_fd.get(), ghost.at("mode").get<uint32_t>() & 07777) < 0)
      throw_errno("fchmod");
    if (ghost.contains("ino")) {  // absent from images of older dumps
      UniqueFd for_mappings(::fcntl(file_fd.get(), F_DUPFD_CLOEXEC, 0));
      if (!for_mappings) throw_errno("fcntl F_DUPFD_CLOEXEC");
      ctx.ghosts_by_inode()[{ghost.at("dev").get<uint64_t>(), ghost.at("ino").get<uint64_t>()}] =
          std::move(for_mappings);
    }
    ctx.set_object_fd(id, std::move(file_fd));
  }
  auto flags = description.at("flags").get<int>();
  UniqueFd fd = reopen_fd(ctx.object_fd(id), flags);
  if (!(flags & O_PATH)) restore_position(fd.get(), description);
  return fd;
}

UniqueFd path_open(RestoreContext& ctx, const json& description) {
  if (description.at("kind") == "ghost") return ghost_open(ctx, description);
  auto flags = description.at("flags").get<int>();
  UniqueFd fd = ctx.open_path(description.at("path").get<std::string>(), open_flags(flags));
  check_file_type(fd.get(), description);
  if (!(flags & O_PATH)) restore_position(fd.get(), description);
  return fd;
}

// --- memfds -----------------------------------------------------------------------------------

bool memfd_claims(const DumpedFd& fd) {
  return starts_with(fd.link, kMemfdPrefix);
}

void memfd_dump(DumpContext& ctx, const DumpedFd& fd, json& description) {
  auto object = ctx.object("memfds", fd.st.st_dev, fd.st.st_ino);
  if (object.created) {
    struct statfs sfs;
    if (::fstatfs(fd.stolen, &sfs) < 0) throw_errno("fstatfs");
    if (sfs.f_type == HUGETLBFS_MAGIC) throw Error("not supported yet: hugetlb memfd");
    json& memfd = *object.entry;
    std::string name = strip_deleted(fd.link).substr(kMemfdPrefix.size());
    memfd["name"] = name;
    memfd["ino"] = static_cast<uint64_t>(fd.st.st_ino);
    memfd["mode"] = static_cast<uint32_t>(fd.st.st_mode);
    memfd["uid"] = fd.st.st_uid;
    memfd["gid"] = fd.st.st_gid;
    int seals = ::fcntl(fd.stolen, F_GET_SEALS);
    if (seals < 0) throw_errno("fcntl F_GET_SEALS");
    memfd["seals"] = seals;
    UniqueFd reader = reopen_fd(fd.stolen, O_RDONLY);
    memfd["content"] =
        dump_file_content(ctx.sink(), "memfd-" + std::to_string(object.id) + ".img", reader.get());
  }
  description["kind"] = "memfd";
  description["memfd"] = object.id;
}

UniqueFd memfd_open(RestoreContext& ctx, const json& description) {
  auto id = description.at("memfd").get<uint64_t>();
  if (ctx.object_fd(id) < 0) {
    const json& memfd = ctx.object("memfds", id);
    auto name = memfd.at("name").get<std::string>();
    int raw = ::memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (raw < 0) throw_errno("memfd_create " + name);
    UniqueFd fd(raw);
    restore_file_content(ctx.image_dir(), memfd.at("content").at("image").get<std::string>(),
                         fd.get(), memfd.at("content"));
    if (::fchown(fd.get(), memfd.at("uid").get<uid_t>(), memfd.at("gid").get<gid_t>()) < 0)
      throw_errno("fchown");
    if (::fchmod(fd.get(), memfd.at("mode").get<uint32_t>() & 07777) < 0) throw_errno("fchmod");
    auto seals = memfd.at("seals").get<int>();
    if (seals != 0 && ::fcntl(fd.get(), F_ADD_SEALS, seals) < 0)
      throw_errno("fcntl F_ADD_SEALS " + std::to_string(seals));
    auto ino = memfd.at("ino").get<uint64_t>();
    int raw_fd = fd.get();
    ctx.memfds_by_inode()[ino] = std::move(fd);
    ctx.set_object_fd(id, UniqueFd(::fcntl(raw_fd, F_DUPFD_CLOEXEC, 0)));
    if (ctx.object_fd(id) < 0) throw_errno("fcntl F_DUPFD_CLOEXEC");
  }
  auto flags = description.at("flags").get<int>();
  UniqueFd fd = reopen_fd(ctx.object_fd(id), flags);
  if (!(flags & O_PATH)) restore_position(fd.get(), description);
  return fd;
}

}  // namespace

const FileKind kPathFileKind{{"path", "ghost"}, path_claims, path_dump, path_open};
const FileKind kMemfdKind{{"memfd"}, memfd_claims, memfd_dump, memfd_open};

}  // namespace cryo::ckpt::files
