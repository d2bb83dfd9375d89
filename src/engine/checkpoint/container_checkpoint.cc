#include "engine/checkpoint/container_checkpoint.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>

#include "checkpoint/file_kinds/sockets_tcp_hold.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/fd_passing.h"
#include "common/files_written_on_death.h"
#include "common/fs.h"
#include "common/interruption.h"
#include "common/lazy_library.h"
#include "common/log.h"
#include "common/phase_trace.h"
#include "common/strings.h"
#include "engine/checkpoint/container_checkpoint_mounts.h"
#include "engine/container/container.h"
#include "engine/container/manager.h"
#include "engine/monitor/monitor.h"
#include "engine/network/network.h"
#include "engine/runtime/cgroup.h"

namespace cryo::engine {

namespace {

// What the restore needs beyond the process images, saved next to them.
constexpr const char* kContainerImage = "container.json";
// The engine's debug log and statistics of the last dump and restore (Podman/CRIU names), kept
// with -k/--keep.
constexpr const char* kDumpLog = "dump.log";
constexpr const char* kRestoreLog = "restore.log";
constexpr const char* kDumpStats = "stats-dump";
constexpr const char* kRestoreStats = "stats-restore";
// The restore's options for the monitor's helper, in the container's run directory.
constexpr const char* kRestoreOptionsFile = "restore-options.json";

// The init's standard streams by fd: {"link": "pipe:[123]" | "/dev/pts/0" | "/dev/null"...,
// "kind": "pipe" | "console" | "other"}. Pipes and pty slaves (the console of -t) have their other
// end in the monitor.
nlohmann::json stdio_streams(pid_t init) {
  nlohmann::json streams = nlohmann::json::object();
  for (int fd = 0; fd < 3; ++fd) {
    auto path = "/proc/" + std::to_string(init) + "/fd/" + std::to_string(fd);
    char buf[4096];
    ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
    struct stat st;
    if (n <= 0 || ::stat(path.c_str(), &st) < 0) continue;
    std::string link(buf, static_cast<size_t>(n));
    bool pty_slave = S_ISCHR(st.st_mode) && major(st.st_rdev) >= 136 && major(st.st_rdev) <= 143;
    streams[std::to_string(fd)] = {
        {"link", link},
        {"kind", S_ISFIFO(st.st_mode) && starts_with(link, "pipe:[") ? "pipe"
                 : pty_slave                                         ? "console"
                                                                     : "other"}};
  }
  return streams;
}

// The key (link) of the init's console when it is also its controlling terminal
// (/proc/PID/stat tty_nr is the console's device number); empty otherwise.
std::string controlling_console(pid_t init, const nlohmann::json& streams) {
  std::string stat = fs::read_file("/proc/" + std::to_string(init) + "/stat");
  size_t comm_end = stat.rfind(')');
  if (comm_end == std::string::npos) return "";
  // After the comm: state ppid pgrp session tty_nr.
  std::vector<std::string> fields = split(stat.substr(comm_end + 2), ' ');
  if (fields.size() < 5) return "";
  unsigned long tty_nr = std::stoul(fields[4]);
  for (auto& [fd, stream] : streams.items()) {
    if (stream.at("kind") != "console") continue;
    struct stat st;
    std::string path = "/proc/" + std::to_string(init) + "/fd/" + fd;
    if (::stat(path.c_str(), &st) == 0 && st.st_rdev == tty_nr) return stream.at("link");
  }
  return "";
}

// A checkpoint runs in the CLI process, which may be killed half way. The tree then resumes by
// itself when its tracer dies, except when frozen in its cgroup at that moment: a helper thaws
// the cgroup when the CLI ends without saying the checkpoint is over (v1 or v2, whichever file
// exists).
FilesWrittenOnDeath thaw_if_killed(const std::string& freezer_dir) {
  return FilesWrittenOnDeath(
      {{freezer_dir + "/freezer.state", "THAWED"}, {freezer_dir + "/cgroup.freeze", "0"}});
}

void rename_or_throw(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) < 0) throw_errno("rename " + from + " to " + to);
}

