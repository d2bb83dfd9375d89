#include "checkpoint/files.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/kcmp.h>
#include <linux/openat2.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "checkpoint/file_kinds/file_kind.h"
#include "checkpoint/file_locks.h"
#include "checkpoint/image/image_file.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/strings.h"

namespace cryo::ckpt {

using files::DumpContext;
using files::DumpedFd;
using files::FileKind;
using files::RestoreContext;

namespace {

// Dump time: asked in this order; the first kind that claims an fd dumps it.
const FileKind* const kFileKinds[] = {
    &files::kMemfdKind,
    &files::kMqueueKind,  // before plain files: its fds look like regular files
    &files::kPathFileKind,
    &files::kFifoKind,
    &files::kPipeKind,
    &files::kTerminalKind,
    &files::kDeviceKind,
    // Sockets (ckpt-sockets).
    &files::kInetSocketKind,
    &files::kUnixSocketKind,
    &files::kNetlinkSocketKind,
    // Event descriptors (ckpt-events).
    &files::kEventFdKind,
    &files::kPidFdKind,
    &files::kEpollKind,
    &files::kSignalFdKind,
    &files::kTimerFdKind,
    &files::kInotifyKind,
    // Fds outside the tree (container-cr); never claims at dump (chosen by external_files).
    &files::kExternalKind,
};

constexpr const char* kFilesImage = "files.img";

std::string fdtable_image(pid_t pid) {
  return "fdtable-" + std::to_string(pid) + ".img";
}

int sys_kcmp(pid_t pid1, pid_t pid2, int type, unsigned long idx1, unsigned long idx2) {
  return static_cast<int>(::syscall(SYS_kcmp, pid1, pid2, type, idx1, idx2));
}

// The name of a kind no FileKind claims, for the error message: "socket", "eventfd",
// "eventpoll", "inotify", "[io_uring]"...
std::string unsupported_kind_name(const DumpedFd& fd) {
  const std::string& link = fd.link;
  if (starts_with(link, "socket:")) return "socket";
  if (starts_with(link, "anon_inode:")) {
    std::string name = link.substr(std::strlen("anon_inode:"));
    if (name.size() > 2 && name.front() == '[' && name.back() == ']')
      name = name.substr(1, name.size() - 2);
    return name;
  }
  if (S_ISSOCK(fd.st.st_mode)) return "socket";
  if (S_ISCHR(fd.st.st_mode))
    return "character device " + std::to_string(major(fd.st.st_rdev)) + ":" +
           std::to_string(minor(fd.st.st_rdev));
  if (S_ISBLK(fd.st.st_mode)) return "block device";
  return link;
}

struct FdInfo {
  uint64_t pos = 0;
  int flags = 0;
  int mnt_id = -1;
};

FdInfo parse_fdinfo(const std::string& text) {
  FdInfo info;
  for (const std::string& line : split(text, '\n')) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    std::string value(trim(std::string_view(line).substr(colon + 1)));
    if (key == "pos") info.pos = std::stoull(value);
    if (key == "flags") info.flags = static_cast<int>(std::stoul(value, nullptr, 8));
    if (key == "mnt_id") info.mnt_id = std::stoi(value);
  }
  return info;
}

}  // namespace

