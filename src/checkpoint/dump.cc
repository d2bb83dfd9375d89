// cryo::ckpt::dump(): freeze the tree, dump every process from outside (plus a few injected
// syscalls), then kill or resume it.
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/kcmp.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>

#include "checkpoint/checkpoint.h"
#include "checkpoint/files.h"
#include "checkpoint/image/image_file.h"
#include "checkpoint/inventory.h"
#include "checkpoint/ipc.h"
#include "checkpoint/memory.h"
#include "checkpoint/namespaces.h"
#include "checkpoint/process_attrs.h"
#include "checkpoint/remote_syscall.h"
#include "checkpoint/threads.h"
#include "checkpoint/tree.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/fault_injection.h"
#include "common/fs.h"
#include "common/interruption.h"
#include "common/log.h"
#include "common/phase_trace.h"
#include "common/unique_fd.h"

namespace cryo::ckpt {

namespace {

// Fd tables shared by CLONE_FILES are restored by forking the sharers with CLONE_FILES from the
// process that owns the table (the first of them in tree order): each must be its child. Other
// shapes are refused before anything is written, while the tree can still run on (kcmp orders
// fd tables, so grouping by it finds the sharers).
void refuse_unrestorable_shared_fd_tables(const std::vector<FrozenProcess>& processes) {
  std::vector<const ProcessInfo*> live;  // tree order: parents first
  for (const FrozenProcess& p : processes)
    if (!p.info.zombie) live.push_back(&p.info);
  auto kcmp_files = [](pid_t a, pid_t b) {
    long r = ::syscall(SYS_kcmp, a, b, KCMP_FILES, 0, 0);
    if (r < 0)
      throw_errno("kcmp KCMP_FILES of pids " + std::to_string(a) + " and " + std::to_string(b));
    return r;
  };
  std::vector<const ProcessInfo*> by_table = live;
  std::stable_sort(by_table.begin(), by_table.end(),
                   [&](auto* a, auto* b) { return kcmp_files(a->pid, b->pid) == 1; });
  std::map<pid_t, size_t> tree_order;
  for (size_t i = 0; i < live.size(); ++i) tree_order[live[i]->pid] = i;
  for (size_t begin = 0, end = 0; begin < by_table.size(); begin = end) {
    end = begin + 1;
    while (end < by_table.size() && kcmp_files(by_table[begin]->pid, by_table[end]->pid) == 0)
      ++end;
    const ProcessInfo* owner = by_table[begin];
    for (size_t i = begin; i < end; ++i)
      if (tree_order[by_table[i]->pid] < tree_order[owner->pid]) owner = by_table[i];
    for (size_t i = begin; i < end; ++i)
      if (by_table[i] != owner && by_table[i]->ppid != owner->pid)
        throw Error("not supported yet: pid " + std::to_string(by_table[i]->pid) +
                    " shares the fd table (CLONE_FILES) of pid " + std::to_string(owner->pid) +
                    ", which is not its parent");
  }
}

json dump_process(FrozenProcess& process, ImageSink& sink, MemoryDumpCounters& counters,
                  TreeMemory& tree_memory, const PidTranslation& pids) {
  pid_t pid = process.info.pid;
  // container-cr: images name the process by its PID in the tree's own namespace.
  const std::string image_id = std::to_string(pids.to_image(pid));
  uint64_t t_start = steady_now_us();

  // The leader's session starts with a syscall that is not waited for: the process's first
  // return to user mode (10-20 ms per GiB on this VM, see RemoteSyscalls) overlaps the memory
  // dump instead of preceding it. Nothing the memory dump reads depends on the registers or
  // needs the thread stopped; the attribute dump, which does (ptrace requests), waits for the stop.
  std::unique_ptr<RemoteSyscalls> leader_session;
  for (PtraceAttachment& thread : process.threads)
    if (thread.tid() == pid) {
      leader_session = std::make_unique<RemoteSyscalls>(thread);
      leader_session->start_unawaited_syscall(SYS_getpid);
    }
  json mm = dump_memory(pid, sink, counters, tree_memory);
  uint64_t t_memory = steady_now_us();

  json core;
  core["pid"] = pids.to_image(pid);
  core["comm"] = process.info.comm;
  json threads = json::array();
  uint64_t brk = 0;
  for (PtraceAttachment& thread : process.threads) {
    uint64_t tid_address = 0;
    json thread_attrs;
    {
      // One injected batch per thread asks everything only the thread itself can say (brk and
      // clear_child_tid included).
      std::unique_ptr<RemoteSyscalls> session = thread.tid() == pid
                                                    ? std::move(leader_session)
                                                    : std::make_unique<RemoteSyscalls>(thread);
      RemoteSyscalls& remote = *session;
      if (thread.tid() == pid) {
        // brk and the tid address go to their own places of the images (mm, thread).
        json attrs = dump_process_attrs(pid, remote);
        fault_point("dump-in-injected-syscalls");
        brk = attrs.at("brk");
        attrs.erase("brk");
        tid_address = attrs.at("thread").at("tid_address");
        attrs["thread"].erase("tid_address");
        core["process_attrs"] = std::move(attrs);
      } else {
        // The leader's own attributes are part of the process attributes.
        thread_attrs = dump_thread_attrs(thread.tid(), remote);
        tid_address = thread_attrs.at("tid_address");
        thread_attrs.erase("tid_address");
      }
    }  // the session ends: the thread's own registers are back for dump_thread
    json t = dump_thread(thread, tid_address);
    t["tid"] = pids.to_image(thread.tid());  // container-cr
    t["attrs"] = thread_attrs;
    threads.push_back(t);
  }
  core["threads"] = threads;
  core["shared_pending_signals"] =
      siginfos_to_json(process.threads.at(0).peek_pending_signals(true));
  write_json_image(sink, "core-" + image_id + ".img", core);

  mm["brk"] = brk;
  write_json_image(sink, "mm-" + image_id + ".img", mm);
  LOG_DEBUG << "pid " << pid << ": memory " << (t_memory - t_start)
            << " us, then threads and attributes " << (steady_now_us() - t_memory) << " us";
  return core;
}

}  // namespace

DumpStats dump(pid_t pid, const std::string& image_dir, const DumpOptions& options) {
  throw_if_interrupted();
  // However the dump ends, the page copy's buffers go back to the pool zeroed.
  struct CopyBuffersReleased {
    ~CopyBuffersReleased() { release_page_copy_buffers(); }
  } copy_buffers_released;
  DumpStats stats;
  std::unique_ptr<DirectorySink> directory;
  if (options.sink == nullptr) directory = std::make_unique<DirectorySink>(image_dir);
  ImageSink& sink = options.sink != nullptr ? *options.sink : *directory;
  uint64_t t0 = steady_now_us();
  FrozenTree tree = with_context("freezing the tree of pid " + std::to_string(pid),
                                 [&] { return FrozenTree::freeze(pid, options.freezer_cgroup); });
  uint64_t frozen_at = steady_now_us();
  phase_mark("dump: tree frozen");
  stats.freezing_time = frozen_at - t0;
  // container-cr: a tree in PID/time namespaces of its own (a container) is dumped as it sees
  // itself: PIDs of its namespace, and its clocks at freeze time.
  PidTranslation pids(is_init_of_other_pid_namespace(pid));
  for (FrozenProcess& process : tree.processes()) {
    pids.add(process.info.pid);
    for (auto& t : process.threads) pids.add(t.tid());
  }
  if (fs::read_link("/proc/self/ns/time") !=
      fs::read_link("/proc/" + std::to_string(pid) + "/ns/time"))
    write_json_image(sink, kTimeNamespaceImage, to_json(read_clocks_of(pid)));

  auto& processes = tree.processes();
  const ProcessInfo& root = processes.at(0).info;
  if (root.zombie) throw Error("pid " + std::to_string(pid) + " is a zombie");
  bool sid_in_tree = false;
  for (auto& p : processes) sid_in_tree |= p.info.pid == root.sid;
  if (!sid_in_tree && !options.shell_job)
    throw Error("the session leader " + std::to_string(root.sid) + " of pid " +
                std::to_string(pid) + " is outside the tree (a shell job): use --shell-job");

  refuse_unrestorable_shared_fd_tables(processes);
  {
    std::vector<pid_t> live;
    for (auto& p : processes)
      if (!p.info.zombie) live.push_back(p.info.pid);
    dump_ipc_namespace(pid, live, sink);
  }

  FileDumpOptions file_options;
  file_options.shell_job = options.shell_job;
  file_options.tcp_established = options.tcp_established;
  file_options.file_locks = options.file_locks;
  file_options.ext_unix_sk = options.ext_unix_sk;
  file_options.external_files = options.external_files;
  FileDumper files(sink, file_options);
  MemoryDumpCounters counters;
  TreeMemory tree_memory;
  json pstree = json::array();
  for (FrozenProcess& process : processes) {
    const ProcessInfo& info = process.info;
    json children = json::array();
    for (pid_t child : process.children) children.push_back(pids.to_image(child));
    json entry = {{"pid", pids.to_image(info.pid)},
                  {"ppid", pids.to_image(info.ppid)},
                  {"pgid", pids.to_image(info.pgid)},
                  {"sid", pids.to_image(info.sid)},
                  {"zombie", info.zombie},
                  {"exit_code", info.exit_code},
                  {"comm", info.comm},
                  {"children", children}};
    json tids = json::array();
    for (auto& t : process.threads) tids.push_back(pids.to_image(t.tid()));
    entry["threads"] = tids;
    pstree.push_back(entry);
    if (info.zombie) continue;
    with_context("dumping pid " + std::to_string(info.pid), [&] {
      // Outside any injected syscall: a held Ctrl-C stops the dump here, the tree runs on.
      throw_if_interrupted();
      dump_process(process, sink, counters, tree_memory, pids);
      fault_point("dump-first-memory-written");
      UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, info.pid, 0)));
      if (!pidfd) throw_errno("pidfd_open");
      uint64_t t_files = steady_now_us();
      files.dump_process(info.pid, pidfd.get(), pids.to_image(info.pid));
      LOG_DEBUG << "pid " << info.pid << ": files " << (steady_now_us() - t_files) << " us";
    });
  }
  uint64_t processes_done = steady_now_us();
  const size_t process_count = processes.size();
  files.finish();
  write_json_image(sink, "pstree.img", pstree);
  json shmem = json::array();
  for (auto& [inode, object] : tree_memory.shmem) shmem.push_back(object);
  write_json_image(sink, "shmem.img", shmem);
  json mapped_ghosts = json::array();
  for (auto& [key, object] : tree_memory.deleted_files) mapped_ghosts.push_back(object);
  write_json_image(sink, kMappedGhostsImage, mapped_ghosts);
  write_inventory(sink, pids.to_image(pid), options);

  // The last point where a held Ctrl-C stops the dump: from here on the images are committed.
  throw_if_interrupted();
  uint64_t images_done = steady_now_us();
  stats.memdump_time = counters.read_us;
  stats.memwrite_time = counters.write_us;
  stats.pages_scanned = counters.pages_scanned;
  stats.pages_written = counters.pages_written;
  // Established TCP connections stay in repair mode while the tree dies, so that they close
  // without FIN or RST and the peer waits for the restored copy; a tree that runs on gets them
  // back as they were.
  // The images are made durable once, for the whole set: after the tree runs on again when it
  // does, before it is killed otherwise (a dump that fails must leave the tree alive).
  auto finish_sink = [&] {
    if (options.stats_at_finish) {
      *options.stats_at_finish = stats;
      if (!options.leave_running)
        options.stats_at_finish->frozen_time = steady_now_us() - frozen_at;
    }
    with_context(sink.describe(), [&] { sink.finish(); });
  };
  if (options.leave_running) {
    files.release_tcp_repair();
    tree.resume();
    stats.frozen_time = steady_now_us() - frozen_at;
    finish_sink();
    if (options.images_complete) options.images_complete();
  } else {
    finish_sink();
    uint64_t synced = steady_now_us();
    if (options.images_complete) options.images_complete();
    files.keep_tcp_repair_for_kill();
    uint64_t killing = steady_now_us();
    tree.kill(options.wait_for_exit);
    stats.frozen_time = steady_now_us() - frozen_at;
    LOG_DEBUG << "images durable in " << (synced - images_done) << " us, the kill took "
              << (steady_now_us() - killing) << " us";
  }
  LOG_DEBUG << "dump of " << process_count << " processes: " << (processes_done - frozen_at)
            << " us dumping them, " << (images_done - processes_done) << " us tree images, "
            << (frozen_at + stats.frozen_time - images_done) << " us "
            << (options.leave_running ? "resuming" : "syncing and killing");
  return stats;
}

}  // namespace cryo::ckpt