nlohmann::json dump_stats_json(const ckpt::DumpStats& stats) {
  return {{"freezing_time", stats.freezing_time}, {"frozen_time", stats.frozen_time},
          {"memdump_time", stats.memdump_time},   {"memwrite_time", stats.memwrite_time},
          {"pages_scanned", stats.pages_scanned}, {"pages_written", stats.pages_written}};
}

void write_all_and_close(UniqueFd& fd, const std::string& text) {
  (void)!::write(fd.get(), text.data(), text.size());
  fd.reset();
}

// An export's sink: the tmpfs contents go into the archive as its last images, when the dump
// finishes it (the tree still frozen, unless -R resumed it, as for a checkpoint in place).
class TmpfsExportSink : public ckpt::ImageSink {
 public:
  TmpfsExportSink(ckpt::ImageSink* archive, const std::vector<SavedTmpfs>& tmpfs,
                  const std::vector<UniqueFd>& roots, std::string scratch_dir)
      : archive_(archive), tmpfs_(tmpfs), roots_(roots), scratch_dir_(std::move(scratch_dir)) {}
  std::unique_ptr<ckpt::ImageOutput> create(const std::string& name, uint64_t size) override {
    return archive_->create(name, size);
  }
  void finish() override {
    uint64_t t0 = steady_now_us();
    // Each tar is made beside the dump's log, then copied into the archive with its exact size.
    save_tmpfs_contents(tmpfs_, roots_, scratch_dir_);
    for (const SavedTmpfs& t : tmpfs_) {
      std::string path = scratch_dir_ + "/" + t.archive;
      UniqueFd in = fs::open_or_throw(path, O_RDONLY | O_CLOEXEC);
      struct stat st;
      if (::fstat(in.get(), &st) < 0) throw_errno("stat " + path);
      auto out = archive_->create(t.archive, static_cast<uint64_t>(st.st_size));
      // Sized by the file (the usual empty /dev/shm is 0 bytes): 1 MiB of fresh zeroed memory
      // costs ~2 ms of first touches here, with the container frozen.
      std::vector<char> buffer(std::clamp<size_t>(static_cast<size_t>(st.st_size), 1, 1 << 20));
      for (;;) {
        ssize_t n = ::read(in.get(), buffer.data(), buffer.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw_errno("read " + path);
        if (n == 0) break;
        out->write(buffer.data(), static_cast<size_t>(n));
      }
      out->commit();
      ::unlink(path.c_str());
    }
    LOG_DEBUG << "tmpfs contents archived in " << (steady_now_us() - t0) << " us";
    archive_->finish();
  }
  std::string describe() const override { return archive_->describe(); }

 private:
  ckpt::ImageSink* archive_;
  const std::vector<SavedTmpfs>& tmpfs_;
  const std::vector<UniqueFd>& roots_;
  std::string scratch_dir_;
};

}  // namespace

std::string checkpoint_dir(const StorePaths& paths, const std::string& id) {
  return paths.container_dir(id) + "/checkpoint";
}

void require_checkpointable(const ContainerRecord& record, bool leave_running, bool exporting) {
  if (record.state != ContainerState::kRunning)
    throw ExitCodeError("\"" + to_string(record.state) +
                            "\" is not running, cannot checkpoint: container state improper",
                        125);
  if (record.config.auto_remove && !leave_running) {
    if (exporting)
      throw ExitCodeError(
          "not supported yet: exporting a container started with --rm without --leave-running",
          125);
    throw ExitCodeError(
        "cannot checkpoint containers that have been started with '--rm' unless '--export' is "
        "used: invalid argument",
        125);
  }
}

