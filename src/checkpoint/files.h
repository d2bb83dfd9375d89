// Open files of a process tree: fd tables and the open file descriptions behind them (regular
// files, directories, deleted files, devices, pipes, FIFOs; sockets and other kinds in their own
// files). One open file description shared by several fds or processes stays one after restore.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "checkpoint/image/image_sink.h"
#include "common/unique_fd.h"

namespace cryo::ckpt {

struct FileDumpOptions {
  bool shell_job =
      false;  // the tree's terminal is outside it: restore onto the restorer's terminal
  // Sockets (file_kinds/sockets_*.cc): dump established TCP connections with TCP_REPAIR (without
  // it, a dump meeting one fails and names it).
  bool tcp_established = false;
  // Unix sockets whose peer is outside the tree are dumped (restored reconnected to the peer's
  // name, or as a connection whose peer is gone; docs/IMAGE-FORMAT.md "Sockets").
  bool ext_unix_sk = false;
  // Dump flock, POSIX and OFD locks held by the tree (--file-locks); without it a tree holding
  // a lock cannot be dumped.
  bool file_locks = false;
  // container-cr: fds whose /proc/PID/fd link is in this set are outside the tree (a container's
  // stdio: pipes to its monitor, its console pty slave): recorded as kind "external" with the
  // link as key, and handed back at restore by FileRestoreOptions::inherit_fds (--inherit-fd).
  std::set<std::string> external_files;
};

// Dumps the fds of each process of a frozen tree. Descriptions are taken from the target with
// pidfd_getfd and deduplicated across processes (kcmp).
class FileDumper {
 public:
  // Images go to `sink`, which must outlive the dumper; the caller finishes it.
  FileDumper(ImageSink& sink, FileDumpOptions options);
  // Images go to files of `image_dir` (made durable by finish()).
  FileDumper(std::string image_dir, FileDumpOptions options);
  ~FileDumper();
  // Writes fdtable-PID.img; remembers the descriptions the fds refer to.
  void dump_process(pid_t pid, int pidfd);
  // container-cr: the same, with the images keyed by `image_pid` (the pid in the tree's own PID
  // namespace) while /proc and kcmp use the dumper's `pid`.
  void dump_process(pid_t pid, int pidfd, pid_t image_pid);
  // Writes files.img (the data images of descriptions, pipe contents, deleted files..., are written
  // as they are dumped).
  void finish();
  // Sockets: established TCP connections stay in repair mode from their dump on (they send
  // nothing). Call this after finish() and before killing the dumped tree: repair mode then stays
  // on, so that the kill closes them without FIN or RST and the peer waits for the restored copy.
  // Without it, destroying the dumper turns repair mode off again (a failed dump: destroy the
  // dumper before resuming the tree).
  void keep_tcp_repair_for_kill();
  // --leave-running: turns TCP repair mode off again; call before resuming the tree (a process
  // writing to a socket still in repair mode gets an error).
  void release_tcp_repair();

