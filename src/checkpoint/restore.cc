// cryo::ckpt::restore(): the coordinator. Verifies the images, creates the memory objects and
// opens the files the processes map, forks the tree with its PIDs (each restoring process is a
// fork of the coordinator running restore_process()), runs each process's restorer batch by
// ptrace, sets every thread's registers and lets the tree go.
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/rseq.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <set>

#include "checkpoint/checkpoint.h"
#include "checkpoint/file_kinds/file_kind.h"
#include "checkpoint/files.h"
#include "checkpoint/image/image_file.h"
#include "checkpoint/inventory.h"
#include "checkpoint/ipc.h"
#include "checkpoint/memory.h"
#include "checkpoint/namespaces.h"
#include "checkpoint/process_attrs.h"
#include "checkpoint/ptrace.h"
#include "checkpoint/remote_syscall.h"
#include "checkpoint/restorer.h"
#include "checkpoint/terminals.h"
#include "checkpoint/threads.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/fault_injection.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/strings.h"
#include "common/unique_fd.h"

namespace cryo::ckpt {

namespace {

constexpr int kReportTimeoutMs = 60000;
constexpr size_t kMaxReport = 1 << 20;

struct ProcessImages {
  json entry;  // from pstree.img
  json core;
  json mm;
  std::vector<std::unique_ptr<RawImageReader>> pages;  // mm "pages_images", in order
};

struct RestoreContext {
  std::string dir;
  RestoreOptions options;
  pid_t root = -1;
  std::map<pid_t, ProcessImages> processes;
  std::map<std::string, UniqueFd> files;  // mapped files by path
  json mapped_ghosts = json::array();     // mapped-ghosts.img
  std::map<uint64_t, UniqueFd> shmem;     // shared anonymous memory by dumped inode
  std::map<std::string, UniqueFd> exes;
  std::unique_ptr<FilePool> pool;
  UniqueFd report_read;   // coordinator's end
  UniqueFd report_write;  // restoring processes' end
  // In the processes sharing an fd table and their owner: the owner's handoff (files.h).
  SharedFdTableHandoff* table_handoff = nullptr;
};

pid_t clone_with_pid(pid_t pid, uint64_t flags) {
  clone_args args{};
  args.flags = flags;
  // clone3 wants no exit signal with CLONE_PARENT: the child gets the caller's (container-cr).
  args.exit_signal = (flags & CLONE_PARENT) ? 0 : SIGCHLD;
  args.set_tid = reinterpret_cast<uint64_t>(&pid);
  args.set_tid_size = 1;
  long r = ::syscall(SYS_clone3, &args, sizeof args);
  if (r < 0) {
    if (errno == EEXIST) throw Error("pid " + std::to_string(pid) + " is in use", EEXIST);
    throw_errno("clone3 with pid " + std::to_string(pid));
  }
  return static_cast<pid_t>(r);
}

void send_report(int fd, const json& report) {
  std::string text = report.dump();
  if (::send(fd, text.data(), text.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(text.size()))
    ::_exit(3);
}

// The image's exit status of a zombie, reproduced by the new process.
[[noreturn]] void become_zombie(int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    ::signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
    ::kill(::getpid(), sig);
  }
  ::_exit(WEXITSTATUS(status));
}

void unregister_rseq() {
  // glibc registered rseq for the coordinator's thread and fork kept it; its area is about to
  // be unmapped, where the kernel would fault writing to it.
  constexpr int kRseqFlagUnregister = 1;
  constexpr uint32_t kRseqSig = 0x53053053;
  if (__rseq_size == 0) return;
  char* area = static_cast<char*>(__builtin_thread_pointer()) + __rseq_offset;
  for (uint32_t len : {32u, __rseq_size})
    if (::syscall(SYS_rseq, area, len, kRseqFlagUnregister, kRseqSig) == 0) return;
}

// In a restoring process (a fork of the coordinator); never returns.
[[noreturn]] void restore_process(RestoreContext& ctx, pid_t pid, pid_t parent) {
  std::vector<pid_t> created;
  // Until its own attributes are restored (the late batch sets the dumped pdeath signal), a
  // restoring process dies with its parent: a failure anywhere leaves no stray process.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (parent != 0 && ::getppid() != parent) ::_exit(1);  // 0: parent outside our PID namespace
  try {
    ProcessImages& images = ctx.processes.at(pid);
    const json& entry = images.entry;
    pid_t sid = entry.at("sid");
    pid_t pgid = entry.at("pgid");
    bool keep_session = ctx.options.shell_job && pid == ctx.root;
    // Sessions first, then groups (a group lives inside a session).
    if (!keep_session && sid == pid && ::setsid() < 0) throw_errno("setsid");
    if (pid == ctx.root && sid == pid && !ctx.options.root_controlling_terminal.empty()) {
      int terminal = ctx.options.inherit_fds.at(ctx.options.root_controlling_terminal);
      if (::ioctl(terminal, TIOCSCTTY, 0) < 0) throw_errno("ioctl TIOCSCTTY");
    }
    if (pgid == pid) {
      if (::getpgid(0) != pid && ::setpgid(0, 0) < 0) throw_errno("setpgid");
    } else if (::getpgid(0) != pgid && ::setpgid(0, pgid) < 0) {
      throw_errno("setpgid to group " + std::to_string(pgid));
    }
    if (!keep_session) restore_terminal_control(pid, sid, pgid);  // before the children fork
    // Fd tables shared by CLONE_FILES: this process installs its table for the children sharing
    // it, forked with CLONE_FILES (files.h, SharedFdTableHandoff).
    const pid_t table_owner = ctx.pool->fd_table_owner(pid);
    const std::vector<pid_t> table_sharers = ctx.pool->fd_table_sharers(table_owner);
    std::unique_ptr<SharedFdTableHandoff> handoff;
    if (table_owner == pid && !table_sharers.empty()) {
      handoff = std::make_unique<SharedFdTableHandoff>(ctx.pool->max_fd() + 1);
      ctx.table_handoff = handoff.get();  // the sharers' copy of it, in their memory
    }
    for (const json& child_pid : entry.at("children")) {
      pid_t child = child_pid;
      bool shares_table = ctx.pool->fd_table_owner(child) == pid && child != pid;
      pid_t r = clone_with_pid(child, shares_table ? CLONE_FILES : 0);
      if (r == 0) {
        const json& child_entry = ctx.processes.at(child).entry;
        if (child_entry.at("zombie").get<bool>()) become_zombie(child_entry.at("exit_code"));
        restore_process(ctx, child, pid);
      }
      created.push_back(r);
    }
    if (entry.at("zombie").get<bool>()) become_zombie(entry.at("exit_code"));
    if (table_owner != pid && parent != table_owner)
      throw Error("not supported yet: pid " + std::to_string(pid) + " shares the fd table of pid " +
                  std::to_string(table_owner) + ", which is not its parent");

    ::prctl(PR_SET_NAME, entry.at("comm").get<std::string>().c_str());
    // The fds the restorer needs, kept (and moved out of the way) by the file pool; with a shared
    // fd table, those of every process sharing it.
    std::vector<int> keep;
    std::vector<pid_t> table_members{table_owner};
    table_members.insert(table_members.end(), table_sharers.begin(), table_sharers.end());
    for (pid_t member : table_members) {
      const ProcessImages& member_images = ctx.processes.at(member);
      keep.push_back(ctx.report_write.get());
      keep.push_back(ctx.exes.at(member_images.mm.at("exe")).get());
      for (const json& v : member_images.mm.at("vmas")) {
        VmaKind kind = vma_kind_from_name(v.at("kind"));
        if (kind == VmaKind::kFilePrivate || kind == VmaKind::kFileShared)
          keep.push_back(ctx.files.at(v.at("path")).get());
        else if (kind == VmaKind::kSharedAnon)
          keep.push_back(ctx.shmem.at(v.at("inode")).get());
      }
    }
    // Duplicates (a file mapped several times) would be moved twice: keep each number once.
    std::sort(keep.begin(), keep.end());
    std::vector<int> unique_keep(keep.begin(), std::unique(keep.begin(), keep.end()));
    std::vector<int> moved = unique_keep;
    if (handoff) {
      handoff->owner_wait_ready(table_sharers.size());  // their children have copied the table
      std::vector<int> kept = moved;
      for (int fd : handoff->fds()) kept.push_back(fd);  // stay at their numbers
      ctx.pool->install(pid, &kept);
      moved.assign(kept.begin(), kept.begin() + static_cast<ptrdiff_t>(moved.size()));
      handoff->owner_send(moved, table_sharers.size());
    } else if (table_owner != pid) {
      moved = ctx.table_handoff->sharer_ready_and_wait(unique_keep.size());
    } else {
      ctx.pool->install(pid, &moved);
    }
    auto new_number = [&](int old_fd) {
      auto it = std::find(unique_keep.begin(), unique_keep.end(), old_fd);
      return moved[static_cast<size_t>(it - unique_keep.begin())];
    };
    int report_fd = new_number(ctx.report_write.get());
    RestorerFds fds;
    fds.exe = new_number(ctx.exes.at(images.mm.at("exe")).get());
    for (const json& v : images.mm.at("vmas")) {
      VmaKind kind = vma_kind_from_name(v.at("kind"));
      if (kind == VmaKind::kFilePrivate || kind == VmaKind::kFileShared)
        fds.files[v.at("path")] = new_number(ctx.files.at(v.at("path")).get());
      else if (kind == VmaKind::kSharedAnon)
        fds.shmem[v.at("inode")] = new_number(ctx.shmem.at(v.at("inode")).get());
    }
    // One table: its restorer fds are closed once, by the last of its processes to be restored
    // (the coordinator restores them in pid order).
    if (table_sharers.empty()) {
      fds.close_at_end = moved;
    } else if (pid == std::max(table_owner,
                               *std::max_element(table_sharers.begin(), table_sharers.end()))) {
      fds.close_at_end = moved;
      std::vector<int> pipes = ctx.table_handoff->release_fds();
      fds.close_at_end.insert(fds.close_at_end.end(), pipes.begin(), pipes.end());
    }
    const json& attrs = images.core.at("process_attrs");
    restore_process_attrs_early(attrs);

    sigset_t all;
    sigfillset(&all);
    ::sigprocmask(SIG_BLOCK, &all, nullptr);
    unregister_rseq();
    RestorerPlan plan = prepare_restorer(images.core, images.mm, fds, [&](SyscallBatch& batch) {
      append_late_process_restore(attrs, batch);  // includes the leader's own attributes
    });
    // The plan can be large (a description per entry): the coordinator reads it from our memory,
    // which stays as it is until it runs the batch.
    std::string plan_text = plan_to_json(plan).dump();
    send_report(report_fd, {{"pid", pid},
                            {"plan_address", reinterpret_cast<uint64_t>(plan_text.data())},
                            {"plan_size", plan_text.size()}});
    // The coordinator takes over from here by ptrace.
    for (;;) ::pause();
  } catch (const std::exception& e) {
    for (pid_t child : created) ::kill(child, SIGKILL);
    send_report(ctx.report_write.get(),
                {{"pid", pid},
                 {"error", std::string("restoring pid ") + std::to_string(pid) + ": " + e.what()}});
    ::_exit(1);
  }
}

// Recreates a mapped file that was deleted when dumped: a new file in the same directory (under
// the same name when it is free), unlinked at once and filled from the image.
UniqueFd recreate_mapped_ghost(const std::string& image_dir, const json& ghost) {
  std::string path = ghost.at("path").get<std::string>();
  path = path.substr(0, path.size() - std::string_view(" (deleted)").size());
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) throw Error("mapped deleted file without a directory: " + path);
  std::string dir = slash == 0 ? "/" : path.substr(0, slash);
  std::string name = path.substr(slash + 1);
  UniqueFd dir_fd = fs::open_or_throw(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  int file = ::openat(dir_fd.get(), name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (file < 0 && errno == EEXIST) {
    name = ".cryo-mapped-ghost-" + random_hex(6);
    file = ::openat(dir_fd.get(), name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  }
  if (file < 0) throw_errno("creating the deleted mapped file " + dir + "/" + name);
  UniqueFd fd(file);
  if (::unlinkat(dir_fd.get(), name.c_str(), 0) < 0) throw_errno("unlink " + dir + "/" + name);
  const json& content = ghost.at("content");
  files::restore_file_content(image_dir, content.at("image").get<std::string>(), fd.get(), content);
  if (::fchown(fd.get(), ghost.at("uid").get<uid_t>(), ghost.at("gid").get<gid_t>()) < 0)
    throw_errno("fchown of the deleted mapped file " + path);
  if (::fchmod(fd.get(), ghost.at("mode").get<uint32_t>() & 07777) < 0)
    throw_errno("fchmod of the deleted mapped file " + path);
  return fd;
}

void load_images(RestoreContext& ctx) {
  json inventory = read_and_check_inventory(ctx.dir);
  ctx.root = inventory.at("root_pid");
  // Images of older dumps have no mapped-ghosts.img. The files are made by load_mapped_ghosts().
  if (fs::exists(ctx.dir + "/" + kMappedGhostsImage))
    ctx.mapped_ghosts = read_json_image(ctx.dir, kMappedGhostsImage);
  std::set<std::string> ghost_paths;
  for (const json& ghost : ctx.mapped_ghosts) ghost_paths.insert(ghost.at("path"));
  json pstree = read_json_image(ctx.dir, "pstree.img");
  for (const json& entry : pstree) {
    pid_t pid = entry.at("pid");
    ProcessImages& p = ctx.processes[pid];
    p.entry = entry;
    if (entry.at("zombie").get<bool>()) continue;
    std::string id = std::to_string(pid);
    p.core = read_json_image(ctx.dir, "core-" + id + ".img");
    p.mm = read_json_image(ctx.dir, "mm-" + id + ".img");
    // Its checksum is verified while its pages are written (fill_process_memory).
    for (const json& name : p.mm.at("pages_images"))
      p.pages.push_back(std::make_unique<RawImageReader>(ctx.dir, name.get<std::string>()));
    for (const json& v : p.mm.at("vmas")) {
      VmaKind kind = vma_kind_from_name(v.at("kind"));
      if (kind != VmaKind::kFilePrivate && kind != VmaKind::kFileShared) continue;
      std::string path = v.at("path");
      if (ghost_paths.count(path)) continue;
      bool writable = kind == VmaKind::kFileShared && (v.at("prot").get<int>() & PROT_WRITE);
      auto it = ctx.files.find(path);
      if (it != ctx.files.end() && !writable) continue;
      if (path.size() > 10 && path.substr(path.size() - 10) == " (deleted)")
        throw Error("pid " + id + " maps the deleted file " + path + ": not supported yet");
      ctx.files[path] = fs::open_or_throw(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    }
    std::string exe = p.mm.at("exe");
    if (!ctx.exes.count(exe)) ctx.exes[exe] = fs::open_or_throw(exe, O_RDONLY | O_CLOEXEC);
  }
  if (!ctx.processes.count(ctx.root)) throw Error("pstree.img does not contain the root");
}

// Deleted files the tree maps, once the file pool exists: one the tree also held as an fd is the
// pool's file (one inode, as dumped: writes through the fd show in MAP_SHARED mappings), the
// others are recreated from their mapped-ghost images.
void load_mapped_ghosts(RestoreContext& ctx) {
  for (const json& ghost : ctx.mapped_ghosts) {
    std::string path = ghost.at("path");
    with_context("mapped deleted file " + path, [&] {
      int held = ctx.pool->ghost_for_inode(ghost.at("dev"), ghost.at("ino"));
      if (held < 0) {
        ctx.files[path] = recreate_mapped_ghost(ctx.dir, ghost);
        return;
      }
      UniqueFd same(::fcntl(held, F_DUPFD_CLOEXEC, 0));
      if (!same) throw_errno("dup of the recreated deleted file");
      ctx.files[path] = std::move(same);
    });
  }
}

// Shared memory objects the tree maps, once the file pool exists: a memfd that is also held as
// an fd is the pool's memfd (one object, as dumped), the others are new memfds filled from their
// images.
void load_shared_memory(RestoreContext& ctx) {
  json shmem = read_json_image(ctx.dir, "shmem.img");
  for (const json& object : shmem) {
    uint64_t inode = object.at("inode");
    if (int held = ctx.pool->memfd_for_inode(inode); held >= 0) {
      UniqueFd same(::fcntl(held, F_DUPFD_CLOEXEC, 0));
      if (!same) throw_errno("dup of the memfd of inode " + std::to_string(inode));
      ctx.shmem[inode] = std::move(same);
      continue;
    }
    RawImageReader content(ctx.dir, object.at("image").get<std::string>());
    content.verify_checksum();
    UniqueFd memfd(static_cast<int>(::syscall(SYS_memfd_create, "cryo-shmem", MFD_CLOEXEC)));
    if (!memfd) throw_errno("memfd_create");
    if (::ftruncate(memfd.get(), static_cast<off_t>(object.at("size").get<uint64_t>())) < 0)
      throw_errno("ftruncate of a shared memory object");
    std::vector<uint8_t> buffer(1 << 20);
    for (const PageRun& run : runs_from_json(object.at("runs"))) {
      uint64_t size = object.at("size");
      uint64_t done = 0,
               total = std::min<uint64_t>(run.pages * kPageSize, size - std::min(size, run.vaddr));
      while (done < total) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(buffer.size(), total - done));
        content.read_at(run.offset + done, buffer.data(), n);
        if (::pwrite(memfd.get(), buffer.data(), n, static_cast<off_t>(run.vaddr + done)) !=
            static_cast<ssize_t>(n))
          throw_errno("filling a shared memory object from " + content.path());
        done += n;
      }
    }
    ctx.shmem[inode] = std::move(memfd);
  }
}

// A report and the PID of its sender in the coordinator's PID namespace (SO_PASSCRED: the kernel
// translates it, the sender may live in a PID namespace of its own).
json receive_report(int fd, pid_t* sender) {
  pollfd p{fd, POLLIN, 0};
  int r = ::poll(&p, 1, kReportTimeoutMs);
  if (r == 0) throw Error("timed out waiting for the restoring processes");
  if (r < 0) throw_errno("poll");
  std::string buffer(kMaxReport, '\0');
  iovec iov{buffer.data(), buffer.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = ::recvmsg(fd, &msg, 0);
  if (n < 0) throw_errno("recvmsg");
  if (n == 0) throw Error("the restoring processes exited without reporting");
  *sender = -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
      ucred cred;
      std::memcpy(&cred, CMSG_DATA(c), sizeof cred);
      *sender = cred.pid;
    }
  }
  return json::parse(buffer.substr(0, static_cast<size_t>(n)));
}

// Whether task `id` (a process or a thread) exists and is on its way out: exiting (PF_EXITING), a
// zombie, or dead and being reaped.
bool task_is_exiting(pid_t id) {
  constexpr unsigned long kPfExiting = 0x4;
  std::string path = "/proc/" + std::to_string(id) + "/stat";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return false;
  char buffer[1024];
  ssize_t n = ::read(fd.get(), buffer, sizeof buffer - 1);
  if (n <= 0) return false;  // reaped between the open and the read
  std::string stat(buffer, static_cast<size_t>(n));
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return false;
  char state = 0;
  unsigned long flags = 0;
  // Fields 3 (state) and 9 (flags) of proc(5).
  if (std::sscanf(stat.c_str() + paren + 2, "%c %*d %*d %*d %*d %*d %lu", &state, &flags) != 2)
    return false;
  return state == 'Z' || state == 'X' || state == 'x' || (flags & kPfExiting) != 0;
}

// `cr dump` returns once the dumped tree has been sent SIGKILL, not once it is gone
// (DumpOptions::wait_for_exit): the kernel may still be freeing its memory, and its PIDs stay in
// use until then. Waits, for a bounded time, until no PID or TID of the images is held by such an
// exiting task; a PID held by a live task is left to clone3, which fails with "pid N is in use".
void wait_for_exiting_pid_holders(const RestoreContext& ctx) {
  constexpr auto kMaxWait = std::chrono::seconds(10);
  std::vector<pid_t> ids;
  for (const auto& [pid, images] : ctx.processes) {
    ids.push_back(pid);
    if (images.entry.contains("threads")) {
      for (const json& tid : images.entry.at("threads")) ids.push_back(tid.get<pid_t>());
    }
  }
  const auto deadline = std::chrono::steady_clock::now() + kMaxWait;
  for (pid_t id : ids) {
    bool waited = false;
    while (task_is_exiting(id)) {
      if (std::chrono::steady_clock::now() > deadline) {
        LOG_WARN << "pid " << id << " is still held by an exiting task after "
                 << std::chrono::duration_cast<std::chrono::seconds>(kMaxWait).count() << " s";
        return;
      }
      waited = true;
      ::usleep(500);
    }
    if (waited) {
      LOG_DEBUG << "waited for the exiting holder of pid " << id;
    }
  }
}

struct RestoredThread {
  PtraceAttachment attachment;
  const json* image;
};

}  // namespace

RestoreResult restore(const std::string& image_dir, const RestoreOptions& options) {
  uint64_t t0 = steady_now_us();
  RestoreContext ctx;
  ctx.dir = image_dir;
  ctx.options = options;
  load_images(ctx);
  // In a new PID namespace the images' PIDs are not the host's.
  if (!options.new_pid_namespace) wait_for_exiting_pid_holders(ctx);
  // The tree's IPC namespace with its objects, before the files (message queue fds) and the root.
  RestoredTerminalsScope terminals;
  std::unique_ptr<IpcNamespaceRestore> ipc =
      IpcNamespaceRestore::create(image_dir, options.ipc_namespace_prepared);
  FileRestoreOptions file_options;
  file_options.shell_job = options.shell_job;
  file_options.file_locks = options.file_locks;
  file_options.inherit_fds = options.inherit_fds;  // container-cr
  ctx.pool = FilePool::open(image_dir, file_options);
  load_shared_memory(ctx);
  load_mapped_ghosts(ctx);
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) throw_errno("socketpair");
  ctx.report_read = UniqueFd(sv[0]);
  ctx.report_write = UniqueFd(sv[1]);
  // container-cr: reports carry their sender's PID as the coordinator sees it.
  int passcred = 1;
  if (::setsockopt(ctx.report_read.get(), SOL_SOCKET, SO_PASSCRED, &passcred, sizeof passcred) < 0)
    throw_errno("setsockopt SO_PASSCRED");