ContainerCheckpointResult checkpoint_container(const StorePaths& paths, const std::string& id,
                                               const ContainerCheckpointOptions& options) {
  throw_if_interrupted();  // the next of several containers, after a Ctrl-C
  uint64_t t0 = steady_now_us();
  phase_mark("checkpoint: begins");
  ContainerManager manager(paths);
  ContainerRecord record = manager.load(id);
  require_checkpointable(record, options.leave_running, options.sink != nullptr);

  // The checkpoint is written to a temporary directory and committed (renamed, the previous one
  // moved aside) once every image is there and before the tree dies.
  std::string final_dir = checkpoint_dir(paths, id);
  std::string temp_dir = final_dir + ".tmp";
  std::string previous_dir = final_dir + ".old";
  if (fs::exists(previous_dir) && !fs::exists(final_dir))  // a checkpoint killed half way
    rename_or_throw(previous_dir, final_dir);
  fs::remove_all(temp_dir);
  fs::remove_all(previous_dir);
  std::string freezer_dir =
      ContainerCgroup::existing(container_cgroup_name(paths, id)).freezer_path();

  ContainerCheckpointResult result;
  result.id = id;
  bool committed = false;
  try {
    fs::mkdir_p(temp_dir);
    log::FileSink log_sink(temp_dir + "/" + kDumpLog);
    LOG_INFO << "checkpoint of container " << id << " begins at t=" << t0 << " (init pid "
             << record.pid << (options.leave_running ? ", leave running" : "") << ")";
    nlohmann::json spec = nlohmann::json::parse(fs::read_file(manager.store().spec_path(id)));
    nlohmann::json streams = stdio_streams(record.pid);
    std::vector<SavedTmpfs> tmpfs = with_context("the mounts of container " + record.name, [&] {
      return tmpfs_to_save(spec, read_mountinfo(record.pid));
    });
    std::vector<UniqueFd> tmpfs_roots;
    nlohmann::json tmpfs_json = nlohmann::json::array();
    for (const SavedTmpfs& t : tmpfs) {
      tmpfs_roots.push_back(fs::open_or_throw(
          "/proc/" + std::to_string(record.pid) + "/root" + t.path, O_PATH | O_DIRECTORY));
      tmpfs_json.push_back(to_json(t));
      LOG_DEBUG << "tmpfs " << t.path << (t.made_by_app ? " (made by the application)" : "");
    }
    nlohmann::json saved = {
        {"spec", spec},        {"network_status", record.network_status},
        {"stdio", streams},    {"controlling_terminal", controlling_console(record.pid, streams)},
        {"tmpfs", tmpfs_json}, {"tty", record.config.tty}};
    std::string saved_text = saved.dump(2) + "\n";

    ckpt::DumpOptions dump_options;
    dump_options.leave_running = options.leave_running;
    dump_options.tcp_established = options.tcp_established;
    dump_options.file_locks = options.file_locks;
    dump_options.freezer_cgroup = freezer_dir;
    dump_options.stats_at_finish = options.stats_at_finish;
    for (auto& [fd, stream] : streams.items())
      if (stream.at("kind") != "other") dump_options.external_files.insert(stream.at("link"));
    TmpfsExportSink export_sink(options.sink, tmpfs, tmpfs_roots, temp_dir);
    if (options.sink) {
      // An export: every image goes into the archive; no checkpoint directory is committed.
      auto out = options.sink->create(kContainerImage, saved_text.size());
      out->write(saved_text.data(), saved_text.size());
      out->commit();
      dump_options.sink = &export_sink;
    } else {
      // Made durable with the images (the sink fsyncs every file of the directory).
      fs::write_file_replace(temp_dir + "/" + kContainerImage, saved_text, 0600);
    }
    dump_options.images_complete = [&] {
      phase_mark("checkpoint: images complete");
      if (!options.sink) {
        uint64_t t_tmpfs = steady_now_us();
        save_tmpfs_contents(tmpfs, tmpfs_roots, temp_dir);
        LOG_DEBUG << "tmpfs contents saved in " << (steady_now_us() - t_tmpfs) << " us";
        if (fs::exists(final_dir)) rename_or_throw(final_dir, previous_dir);
        rename_or_throw(temp_dir, final_dir);
      }
      committed = true;
      if (!options.leave_running) {
        // Marked before the tree dies: a CLI killed from here on leaves a restorable container.
        FileLock lock = manager.store().lock(id);
        ContainerRecord marked = manager.store().load(id);
        marked.checkpointed = true;
        marked.checkpointed_ns = now_ns();
        // In place, the network waits for the restore where it is (an export's destination
        // builds its own, and the ports are free for it).
        marked.network_kept = !options.sink;
        manager.store().save(marked);
      }
    };
    // Held connections need libnftables (loaded on first use): loaded before the freeze, not
    // while the container is frozen.
    if (options.tcp_established)
      load_lazy_library(CRYO_SONAME_NFTABLES, "holding the packets of established TCP connections");
    FilesWrittenOnDeath thaw_guard = thaw_if_killed(freezer_dir);
    result.stats = with_context("checkpointing container " + record.name,
                                [&] { return ckpt::dump(record.pid, temp_dir, dump_options); });
    LOG_INFO << "dumped at t=" << steady_now_us() << ": " << dump_stats_json(result.stats).dump();
    phase_mark("checkpoint: dump done");
  } catch (const std::exception& e) {
    if (!committed) {
      // The engine's log of the failed dump stays for diagnosis, outside any checkpoint.
      std::string log_path = paths.container_dir(id) + "/" + kDumpLog;
      ::rename((temp_dir + "/" + kDumpLog).c_str(), log_path.c_str());
      fs::remove_all(temp_dir);
      if (fs::exists(previous_dir) && !fs::exists(final_dir))
        rename_or_throw(previous_dir, final_dir);
    }
    throw;
  }
  if (options.sink) {
    fs::remove_all(temp_dir);
  } else {
    fs::remove_all(previous_dir);
    if (options.keep)
      fs::write_file_atomic(final_dir + "/" + kDumpStats,
                            dump_stats_json(result.stats).dump(2) + "\n", 0600);
    else
      ::unlink((final_dir + "/" + kDumpLog).c_str());
  }
  ::unlink((paths.container_dir(id) + "/" + kDumpLog).c_str());

  if (!options.leave_running) {
    // The monitor sees its init die, records the exit and releases network (keeping the IP
    // lease) and cgroup; the record then says why it ended.
    manager.wait(id);
    phase_mark("checkpoint: the monitor released the container");
    if (options.keep && !options.sink) {
      log::FileSink log_sink(final_dir + "/" + kDumpLog);
      LOG_DEBUG << "the monitor released the container at t=" << steady_now_us();
    }
    FileLock lock = manager.store().lock(id);
    ContainerRecord after = manager.store().load(id);
    after.checkpointed = true;
    after.restored = false;
    after.exit_code = 0;
    // The record marked before the kill is the durable one; this adds live state only.
    manager.store().save(after, false);
  }
  result.runtime_checkpoint_duration_us = steady_now_us() - t0;
  phase_mark("checkpoint: done");
  return result;
}