namespace files {

std::string DumpedFd::describe() const {
  return "pid " + std::to_string(pid) + ": fd " + std::to_string(fd) + " (" + link + ")";
}

DumpContext::ObjectRef DumpContext::object(const std::string& section, uint64_t dev, uint64_t ino) {
  Section& s = sections_[section];
  auto [it, inserted] = s.by_inode.try_emplace({dev, ino}, 0);
  if (inserted) {
    it->second = next_id();
    json& entry = s.objects[it->second];
    entry = json::object();
    entry["id"] = it->second;
  }
  return ObjectRef{it->second, &s.objects[it->second], inserted};
}

size_t DumpContext::object_count(const std::string& section) const {
  auto it = sections_.find(section);
  return it == sections_.end() ? 0 : it->second.objects.size();
}

json DumpContext::sections() const {
  json out = json::object();
  for (const auto& [name, section] : sections_) {
    json list = json::array();
    for (const auto& [id, entry] : section.objects) list.push_back(entry);
    out[name] = std::move(list);
  }
  return out;
}

RestoreContext::RestoreContext(std::string image_dir, FileRestoreOptions options, const json& files)
    : image_dir_(std::move(image_dir)), options_(std::move(options)) {
  for (const auto& [name, list] : files.items()) {
    if (name == "descriptions" || !list.is_array()) continue;
    for (const json& entry : list) objects_by_id_[entry.at("id").get<uint64_t>()] = &entry;
  }
  if (!options_.root_dir.empty())
    root_fd_ = fs::open_or_throw(options_.root_dir, O_PATH | O_DIRECTORY);
}

const json& RestoreContext::object(const std::string& section, uint64_t id) const {
  auto it = objects_by_id_.find(id);
  if (it == objects_by_id_.end())
    throw Error(std::string(kFilesImage) + ": object " + std::to_string(id) + " of section " +
                section + " is missing");
  return *it->second;
}

int RestoreContext::object_fd(uint64_t id, int slot) const {
  auto it = object_fds_.find({id, slot});
  return it == object_fds_.end() ? -1 : it->second.get();
}

void RestoreContext::set_object_fd(uint64_t id, UniqueFd fd, int slot) {
  object_fds_[{id, slot}] = std::move(fd);
}

UniqueFd RestoreContext::open_path(const std::string& path, int flags, mode_t mode) const {
  if (!root_fd_) {
    int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
    if (fd < 0) throw_errno("open");
    return UniqueFd(fd);
  }
  struct open_how how {};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
  how.resolve = RESOLVE_IN_ROOT;
  int fd = static_cast<int>(::syscall(SYS_openat2, root_fd_.get(), path.c_str(), &how, sizeof how));
  if (fd < 0) throw_errno("open under " + options_.root_dir);
  return UniqueFd(fd);
}

UniqueFd reopen_fd(int fd, int flags) {
  std::string proc = "/proc/self/fd/" + std::to_string(fd);
  int n = ::open(proc.c_str(), open_flags(flags));
  if (n < 0) throw_errno("reopen through " + proc);
  return UniqueFd(n);
}

int open_flags(int dumped_flags) {
  // O_CREAT/O_EXCL/O_TRUNC never survive in f_flags, but an image is input: never let them
  // through. Descriptions are created close-on-exec; install() sets each fd's own flag.
  return (dumped_flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC | O_TMPFILE)) | O_CLOEXEC |
         O_NOCTTY;
}

void restore_position(int fd, const json& description) {
  auto pos = description.at("pos").get<uint64_t>();
  if (::lseek(fd, static_cast<off_t>(pos), SEEK_SET) < 0)
    throw_errno("lseek to " + std::to_string(pos));
}

json dump_file_content(ImageSink& sink, const std::string& name, int fd) {
  struct stat st;
  if (::fstat(fd, &st) < 0) throw_errno("fstat");
  // The data extents first: they give the image's size before any byte is written.
  json extents = json::array();
  std::vector<std::pair<off_t, off_t>> regions;
  uint64_t payload = 0;
  off_t end = st.st_size;
  off_t offset = 0;
  while (offset < end) {
    off_t data = ::lseek(fd, offset, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole up to the end
      throw_errno("lseek SEEK_DATA");
    }
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) throw_errno("lseek SEEK_HOLE");
    hole = std::min(hole, end);
    extents.push_back({data, hole - data});
    regions.push_back({data, hole});
    payload += static_cast<uint64_t>(hole - data);
    offset = hole;
  }
  RawImageWriter writer(sink, name, payload);
  std::vector<char> buf(1 << 20);
  for (auto [data, hole] : regions) {
    for (off_t at = data; at < hole;) {
      size_t want = static_cast<size_t>(std::min<off_t>(static_cast<off_t>(buf.size()), hole - at));
      ssize_t n = ::pread(fd, buf.data(), want, at);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw_errno("pread");
      }
      if (n == 0) throw Error("file shrank while being dumped");
      writer.append(buf.data(), static_cast<size_t>(n));
      at += n;
    }
  }
  writer.finish();
  return json{{"size", st.st_size}, {"extents", extents}, {"image", name}};
}