 private:
  FileDumper(std::unique_ptr<DirectorySink> sink, FileDumpOptions options);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct FileRestoreOptions {
  bool shell_job = false;
  // fds of the restoring cryo that stand for the dumped tree's outside terminal (--shell-job).
  // -1: cryo's own fd 0 when it is a terminal.
  int inherit_tty_fd = -1;
  // Directory the dumped paths are resolved under (openat2 RESOLVE_IN_ROOT), e.g. a container's
  // root file system seen from the coordinator; empty: the coordinator's own root.
  std::string root_dir;
  // Take the dumped file locks again (--file-locks); a checkpoint holding locks needs it.
  bool file_locks = false;
  // Descriptions the tree shared with the outside world, given back by the caller instead of
  // being recreated (like CRIU's --inherit-fd): key = the dumped fd link ("pipe:[12345]",
  // "/var/log/app.log"), value = an fd of the restoring cryo whose description every fd of that
  // description gets (e.g. the new stdio pipes of a container's monitor). Queued pipe bytes of
  // an inherited description are not refilled: the outside end owns them.
  std::map<std::string, int> inherit_fds;
};

// Every open file description of the dumped tree, created once by the coordinator before the root
// is forked, so that each restoring process inherits them and installs its own fds.
class FilePool {
 public:
  static std::unique_ptr<FilePool> open(const std::string& image_dir,
                                        const FileRestoreOptions& options);
  ~FilePool();
  // In the restoring process `pid` (a fork of the coordinator, after it forked its own children):
  // puts its fds in place with their flags and closes every other fd except those in `keep`, which
  // are moved above the highest restored fd (their new numbers are written back into `keep`).
  void install(pid_t pid, std::vector<int>* keep);
  // Highest fd number used by any restored process (callers keep their own fds above it).
  int max_fd() const;
  // Fd tables shared by CLONE_FILES: the pid whose table `pid` shares (its parent in the tree,
  // which installs the one table for both and forks `pid` with CLONE_FILES), or `pid` itself when
  // its table is its own. A process sharing a table does not call install().
  pid_t fd_table_owner(pid_t pid) const;
  // The processes sharing the table of `owner` (owner excluded; empty when it shares with none).
  std::vector<pid_t> fd_table_sharers(pid_t owner) const;
  // A memfd recreated for a memfd the tree held as an fd, by the inode number it had at dump
  // time (st_ino of the fd, the inode in /proc/PID/maps): -1 when the tree held no fd of it.
  // Mappings of that memfd must map this fd, so that fd and mapping stay one object. The fd is
  // the pool's (O_RDWR, close-on-exec): valid in the coordinator until the pool is destroyed and
  // in a restoring process until install(), which closes it unless it is passed in `keep`.
  int memfd_for_inode(uint64_t dumped_ino) const;
  // The same for a deleted file the tree held as an fd (a "ghost"), by the (st_dev, st_ino) it
  // had at dump time: -1 when the tree held no fd of it. O_RDWR; valid as memfd_for_inode's.
  int ghost_for_inode(uint64_t dumped_dev, uint64_t dumped_ino) const;

  // A POSIX (fcntl F_SETLK) lock of a restored process, on its fd `fd` (--file-locks).
  struct PosixLock {
    int fd;
    bool write;       // F_WRLCK, else F_RDLCK
    uint64_t start;   // l_start, SEEK_SET
    uint64_t length;  // l_len; 0: to the end of the file
  };
  // The POSIX locks install() takes for `pid`. The kernel drops all of a process's POSIX locks
  // on a file when it closes any fd of that file: a later restore step that closes such an fd
  // (one opened to map the file) must take these again afterwards (taking a lock the process
  // already holds is a no-op).
  std::vector<PosixLock> posix_locks(pid_t pid) const;

 private:
  FilePool();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Restoring an fd table shared by CLONE_FILES. Its owner forks the processes sharing it with
// CLONE_FILES before installing it; each of them forks its own children first (they copy the
// table while it still holds the pool), says so, and waits: the owner then installs the table
// once for all of them, keeping every fd their restorers need, and hands them the new numbers of
// those fds. Made by the owner before it forks; its pipes sit above `lowest_fd` (the pool's
// max_fd() + 1), where install() leaves kept fds at their numbers.
class SharedFdTableHandoff {
 public:
  explicit SharedFdTableHandoff(int lowest_fd);
  // In a process sharing the table, once its children are forked: returns the owner's numbers.
  std::vector<int> sharer_ready_and_wait(size_t count);
  // In the owner: waits until `sharers` processes are ready.
  void owner_wait_ready(size_t sharers);
  // In the owner, after install(): gives `numbers` to each of the `sharers` processes.
  void owner_send(const std::vector<int>& numbers, size_t sharers);
  // The pipes' fds, which the owner keeps through install() (they stay at their numbers).
  std::vector<int> fds() const;
  // The same fds, to close at the end of the restore. After this,
  // the handoff no longer owns them (the table they are in is closed by the restorer).
  std::vector<int> release_fds();

 private:
  UniqueFd ready_read_, ready_write_, numbers_read_, numbers_write_;
};

}  // namespace cryo::ckpt