ContainerRestoreResult restore_container(const StorePaths& paths, const std::string& id,
                                         const ContainerRestoreOptions& options) {
  uint64_t t0 = steady_now_us();
  phase_mark("restore: begins");
  ContainerManager manager(paths);
  ContainerStore store(paths);
  std::string dir = checkpoint_dir(paths, id);
  {
    ContainerRecord record = manager.load(id);  // notices a dead monitor (takes the lock itself)
    FileLock lock = store.lock(id);
    record = store.load(id);
    if (record.state == ContainerState::kRunning || record.state == ContainerState::kPaused)
      throw ExitCodeError("container " + id + " is running or paused, cannot restore: container " +
                              "state improper",
                          125);
    if (!record.checkpointed || !fs::exists(dir + "/" + kContainerImage))
      throw ExitCodeError(
          "a complete checkpoint for this container cannot be found, cannot restore: stat " + dir +
              ": no such file or directory",
          125);
    phase_mark("restore: record loaded and locked");
    try {
      // Ends before the monitor is forked: the monitor must not keep writing to it.
      log::FileSink log_sink(dir + "/" + kRestoreLog);
      // Times on the steady clock (µs) compare across the CLI, the monitor and its helper.
      LOG_INFO << "restore of container " << id << " begins at t=" << t0;
      nlohmann::json saved = nlohmann::json::parse(fs::read_file(dir + "/" + kContainerImage));
      nlohmann::json spec = saved.at("spec");
      // The same network as at checkpoint time: same IP, MAC and host ports.
      if (!saved.at("network_status").is_null()) {
        uint64_t t_network = steady_now_us();
        NetworkStatus before = network_status_from_json(saved.at("network_status"));
        NetworkManager network(paths);
        std::optional<NetworkStatus> status;
        // The network status is live state (like a start's): saved without fsync.
        if (record.network_kept && !record.network_status.is_null()) {
          NetworkStatus kept = network_status_from_json(record.network_status);
          bool taken_over = false;
          try {
            taken_over = network.take_over_kept(id, kept);
          } catch (...) {
            network.teardown(id, kept);
            record.network_kept = false;
            record.network_status = nullptr;
            store.save(record, false);
            throw;
          }
          if (taken_over) {
            status = kept;
            LOG_DEBUG << "kept network taken over";
          } else {
            LOG_INFO << "the kept network of container " << id << " is incomplete: rebuilt";
            network.teardown(id, kept);
            record.network_status = nullptr;
          }
        }
        // A setup that fails (a host port taken meanwhile...) removes what it made.
        if (!status) status = network.setup(id, request_from_status(before));
        // From here on a failed restore tears the network down, kept or rebuilt.
        record.network_kept = false;
        record.network_status = to_json(*status);
        store.save(record, false);
        for (auto& ns : spec.at("linux").at("namespaces"))
          if (ns.at("type") == "network") ns["path"] = status->netns_path;
        LOG_DEBUG << "network set up in " << (steady_now_us() - t_network) << " us";
        phase_mark("restore: network taken over or set up");
      }
      // Unchanged when the network was kept (same netns path): not written again.
      std::string spec_text = spec.dump(2) + "\n";
      if (fs::read_file_if_exists(store.spec_path(id)) != spec_text)
        fs::write_file_atomic(store.spec_path(id), spec_text, 0600);
      fs::mkdir_p(paths.run_container_dir(id));
      fs::write_file_replace(paths.run_container_dir(id) + "/" + kRestoreOptionsFile,
                             nlohmann::json{{"tcp_established", options.tcp_established},
                                            {"file_locks", options.file_locks},
                                            {"keep", options.keep}}
                                 .dump());
    } catch (...) {
      // The cgroup an in-place checkpoint kept goes with a restore that fails here (from the
      // monitor's start on, the monitor and release_resources remove it).
      try {
        ContainerCgroup::existing(container_cgroup_name(paths, id)).remove();
      } catch (const std::exception& e) {
        LOG_WARN << "container " << id << ": " << e.what();
      }
      throw;
    }
  }
  phase_mark("restore: spec and options written, monitor starts");
  MonitorStart started;
  try {
    started = start_monitor(paths, id, false, options.log_level, MonitorLaunch::kFork,
                            /*restore=*/true);
  } catch (...) {
    manager.release_resources(id);
    throw;
  }
  phase_mark("restore: the monitor reported the restored container");
  // Without --keep the monitor has moved the checkpoint aside already (retire_restored_checkpoint).
  if (options.keep) {
    log::FileSink log_sink(dir + "/" + kRestoreLog);
    LOG_DEBUG << "the monitor reported the restored container at t=" << steady_now_us();
  }
  ContainerRestoreResult result;
  result.id = id;
  nlohmann::json stats = nlohmann::json::object();
  if (!started.restore_stats.empty()) {
    stats = nlohmann::json::parse(started.restore_stats);
    result.stats.forking_time = stats.value("forking_time", uint64_t{0});
    result.stats.restore_time = stats.value("restore_time", uint64_t{0});
    result.stats.pages_restored = stats.value("pages_restored", uint64_t{0});
    result.stats.pages_compared = stats.value("pages_compared", uint64_t{0});
    result.stats.pages_skipped_cow = stats.value("pages_skipped_cow", uint64_t{0});
  }
  result.runtime_restore_duration_us = steady_now_us() - t0;
  if (options.keep) {
    stats["runtime_restore_duration"] = result.runtime_restore_duration_us;
    fs::write_file_atomic(dir + "/" + kRestoreStats, stats.dump(2) + "\n", 0600);
  }
  phase_mark("restore: done");
  return result;
}