void restore_file_content(const std::string& image_dir, const std::string& name, int fd,
                          const json& content) {
  RawImageReader reader(image_dir, name);
  reader.verify_checksum();
  if (::ftruncate(fd, content.at("size").get<off_t>()) < 0) throw_errno("ftruncate");
  std::vector<char> buf(1 << 20);
  uint64_t image_offset = 0;
  for (const json& extent : content.at("extents")) {
    auto offset = extent.at(0).get<uint64_t>();
    auto length = extent.at(1).get<uint64_t>();
    for (uint64_t done = 0; done < length;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), length - done));
      reader.read_at(image_offset, buf.data(), n);
      const char* p = buf.data();
      size_t left = n;
      off_t at = static_cast<off_t>(offset + done);
      while (left > 0) {
        ssize_t w = ::pwrite(fd, p, left, at);
        if (w < 0) {
          if (errno == EINTR) continue;
          throw_errno("pwrite");
        }
        p += w;
        left -= static_cast<size_t>(w);
        at += w;
      }
      done += n;
      image_offset += n;
    }
  }
  if (image_offset != reader.payload_size())
    throw Error(reader.path() + ": holds " + std::to_string(reader.payload_size()) +
                " bytes, the extents describe " + std::to_string(image_offset));
}

}  // namespace files

// ---------------------------------------------------------------------------------------------
// Dump

struct FileDumper::Impl {
  struct Description {
    uint64_t id;
    UniqueFd stolen;  // one fd of it, for kcmp against the next candidates
  };

  DumpContext ctx;
  json descriptions = json::array();
  // Candidates for "same description" by inode: kcmp only compares within one inode.
  std::map<std::pair<uint64_t, uint64_t>, std::vector<Description>> by_inode;
  std::vector<pid_t> dumped_pids;
  std::vector<pid_t> dumped_image_pids;  // the same processes, as the images name them
  files::FileLockDumper locks;
  bool finished = false;

  // Set when the dumper was given a directory rather than a sink (it finishes it).
  std::unique_ptr<DirectorySink> own_sink;

  Impl(ImageSink& sink, FileDumpOptions options) : ctx(sink, options), locks(options.file_locks) {}

  uint64_t find_or_add(DumpedFd& fd, UniqueFd stolen) {
    auto& candidates = by_inode[{fd.st.st_dev, fd.st.st_ino}];
    // Kept in kcmp order and searched by bisection (ckpt-events): every eventfd, epoll, timerfd...
    // of a tree shares one anonymous inode, and a linear scan made 1000 of them cost ~6 s.
    const pid_t self = ::getpid();
    size_t low = 0, high = candidates.size();
    while (low < high) {
      size_t mid = low + (high - low) / 2;
      int r = sys_kcmp(self, self, KCMP_FILE, static_cast<unsigned long>(stolen.get()),
                       static_cast<unsigned long>(candidates[mid].stolen.get()));
      if (r < 0) throw_errno("kcmp KCMP_FILE");
      if (r == 0) return candidates[mid].id;
      if (r == 1)  // ours sorts first
        high = mid;
      else
        low = mid + 1;
    }
    const size_t insert_at = low;
    const FileKind* kind = nullptr;
    // container-cr: fds the caller names as outside the tree win over every kind.
    if (ctx.options().external_files.count(fd.link)) kind = &files::kExternalKind;
    for (const FileKind* k : kFileKinds) {
      if (kind != nullptr) break;
      if (k->claims(fd)) {
        kind = k;
        break;
      }
    }
    if (kind == nullptr) throw Error("unsupported file kind " + unsupported_kind_name(fd));
    json description = json::object();
    uint64_t id = ctx.next_id();
    description["id"] = id;
    description["link"] = fd.link;
    description["flags"] = fd.flags;
    description["pos"] = fd.pos;
    description["mnt_id"] = fd.mnt_id;
    description["dev"] = static_cast<uint64_t>(fd.st.st_dev);
    description["ino"] = static_cast<uint64_t>(fd.st.st_ino);
    description["mode"] = static_cast<uint32_t>(fd.st.st_mode);
    kind->dump(ctx, fd, description);
    if (!description.contains("kind")) throw Error("internal: file kind did not name itself");
    descriptions.push_back(std::move(description));
    candidates.insert(candidates.begin() + static_cast<std::ptrdiff_t>(insert_at),
                      Description{id, std::move(stolen)});
    return id;
  }
};