  // container-cr: PID and time namespaces of the restored tree.
  uint64_t root_flags = options.root_clone_flags;
  if (ipc) root_flags &= ~static_cast<uint64_t>(CLONE_NEWIPC);  // made above
  if (options.new_pid_namespace) {
    if (ctx.root != 1)
      throw Error("the images were not dumped from the init of a PID namespace (root pid " +
                  std::to_string(ctx.root) + "): cannot restore into a new PID namespace");
    root_flags |= CLONE_NEWPID;
  }
  if (options.root_parent_is_caller_parent) root_flags |= CLONE_PARENT;
  if (options.new_time_namespace && fs::exists(image_dir + "/" + kTimeNamespaceImage))
    enter_time_namespace_for_children_at(
        namespace_clocks_from_json(read_json_image(image_dir, kTimeNamespaceImage)));

  RestoreResult result;
  uint64_t fork_start = steady_now_us();
  pid_t coordinator = ::getpid();
  // The root's parent as it sees it: outside its PID namespace (0), or the caller's parent with
  // CLONE_PARENT (container-cr).
  pid_t root_parent = (root_flags & CLONE_NEWPID)   ? 0
                      : (root_flags & CLONE_PARENT) ? ::getppid()
                                                    : coordinator;
  pid_t root = clone_with_pid(ctx.root, root_flags);
  if (root == 0) {
    if (options.in_root_before_restore) {
      try {
        options.in_root_before_restore();
      } catch (const std::exception& e) {
        send_report(ctx.report_write.get(), {{"pid", ctx.root}, {"error", e.what()}});
        ::_exit(1);
      }
    }
    restore_process(ctx, ctx.root, root_parent);
  }
  ctx.report_write.reset();
  result.root_pid = root;