std::string retire_restored_checkpoint(const StorePaths& paths, const std::string& id) {
  nlohmann::json restore_flags = nlohmann::json::parse(
      fs::read_file_if_exists(paths.run_container_dir(id) + "/" + kRestoreOptionsFile)
          .value_or("{}"));
  if (restore_flags.value("keep", false)) return "";
  // Unique: the monitor of an earlier restore may still be removing its own.
  std::string retired =
      paths.container_dir(id) + "/checkpoint.restored." + std::to_string(::getpid());
  rename_or_throw(checkpoint_dir(paths, id), retired);
  return retired;
}

SpawnedProcess restore_container_init(const StorePaths& paths, const std::string& id,
                                      const nlohmann::json& spec, const ContainerCgroup& cgroup,
                                      const ProcessStdio& stdio, bool terminal,
                                      nlohmann::json* stats_json, UniqueFd* mount_namespace) {
  std::string dir = checkpoint_dir(paths, id);
  nlohmann::json saved = nlohmann::json::parse(fs::read_file(dir + "/" + kContainerImage));
  nlohmann::json restore_flags = nlohmann::json::parse(
      fs::read_file_if_exists(paths.run_container_dir(id) + "/" + kRestoreOptionsFile)
          .value_or("{}"));
  std::map<std::string, int> inherit;
  std::string console_key;
  for (auto& [fd_text, stream] : saved.at("stdio").items()) {
    std::string link = stream.at("link");
    std::string kind = stream.at("kind");
    if (kind == "console") {
      if (!terminal) throw Error("the checkpoint has a console " + link + " but no terminal");
      console_key = link;
    } else if (kind == "pipe") {
      int fd = fd_text == "0" ? stdio.stdin_fd : fd_text == "1" ? stdio.stdout_fd : stdio.stderr_fd;
      if (fd < 0) throw Error("no new pipe for the container's fd " + fd_text + " (" + link + ")");
      // Two fds on one dumped pipe get the first new end.
      inherit.emplace(link, fd);
    }
  }
  int report_pipe[2];
  if (::pipe2(report_pipe, O_CLOEXEC) < 0) throw_errno("pipe2");
  UniqueFd report_read(report_pipe[0]), report_write(report_pipe[1]);
  // Carries the helper's mount namespace, then the console master.
  UniqueFd console_parent, console_child;
  {
    int sp[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) throw_errno("socketpair");
    console_parent.reset(sp[0]);
    console_child.reset(sp[1]);
  }
  UniqueFd images = fs::open_or_throw(dir, O_PATH | O_DIRECTORY);

  pid_t helper = ::fork();
  if (helper < 0) throw_errno("fork restore helper");
  if (helper == 0) {
    report_read.reset();
    console_parent.reset();
    // Recognisable (e.g. by a test that kills a restore half way).
    ::prctl(PR_SET_NAME, "cryo-restore", 0, 0, 0);
    log::FileSink log_sink(dir + "/" + kRestoreLog);
    try {
      uint64_t t_sandbox = steady_now_us();
      phase_mark("helper: begins");
      LOG_DEBUG << "restore helper begins at t=" << t_sandbox;
      cgroup.add_process(::getpid());
      phase_mark("helper: in the container's cgroup");
      int flags = sandbox_clone_flags(spec) & ~(CLONE_NEWPID | CLONE_NEWNET);
      if (::unshare(flags) < 0) throw_errno("unshare the container's namespaces");
      // The images are reached through the directory opened before pivot_root.
      std::string image_dir = "/proc/self/fd/" + std::to_string(images.get());
      std::vector<SavedTmpfs> tmpfs;
      for (const auto& t : saved.value("tmpfs", nlohmann::json::array()))
        tmpfs.push_back(saved_tmpfs_from_json(t));
      // Libraries loaded on first use come from the host's file system: those the restore calls
      // once inside the container's root are loaded now, and only when needed.
      for (const SavedTmpfs& t : tmpfs)
        if (!tmpfs_archive_is_empty(image_dir + "/" + t.archive))
          load_lazy_library(CRYO_SONAME_LIBARCHIVE, "restoring the contents of tmpfs " + t.path);
      if (fs::exists(image_dir + "/" + ckpt::files::sockets::kTcpHoldImage))
        load_lazy_library(CRYO_SONAME_NFTABLES, "lifting the TCP packet hold");
      enter_sandbox(spec);
      phase_mark("helper: sandbox entered");
      restore_tmpfs_contents(tmpfs, image_dir);
      phase_mark("helper: tmpfs contents restored");
      LOG_DEBUG << "sandbox and " << tmpfs.size() << " tmpfs rebuilt in "
                << (steady_now_us() - t_sandbox) << " us";
      {
        // The files the restore opens here (console, /dev/null, mapped files) belong to this
        // mount namespace's mounts: kept alive by the monitor, they stay attached, so that the
        // restored processes (in a copy of it) see their paths as before, and dump again.
        UniqueFd mount_ns = fs::open_or_throw("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
        send_fd(console_child.get(), mount_ns.get(), "mount namespace");
      }
      UniqueFd console_slave;
      if (terminal) {
        // A new console in the container's own devpts instance, like the dumped one.
        UniqueFd master(::open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC));
        if (!master) throw_errno("open /dev/ptmx");
        if (::unlockpt(master.get()) < 0) throw_errno("unlockpt");
        console_slave.reset(::ioctl(master.get(), TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC));
        if (!console_slave) throw_errno("ioctl TIOCGPTPEER");
        send_fd(console_child.get(), master.get(), "console master");
        if (!console_key.empty()) inherit[console_key] = console_slave.get();
      }
      ckpt::RestoreOptions options;
      options.new_pid_namespace = true;
      options.root_parent_is_caller_parent = true;
      options.new_time_namespace = true;
      options.root_clone_flags = CLONE_NEWNS;
      options.inherit_fds = inherit;
      options.tcp_established = restore_flags.value("tcp_established", false);
      options.file_locks = restore_flags.value("file_locks", false);
      // The helper unshared the container's IPC namespace and mounted /dev/mqueue in it.
      options.ipc_namespace_prepared = true;
      if (!console_key.empty() && saved.value("controlling_terminal", "") == console_key)
        options.root_controlling_terminal = console_key;
      options.in_root_before_restore = [&spec] {
        phase_mark("restored root: forked, before restore");
        remount_proc(spec);
      };
      phase_mark("helper: engine restore begins");
      ckpt::RestoreResult restored = ckpt::restore(image_dir, options);
      phase_mark("helper: engine restore done");
      nlohmann::json stats = {{"forking_time", restored.stats.forking_time},
                              {"restore_time", restored.stats.restore_time},
                              {"pages_restored", restored.stats.pages_restored},
                              {"pages_compared", restored.stats.pages_compared},
                              {"pages_skipped_cow", restored.stats.pages_skipped_cow}};
      LOG_INFO << "restored at t=" << steady_now_us() << ": " << stats.dump();
      write_all_and_close(
          report_write,
          nlohmann::json{{"ok", true}, {"pid", restored.root_pid}, {"stats", stats}}.dump());
      ::_exit(0);
    } catch (const std::exception& e) {
      LOG_ERROR << "restore of container " << id << ": " << e.what();
      write_all_and_close(report_write,
                          nlohmann::json{{"ok", false}, {"message", e.what()}}.dump());
      ::_exit(1);
    }
  }
  phase_mark("monitor: restore helper forked");
  report_write.reset();
  console_child.reset();
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(report_read.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  while (::waitpid(helper, nullptr, 0) < 0 && errno == EINTR) {
  }
  phase_mark("monitor: the restore helper reported");
  if (text.empty())
    throw Error("the restore helper of container " + id + " died without reporting");
  nlohmann::json report = nlohmann::json::parse(text);
  if (!report.value("ok", false))
    throw Error("restoring container " + id + ": " + report.value("message", "failed"));
  SpawnedProcess out;
  out.pid = report.at("pid");
  if (stats_json) *stats_json = report.at("stats");
  out.pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, out.pid, 0)));
  try {
    *mount_namespace = receive_fd(console_parent.get(), "mount namespace of the restore helper");
    if (terminal) out.console_master = receive_fd(console_parent.get(), "console master");
  } catch (...) {
    ::kill(out.pid, SIGKILL);
    throw;
  }
  return out;
}

}  // namespace cryo::engine