FileDumper::FileDumper(std::string image_dir, FileDumpOptions options)
    : FileDumper(std::make_unique<DirectorySink>(std::move(image_dir)), options) {}

FileDumper::FileDumper(std::unique_ptr<DirectorySink> sink, FileDumpOptions options)
    : FileDumper(*sink, options) {
  impl_->own_sink = std::move(sink);
}

FileDumper::FileDumper(ImageSink& sink, FileDumpOptions options)
    : impl_(std::make_unique<Impl>(sink, options)) {
  // One stolen fd per description of the whole tree is held until finish(): allow as many as
  // the hard limit does.
  struct rlimit lim;
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &lim) < 0) throw_errno("setrlimit RLIMIT_NOFILE");
  }
}

// Sockets hook: a dumper that was not told the tree gets killed undoes what the dump changed in
// the live objects (TCP repair mode).
FileDumper::~FileDumper() {
  impl_->ctx.run_resume_actions();
}

void FileDumper::keep_tcp_repair_for_kill() {
  impl_->ctx.run_kill_actions();
  impl_->ctx.drop_resume_actions();
}

void FileDumper::release_tcp_repair() {
  impl_->ctx.run_resume_actions();
}

void FileDumper::dump_process(pid_t pid, int pidfd) {
  dump_process(pid, pidfd, pid);
}

void FileDumper::dump_process(pid_t pid, int pidfd, pid_t image_pid) {
  std::string proc = "/proc/" + std::to_string(pid);
  json table = json::object();
  table["pid"] = image_pid;
  // Processes created with CLONE_FILES share one fd table: its fds are recorded once, with the
  // first process dumped (parents are dumped before their children).
  for (size_t i = 0; i < impl_->dumped_pids.size(); ++i) {
    pid_t other = impl_->dumped_pids[i];
    int r = sys_kcmp(pid, other, KCMP_FILES, 0, 0);
    if (r < 0)
      throw_errno("pid " + std::to_string(pid) + ": kcmp KCMP_FILES with pid " +
                  std::to_string(other));
    if (r == 0) {
      table["shared_with"] = impl_->dumped_image_pids[i];
      table["fds"] = json::array();
      with_context("pid " + std::to_string(pid),
                   [&] { write_json_image(impl_->ctx.sink(), fdtable_image(image_pid), table); });
      return;
    }
  }

  std::vector<int> fds;
  {
    DIR* dir = ::opendir((proc + "/fd").c_str());
    if (dir == nullptr) throw_errno("pid " + std::to_string(pid) + ": opendir " + proc + "/fd");
    while (dirent* e = ::readdir(dir)) {
      if (e->d_name[0] == '.') continue;
      fds.push_back(std::atoi(e->d_name));
    }
    ::closedir(dir);
  }
  std::sort(fds.begin(), fds.end());

  json entries = json::array();
  for (int n : fds) {
    DumpedFd fd;
    fd.pid = pid;
    fd.image_pid = image_pid;  // container-cr
    fd.fd = n;
    std::string what = "pid " + std::to_string(pid) + ": fd " + std::to_string(n);
    with_context(what, [&] { fd.link = fs::read_link(proc + "/fd/" + std::to_string(n)); });
    with_context(fd.describe(), [&] {
      std::string fdinfo = fs::read_file(proc + "/fdinfo/" + std::to_string(n));
      FdInfo info = parse_fdinfo(fdinfo);
      fd.cloexec = (info.flags & O_CLOEXEC) != 0;
      fd.flags = info.flags & ~O_CLOEXEC;
      fd.pos = info.pos;
      fd.mnt_id = info.mnt_id;
      int stolen = static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, n, 0));
      if (stolen < 0) throw_errno("pidfd_getfd");
      UniqueFd stolen_fd(stolen);
      if (::fstat(stolen, &fd.st) < 0) throw_errno("fstat");
      fd.stolen = stolen;
      uint64_t id = impl_->find_or_add(fd, std::move(stolen_fd));
      impl_->locks.add_fd(fd, id, fdinfo);
      entries.push_back({{"fd", n}, {"description", id}, {"cloexec", fd.cloexec}});
    });
  }
  table["fds"] = std::move(entries);
  with_context("pid " + std::to_string(pid),
               [&] { write_json_image(impl_->ctx.sink(), fdtable_image(image_pid), table); });
  impl_->dumped_pids.push_back(pid);
  impl_->dumped_image_pids.push_back(image_pid);
}

