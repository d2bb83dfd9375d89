// Internal interface between the file dumper/pool (files.cc) and the per-kind code (one .cc per
// kernel object type in this directory). A kind claims fds at dump time, writes a description
// into files.img, and at restore time opens a new description from it. Kinds are listed in one
// table (kFileKinds in files.cc): adding a kind = one new file + one line there.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "checkpoint/files.h"
#include "checkpoint/image/image_sink.h"
#include "common/log.h"
#include "common/unique_fd.h"

namespace cryo::ckpt::files {

using json = nlohmann::json;

// One fd of a frozen process, as the dumper sees it.
struct DumpedFd {
  pid_t pid = -1;
  // container-cr: the holder's pid in the images (its pid in the tree's own PID namespace when
  // the tree has one, else `pid`).
  pid_t image_pid = -1;
  int fd = -1;
  std::string link;  // readlink /proc/PID/fd/N
  int flags = 0;     // access mode + file status flags from fdinfo, without O_CLOEXEC
  bool cloexec = false;
  uint64_t pos = 0;
  int mnt_id = -1;
  struct stat st {};
  int stolen = -1;  // the same open file description, taken into cryo with pidfd_getfd

  // "pid 42: fd 5 (/tmp/x)" for error messages.
  std::string describe() const;
};

// State of a dump shared by all kinds: where images go and the objects that stand behind
// several descriptions (a pipe inode, a deleted file, a memfd...).
// State a file kind keeps across the descriptions of one dump or one restore (e.g. the TCP packet
// hold of a dump), created on first use; `created` says whether this call made it.
class KindStates {
 public:
  template <typename T>
  T& kind_state(const std::string& kind, bool* created = nullptr) {
    auto& slot = states_[kind];
    if (created != nullptr) *created = !slot;
    if (!slot) slot = std::make_shared<T>();
    return *std::static_pointer_cast<T>(slot);
  }

 private:
  std::map<std::string, std::shared_ptr<void>> states_;
};

class DumpContext : public KindStates {
 public:
  DumpContext(ImageSink& sink, FileDumpOptions options) : sink_(sink), options_(options) {}
  // Every image a kind writes goes through the sink (write_json_image, RawImageWriter), one
  // output at a time.
  ImageSink& sink() const { return sink_; }
  const FileDumpOptions& options() const { return options_; }

  struct ObjectRef {
    uint64_t id;
    json* entry;   // the object's entry in files.img section `section`; stable until finish
    bool created;  // first time this object is seen: the caller fills *entry
  };
  // The object of kind `section` ("pipes", "ghosts"...) identified by (dev, ino).
  ObjectRef object(const std::string& section, uint64_t dev, uint64_t ino);
  size_t object_count(const std::string& section) const;
  // Ids are unique across descriptions and objects of one dump.
  uint64_t next_id() { return next_id_++; }

  // Sections of files.img other than "descriptions", each a list of objects in id order.
  json sections() const;

  // Hooks for kinds whose dump spans several descriptions or changes the dumped objects (added
  // for sockets). Checks run by finish() before files.img is written (e.g. both ends of a socket
  // pair were seen); they throw cryo::Error.
  void add_finish_check(std::function<void()> check) { finish_checks_.push_back(std::move(check)); }
  void run_finish_checks() const {
    for (const auto& check : finish_checks_) check();
  }
  // Undo actions run when the dumped tree goes on running (leave-running or a failed dump), not
  // when it is killed (FileDumper::keep_tcp_repair_for_kill): e.g. turning TCP repair mode off.
  void add_resume_action(std::function<void()> action) {
    resume_actions_.push_back(std::move(action));
  }
  void run_resume_actions() noexcept {
    for (const auto& action : resume_actions_) {
      try {
        action();
      } catch (const std::exception& e) {
        LOG_WARN << "undoing the dump's changes: " << e.what();
      }
    }
    resume_actions_.clear();
  }
  void drop_resume_actions() { resume_actions_.clear(); }
  // Actions run when the dumped tree is killed (FileDumper::keep_tcp_repair_for_kill), instead
  // of the resume actions: e.g. handing the TCP packet hold over to the checkpoint.
  void add_kill_action(std::function<void()> action) { kill_actions_.push_back(std::move(action)); }
  void run_kill_actions() {
    for (const auto& action : kill_actions_) action();
    kill_actions_.clear();
  }

 private:
  std::vector<std::function<void()>> finish_checks_;
  std::vector<std::function<void()>> resume_actions_;
  std::vector<std::function<void()>> kill_actions_;
  ImageSink& sink_;
  FileDumpOptions options_;
  uint64_t next_id_ = 1;
  struct Section {
    std::map<std::pair<uint64_t, uint64_t>, uint64_t> by_inode;
    std::map<uint64_t, json> objects;
  };
  std::map<std::string, Section> sections_;
};

// State of a restore shared by all kinds while FilePool::open creates the descriptions.
class RestoreContext : public KindStates {
 public:
  RestoreContext(std::string image_dir, FileRestoreOptions options, const json& files);
  const std::string& image_dir() const { return image_dir_; }
  const FileRestoreOptions& options() const { return options_; }