  std::set<pid_t> ours{root};
  std::vector<RestoredThread> threads;
  try {
    std::map<pid_t, RestorerPlan> plans;
    std::map<pid_t, pid_t> host_pids;  // image pid -> coordinator's pid (container-cr)
    size_t expected = 0;
    for (auto& [pid, p] : ctx.processes)
      if (!p.entry.at("zombie").get<bool>()) ++expected;
    while (plans.size() < expected) {
      pid_t sender = -1;
      json report = receive_report(ctx.report_read.get(), &sender);
      pid_t pid = report.at("pid");
      if (report.contains("error")) throw Error(report.at("error").get<std::string>());
      if (sender <= 0) throw Error("report of pid " + std::to_string(pid) + " without credentials");
      ours.insert(sender);
      host_pids[pid] = sender;
      std::string text(report.at("plan_size").get<size_t>(), '\0');
      iovec local{text.data(), text.size()};
      iovec remote{reinterpret_cast<void*>(report.at("plan_address").get<uint64_t>()), text.size()};
      if (::process_vm_readv(sender, &local, 1, &remote, 1, 0) != static_cast<ssize_t>(text.size()))
        throw_errno("reading the restorer plan of pid " + std::to_string(pid));
      plans[pid] = plan_from_json(json::parse(text));
    }
    result.stats.forking_time = steady_now_us() - fork_start;
    fault_point("restore-tree-forked");

    for (auto& [pid, plan] : plans) {
      with_context("restoring pid " + std::to_string(pid), [&] {
        const json& core = ctx.processes.at(pid).core;
        const pid_t host_pid = host_pids.at(pid);
        PtraceAttachment main =
            PtraceAttachment::seize_and_interrupt(host_pid, PTRACE_O_TRACECLONE);
        RemoteSyscalls remote(main);
        std::vector<PtraceAttachment> created;
        // On failure the process is of no use any more: end it before the sessions above unwind
        // (they would otherwise let its threads run into the restorer's trap).
        struct KillOnFailure {
          pid_t pid;
          int exceptions = std::uncaught_exceptions();
          ~KillOnFailure() {
            if (std::uncaught_exceptions() > exceptions) ::kill(pid, SIGKILL);
          }
        } kill_on_failure{host_pid};
        // The restorer maps the address space and pauses; its pages are written in from here
        // (and the page image verified) before it goes on.
        const RemoteAddr block_at(plan.block);
        std::vector<uint8_t> block =
            remote.run_prepared(RemoteAddr(plan.area), plan.area_size, block_at, plan.block_size,
                                RemoteAddr(plan.stack_top));
        check_restorer_results(plan, block, plan.fill_pause);
        const ProcessImages& process_images = ctx.processes.at(pid);
        std::vector<const RawImageReader*> page_images;
        for (const auto& image : process_images.pages) page_images.push_back(image.get());
        fill_process_memory(host_pid, page_images, runs_from_json(process_images.mm.at("runs")));
        block = remote.run_prepared(RemoteAddr(plan.area), plan.area_size, block_at,
                                    plan.block_size, RemoteAddr(plan.stack_top),
                                    block_at + (plan.fill_pause + 1) * sizeof(BatchedSyscall));
        for (pid_t tid : remote.new_threads())
          created.push_back(PtraceAttachment::adopt_stopped(tid));
        check_restorer_results(plan, block);
        result.stats.pages_restored += plan.pages_restored;
        const json& images = core.at("threads");
        for (size_t t = 1; t < images.size(); ++t) {
          const json& image = images[t];
          pid_t tid = image.at("tid");
          // container-cr: created threads are seen by their host tids.
          auto it = std::find_if(created.begin(), created.end(), [&](auto& a) {
            return (options.new_pid_namespace ? innermost_pid(a.tid()) : a.tid()) == tid;
          });
          if (it == created.end())
            throw Error("thread " + std::to_string(tid) + " was not created");
          {
            RemoteSyscalls in_thread(*it);
            const json& robust = image.at("robust_list");
            if (robust.at("head").get<uint64_t>()) {
              long r = in_thread.syscall(SYS_set_robust_list, robust.at("head"), robust.at("len"));
              if (r < 0)
                throw SysError("thread " + std::to_string(tid) + ": set_robust_list",
                               static_cast<int>(-r));
            }
            const json& rseq = image.at("rseq");
            if (rseq.at("pointer").get<uint64_t>()) {
              long r = in_thread.syscall(SYS_rseq, rseq.at("pointer"), rseq.at("size"), 0,
                                         rseq.at("signature"));
              if (r < 0)
                throw SysError("thread " + std::to_string(tid) + ": rseq", static_cast<int>(-r));
            }
            SyscallBatch thread_batch;
            append_thread_restore(image.at("attrs"), thread_batch);
            append_thread_signals(pid, image, thread_batch);
            if (thread_batch.count()) {
              std::vector<uint8_t> out = in_thread.run_batch(thread_batch);
              for (size_t i = 0; i < thread_batch.count(); ++i) {
                int64_t r = SyscallBatch::result_of(out, i);
                if (r < 0 && r >= -4095)
                  throw SysError(
                      "thread " + std::to_string(tid) + ": " + thread_batch.description(i),
                      static_cast<int>(-r));
              }
            }
            in_thread.finish(true);
          }
          restore_thread_registers(*it, image);
          threads.push_back({std::move(*it), &image});
        }
        remote.finish(true);  // unmaps the restorer area through the restored vdso
        restore_thread_registers(main, images.at(0));
        threads.push_back({std::move(main), &images.at(0)});
      });
    }
    if (ipc) ipc->after_processes_attached();
    // All processes are ready: let every thread go.
    for (RestoredThread& t : threads) t.attachment.detach();
  } catch (Error& e) {
    for (RestoredThread& t : threads) t.attachment.release();
    for (pid_t pid : ours) ::kill(pid, SIGKILL);
    while (::waitpid(root, nullptr, 0) < 0 && errno == EINTR) {
    }
    throw;
  }
  if (!options.pidfile.empty()) fs::write_file_atomic(options.pidfile, std::to_string(root) + "\n");
  result.stats.restore_time = steady_now_us() - t0;
  return result;
}

}  // namespace cryo::ckpt