void FileDumper::finish() {
  impl_->ctx.run_finish_checks();  // sockets hook
  json files = impl_->ctx.sections();
  files["descriptions"] = impl_->descriptions;
  files["file_locks"] = impl_->locks.image();
  write_json_image(impl_->ctx.sink(), kFilesImage, files);
  if (impl_->own_sink) impl_->own_sink->finish();
  impl_->by_inode.clear();
  impl_->finished = true;
}

// ---------------------------------------------------------------------------------------------
// Restore

struct FilePool::Impl {
  std::string image_dir;
  FileRestoreOptions options;
  struct FdEntry {
    int fd;
    uint64_t description;
    bool cloexec;
  };
  struct Table {
    std::vector<FdEntry> fds;
    pid_t shared_with = -1;
  };
  std::map<pid_t, Table> tables;
  std::map<uint64_t, UniqueFd> descriptions;                 // description id -> pool fd
  std::map<uint64_t, UniqueFd> memfds;                       // dumped inode -> pool fd
  std::map<std::pair<uint64_t, uint64_t>, UniqueFd> ghosts;  // dumped (dev, inode) -> pool fd
  int max_fd = -1;
  // Descriptions whose kind has an after_install step: id -> (kind, description).
  std::map<uint64_t, std::pair<const FileKind*, json>> after_install;
  std::unique_ptr<files::FileLockRestorer> locks;
};

FilePool::FilePool() : impl_(std::make_unique<Impl>()) {}
FilePool::~FilePool() = default;

int FilePool::max_fd() const {
  return impl_->max_fd;
}

pid_t FilePool::fd_table_owner(pid_t pid) const {
  auto it = impl_->tables.find(pid);
  if (it == impl_->tables.end() || it->second.shared_with < 0) return pid;
  return it->second.shared_with;
}

std::vector<pid_t> FilePool::fd_table_sharers(pid_t owner) const {
  std::vector<pid_t> sharers;
  for (const auto& [pid, table] : impl_->tables)
    if (table.shared_with == owner) sharers.push_back(pid);
  return sharers;
}

std::vector<FilePool::PosixLock> FilePool::posix_locks(pid_t pid) const {
  std::vector<int> fds;
  std::vector<files::FileLock> locks = impl_->locks->process_locks(pid, &fds);
  std::vector<PosixLock> out;
  for (size_t i = 0; i < locks.size(); ++i)
    out.push_back(PosixLock{fds[i], locks[i].write, locks[i].start, locks[i].length});
  return out;
}

int FilePool::ghost_for_inode(uint64_t dumped_dev, uint64_t dumped_ino) const {
  auto it = impl_->ghosts.find({dumped_dev, dumped_ino});
  return it == impl_->ghosts.end() ? -1 : it->second.get();
}

int FilePool::memfd_for_inode(uint64_t dumped_ino) const {
  auto it = impl_->memfds.find(dumped_ino);
  return it == impl_->memfds.end() ? -1 : it->second.get();
}

namespace {

// The fds of a restoring process may go up to the dumped numbers plus the pool above them.
void ensure_fd_limit(uint64_t needed) {
  struct rlimit lim;
  if (::getrlimit(RLIMIT_NOFILE, &lim) < 0) throw_errno("getrlimit RLIMIT_NOFILE");
  if (lim.rlim_cur >= needed) return;
  if (lim.rlim_max < needed)
    throw Error("restoring files needs " + std::to_string(needed) +
                " fd numbers, above the RLIMIT_NOFILE hard limit " + std::to_string(lim.rlim_max));
  lim.rlim_cur = needed;
  if (::setrlimit(RLIMIT_NOFILE, &lim) < 0) throw_errno("setrlimit RLIMIT_NOFILE");
}

const FileKind* kind_for(const std::string& name) {
  for (const FileKind* k : kFileKinds)
    for (const std::string& n : k->kinds)
      if (n == name) return k;
  return nullptr;
}

}  // namespace