  // The entry of object `id` in section `section` of files.img; throws when it is missing.
  const json& object(const std::string& section, uint64_t id) const;

  // An fd standing for object `id` (a pipe end, a recreated deleted file...) that lives until
  // every description is opened; descriptions of the object are reopened from it.
  int object_fd(uint64_t id, int slot = 0) const;
  void set_object_fd(uint64_t id, UniqueFd fd, int slot = 0);
  void drop_object_fds() { object_fds_.clear(); }

  // Opens `path` as the dumped tree saw it (under options().root_dir when set).
  UniqueFd open_path(const std::string& path, int flags, mode_t mode = 0) const;

  // Steps that must wait until every description exists (added for sockets: TCP repair mode is
  // turned off only once both ends of a connection inside the tree are back). Run in order by
  // FilePool::open; they throw cryo::Error.
  void add_after_open(std::function<void()> step) { after_open_.push_back(std::move(step)); }
  void run_after_open() {
    for (const auto& step : after_open_) step();
    after_open_.clear();
  }
  // Pids (as dumped) of every process of the restored tree.
  const std::set<pid_t>& tree_pids() const { return tree_pids_; }
  void set_tree_pids(std::set<pid_t> pids) { tree_pids_ = std::move(pids); }

  // Fds that the pool keeps after open() for other parts of the restore (memfds for mappings).
  std::map<uint64_t, UniqueFd>& memfds_by_inode() { return memfds_by_inode_; }
  // The same for recreated deleted files, by the (dev, ino) they had at dump time: a deleted file
  // the tree also maps is mapped from this one, so that fd and mapping stay one file.
  std::map<std::pair<uint64_t, uint64_t>, UniqueFd>& ghosts_by_inode() { return ghosts_by_inode_; }

 private:
  std::string image_dir_;
  FileRestoreOptions options_;
  std::map<uint64_t, const json*> objects_by_id_;
  std::map<std::pair<uint64_t, int>, UniqueFd> object_fds_;
  std::map<uint64_t, UniqueFd> memfds_by_inode_;
  std::map<std::pair<uint64_t, uint64_t>, UniqueFd> ghosts_by_inode_;
  std::set<pid_t> tree_pids_;
  UniqueFd root_fd_;
  std::vector<std::function<void()>> after_open_;
};

struct FileKind {
  // Several description kinds may be handled by one FileKind; `kinds` lists the "kind" values
  // of files.img it opens at restore. claims() is asked in table order at dump time.
  std::vector<std::string> kinds;
  bool (*claims)(const DumpedFd& fd);
  // Fills `description` (id, flags, fd-independent fields are set by the caller; it must set
  // "kind"). Throws cryo::Error for what it cannot dump.
  void (*dump)(DumpContext& ctx, const DumpedFd& fd, json& description);
  // Creates a new open file description from `description`, O_CLOEXEC, with its flags and
  // position.
  UniqueFd (*open)(RestoreContext& ctx, const json& description);
  // Optional (ckpt-events hook): in the restoring process, once install() has put every fd of
  // `dumped_pid` at its number; called for each of its fds of this kind, in fd order. For state
  // the kernel keys by fd number (epoll registrations) or that needs the restored tree (pidfds).
  void (*after_install)(pid_t dumped_pid, int fd, const json& description) = nullptr;
};

extern const FileKind kMemfdKind;
extern const FileKind kPathFileKind;  // regular files, directories, O_PATH, deleted files
extern const FileKind kFifoKind;
extern const FileKind kPipeKind;
extern const FileKind kTerminalKind;
extern const FileKind kDeviceKind;
extern const FileKind kInetSocketKind;     // sockets_inet.cc
extern const FileKind kUnixSocketKind;     // sockets_unix.cc
extern const FileKind kNetlinkSocketKind;  // sockets_netlink.cc
extern const FileKind kEventFdKind;
extern const FileKind kEpollKind;
extern const FileKind kSignalFdKind;
extern const FileKind kTimerFdKind;
extern const FileKind kInotifyKind;
extern const FileKind kPidFdKind;
extern const FileKind kMqueueKind;    // POSIX message queues (mqueue.cc)
extern const FileKind kExternalKind;  // container-cr: fds outside the tree (external.cc)

// Helpers shared by kinds.
// Reopens the file behind `fd` through /proc/self/fd with `flags` (a new description).
UniqueFd reopen_fd(int fd, int flags);
// Flags to pass to open() to recreate a description with dumped `flags`.
int open_flags(int dumped_flags);
// Sets the dumped position of a seekable description.
void restore_position(int fd, const json& description);
// Writes the data regions of the file behind `fd` into raw image `name`; returns its size and
// extents ([[offset, length], ...]) for the object entry.
json dump_file_content(ImageSink& sink, const std::string& name, int fd);
// Fills a freshly created file `fd` from an image written by dump_file_content.
void restore_file_content(const std::string& image_dir, const std::string& name, int fd,
                          const json& content);

}  // namespace cryo::ckpt::files