std::unique_ptr<FilePool> FilePool::open(const std::string& image_dir,
                                         const FileRestoreOptions& options) {
  std::unique_ptr<FilePool> pool(new FilePool());
  Impl& impl = *pool->impl_;
  impl.image_dir = image_dir;
  impl.options = options;

  // Fd tables, and for messages the first fd that uses each description.
  std::map<uint64_t, std::pair<pid_t, int>> first_user;
  {
    DIR* dir = ::opendir(image_dir.c_str());
    if (dir == nullptr) throw_errno("opendir " + image_dir);
    std::vector<std::string> names;
    while (dirent* e = ::readdir(dir)) {
      std::string name = e->d_name;
      if (starts_with(name, "fdtable-") && name.size() > 12 &&
          name.compare(name.size() - 4, 4, ".img") == 0)
        names.push_back(name);
    }
    ::closedir(dir);
    for (const std::string& name : names) {
      json t = read_json_image(image_dir, name);
      with_context(name, [&] {
        auto pid = t.at("pid").get<pid_t>();
        Impl::Table& table = impl.tables[pid];
        if (t.contains("shared_with")) table.shared_with = t.at("shared_with").get<pid_t>();
        for (const json& e : t.at("fds")) {
          Impl::FdEntry entry{e.at("fd").get<int>(), e.at("description").get<uint64_t>(),
                              e.at("cloexec").get<bool>()};
          if (entry.fd < 0) throw Error("negative fd number " + std::to_string(entry.fd));
          table.fds.push_back(entry);
          impl.max_fd = std::max(impl.max_fd, entry.fd);
          auto [it, inserted] = first_user.try_emplace(entry.description, pid, entry.fd);
          if (!inserted && pid < it->second.first) it->second = {pid, entry.fd};
        }
      });
    }
  }
  for (const auto& [pid, table] : impl.tables) {
    if (table.shared_with < 0) continue;
    auto owner = impl.tables.find(table.shared_with);
    if (owner == impl.tables.end() || owner->second.shared_with >= 0)
      throw Error("pid " + std::to_string(pid) + " shares the fd table of pid " +
                  std::to_string(table.shared_with) + ", which has no fd table of its own");
    if (!table.fds.empty())
      throw Error("pid " + std::to_string(pid) + " shares the fd table of pid " +
                  std::to_string(table.shared_with) + " but has fds of its own in " +
                  fdtable_image(pid));
  }

  json files = read_json_image(image_dir, kFilesImage);
  const json& descriptions = files.at("descriptions");
  ensure_fd_limit(static_cast<uint64_t>(impl.max_fd) + 1 + descriptions.size() + 64);

  impl.locks = std::make_unique<files::FileLockRestorer>(files, options.file_locks);
  RestoreContext ctx(image_dir, options, files);
  std::set<pid_t> tree_pids;
  for (const auto& [pid, table] : impl.tables) tree_pids.insert(pid);
  ctx.set_tree_pids(std::move(tree_pids));
  for (const json& d : descriptions) {
    auto id = d.at("id").get<uint64_t>();
    std::string context = "restoring description " + std::to_string(id);
    if (auto it = first_user.find(id); it != first_user.end())
      context = "restoring fd " + std::to_string(it->second.second) + " of pid " +
                std::to_string(it->second.first);
    context += " (" + d.value("link", std::string("?")) + ")";
    with_context(context, [&] {
      if (auto inherited = options.inherit_fds.find(d.value("link", std::string()));
          inherited != options.inherit_fds.end()) {
        int fd = ::fcntl(inherited->second, F_DUPFD_CLOEXEC, 0);
        if (fd < 0) throw_errno("inherited fd " + std::to_string(inherited->second));
        impl.descriptions[id] = UniqueFd(fd);
        return;
      }
      std::string kind_name = d.at("kind").get<std::string>();
      const FileKind* kind = kind_for(kind_name);
      if (kind == nullptr) throw Error("unknown file kind " + kind_name + " in " + kFilesImage);
      impl.descriptions[id] = kind->open(ctx, d);
      if (kind->after_install) impl.after_install[id] = {kind, d};
    });
  }
  for (const auto& [pid, table] : impl.tables)
    for (const Impl::FdEntry& e : table.fds)
      if (!impl.descriptions.count(e.description))
        throw Error("fd " + std::to_string(e.fd) + " of pid " + std::to_string(pid) +
                    " refers to description " + std::to_string(e.description) + ", missing from " +
                    kFilesImage);
  ctx.run_after_open();  // sockets hook
  ctx.drop_object_fds();
  with_context("restoring file locks", [&] { impl.locks->lock_descriptions(impl.descriptions); });
  impl.memfds = std::move(ctx.memfds_by_inode());
  impl.ghosts = std::move(ctx.ghosts_by_inode());
  return pool;
}

void FilePool::install(pid_t pid, std::vector<int>* keep) {
  Impl& impl = *impl_;
  auto table_it = impl.tables.find(pid);
  if (table_it == impl.tables.end())
    throw Error("restoring fds of pid " + std::to_string(pid) + ": no " + fdtable_image(pid));
  const Impl::Table& table = table_it->second;
  if (table.shared_with >= 0)
    throw Error("pid " + std::to_string(pid) + " shares the fd table of pid " +
                std::to_string(table.shared_with) + ": that process installs it");
  std::string context = "restoring fds of pid " + std::to_string(pid);

  // Everything we hold goes above every number the process will use, so that dup3 into place
  // never hits one of them.
  const int base = impl.max_fd + 1;
  size_t total = impl.descriptions.size() + impl.memfds.size() + impl.ghosts.size() +
                 (keep ? keep->size() : 0);
  with_context(context, [&] { ensure_fd_limit(static_cast<uint64_t>(base) + total + 16); });

  auto move_up = [&](int fd) -> int {
    if (fd >= base) return fd;
    int flags = ::fcntl(fd, F_GETFD);
    if (flags < 0) throw_errno("fcntl F_GETFD of fd " + std::to_string(fd));
    int moved = ::fcntl(fd, (flags & FD_CLOEXEC) ? F_DUPFD_CLOEXEC : F_DUPFD, base);
    if (moved < 0)
      throw_errno("moving fd " + std::to_string(fd) + " above " + std::to_string(base));
    ::close(fd);
    return moved;
  };
  with_context(context, [&] {
    for (auto& [id, fd] : impl.descriptions) fd.reset(move_up(fd.release()));
    for (auto& [ino, fd] : impl.memfds) fd.reset(move_up(fd.release()));
    for (auto& [ino, fd] : impl.ghosts) fd.reset(move_up(fd.release()));
    if (keep)
      for (int& fd : *keep) fd = move_up(fd);
  });

  std::set<int> preserved;
  for (const Impl::FdEntry& e : table.fds) {
    int source = impl.descriptions.at(e.description).get();
    if (::dup3(source, e.fd, e.cloexec ? O_CLOEXEC : 0) < 0)
      throw_errno(context + ": dup3 of description " + std::to_string(e.description) + " to fd " +
                  std::to_string(e.fd));
    preserved.insert(e.fd);
  }
  if (keep) preserved.insert(keep->begin(), keep->end());

  // The pool itself is closed with the rest: the restored process holds only its own fds.
  for (auto& [id, fd] : impl.descriptions) (void)fd.release();
  for (auto& [ino, fd] : impl.memfds) (void)fd.release();
  for (auto& [ino, fd] : impl.ghosts) (void)fd.release();
  unsigned int next = 0;
  for (int fd : preserved) {
    if (static_cast<unsigned int>(fd) > next &&
        ::syscall(SYS_close_range, next, static_cast<unsigned int>(fd) - 1, 0) < 0)
      throw_errno(context + ": close_range");
    next = static_cast<unsigned int>(fd) + 1;
  }
  if (::syscall(SYS_close_range, next, ~0U, 0) < 0) throw_errno(context + ": close_range");

  // Steps that need the process's fds at their numbers (ckpt-events): per kind in table order
  // (pidfds are real before epoll registers them), then POSIX locks.
  with_context(context, [&] {
    for (const FileKind* kind : kFileKinds) {
      if (!kind->after_install) continue;
      for (const Impl::FdEntry& e : table.fds) {
        auto it = impl.after_install.find(e.description);
        if (it != impl.after_install.end() && it->second.first == kind)
          kind->after_install(pid, e.fd, it->second.second);
      }
    }
    impl.locks->lock_process(pid);
  });
}

namespace {

UniqueFd fd_at_or_above(int fd, int lowest_fd) {
  UniqueFd original(fd);
  int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, lowest_fd);
  if (moved < 0)
    throw_errno("moving fd " + std::to_string(fd) + " to " + std::to_string(lowest_fd));
  return UniqueFd(moved);
}

void read_exactly(int fd, void* data, size_t size, const char* what) {
  auto* out = static_cast<char*>(data);
  while (size > 0) {
    ssize_t n = ::read(fd, out, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno(std::string("reading ") + what);
    if (n == 0) throw Error(std::string("reading ") + what + ": end of file");
    out += n;
    size -= static_cast<size_t>(n);
  }
}

void write_all(int fd, const void* data, size_t size, const char* what) {
  ssize_t n;
  do {
    n = ::write(fd, data, size);
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(size)) throw_errno(std::string("writing ") + what);
}

}  // namespace

SharedFdTableHandoff::SharedFdTableHandoff(int lowest_fd) {
  int ready[2], numbers[2];
  if (::pipe2(ready, O_CLOEXEC) < 0) throw_errno("pipe2 for a shared fd table");
  UniqueFd ready_read(ready[0]), ready_write(ready[1]);
  if (::pipe2(numbers, O_CLOEXEC) < 0) throw_errno("pipe2 for a shared fd table");
  UniqueFd numbers_read(numbers[0]), numbers_write(numbers[1]);
  ready_read_ = fd_at_or_above(ready_read.release(), lowest_fd);
  ready_write_ = fd_at_or_above(ready_write.release(), lowest_fd);
  numbers_read_ = fd_at_or_above(numbers_read.release(), lowest_fd);
  numbers_write_ = fd_at_or_above(numbers_write.release(), lowest_fd);
}

std::vector<int> SharedFdTableHandoff::sharer_ready_and_wait(size_t count) {
  // A message up to PIPE_BUF bytes is written at once, so each sharer reads a whole one.
  if (count * sizeof(int) > PIPE_BUF)
    throw Error("not supported yet: " + std::to_string(count) +
                " restorer fds in one shared fd table");
  char ready = 1;
  write_all(ready_write_.get(), &ready, 1, "the ready byte of a shared fd table");
  std::vector<int> numbers(count);
  read_exactly(numbers_read_.get(), numbers.data(), count * sizeof(int),
               "the fd numbers of a shared fd table");
  return numbers;
}

void SharedFdTableHandoff::owner_wait_ready(size_t sharers) {
  std::vector<char> ready(sharers);
  read_exactly(ready_read_.get(), ready.data(), sharers, "the ready bytes of a shared fd table");
}

void SharedFdTableHandoff::owner_send(const std::vector<int>& numbers, size_t sharers) {
  if (numbers.size() * sizeof(int) > PIPE_BUF)
    throw Error("not supported yet: " + std::to_string(numbers.size()) +
                " restorer fds in one shared fd table");
  for (size_t i = 0; i < sharers; ++i)
    write_all(numbers_write_.get(), numbers.data(), numbers.size() * sizeof(int),
              "the fd numbers of a shared fd table");
}

std::vector<int> SharedFdTableHandoff::fds() const {
  return {ready_read_.get(), ready_write_.get(), numbers_read_.get(), numbers_write_.get()};
}

std::vector<int> SharedFdTableHandoff::release_fds() {
  return {ready_read_.release(), ready_write_.release(), numbers_read_.release(),
          numbers_write_.release()};
}

}  // namespace cryo::ckpt
