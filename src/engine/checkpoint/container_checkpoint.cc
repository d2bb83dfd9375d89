#include "engine/checkpoint/container_checkpoint.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/strings.h"
#include "engine/container/container.h"
#include "engine/container/manager.h"
#include "engine/monitor/monitor.h"
#include "engine/network/network.h"
#include "engine/runtime/cgroup.h"

namespace cryo::engine {

namespace {

// What the restore needs beyond the process images, saved next to them.
constexpr const char* kContainerImage = "container.json";
// The restore's options for the monitor's helper, in the container's run directory.
constexpr const char* kRestoreOptionsFile = "restore-options.json";

uint64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

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

void send_fd(int socket, int fd) {
  char dummy = 'm';
  iovec iov = {&dummy, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
  if (::sendmsg(socket, &msg, MSG_NOSIGNAL) < 0) throw_errno("sendmsg console master");
}

UniqueFd receive_fd(int socket) {
  char dummy;
  iovec iov = {&dummy, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) throw_errno("recvmsg console master");
  cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  if (n == 0 || !cmsg || cmsg->cmsg_type != SCM_RIGHTS)
    throw Error("the restore helper did not send its mount namespace and console");
  int fd;
  std::memcpy(&fd, CMSG_DATA(cmsg), sizeof fd);
  return UniqueFd(fd);
}

// In the restored root (PID 1 of its new PID namespace, in a mount namespace of its own): the
// /proc that prepare_sandbox mounted shows the restore helper's PID namespace; the container's
// must show its own. The spec's masks under /proc are applied again on the new instance.
void mount_proc_of_new_pid_namespace(const nlohmann::json& spec) {
  if (::umount2("/proc", MNT_DETACH) < 0) throw_errno("umount /proc");
  if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) < 0)
    throw_errno("mount proc on /proc");
  const nlohmann::json& linux_spec = spec.at("linux");
  for (const auto& item : linux_spec.value("maskedPaths", nlohmann::json::array())) {
    std::string path = item;
    if (!starts_with(path, "/proc/")) continue;
    struct stat st;
    if (::stat(path.c_str(), &st) < 0) continue;
    int r = S_ISDIR(st.st_mode) ? ::mount("tmpfs", path.c_str(), "tmpfs", MS_RDONLY, nullptr)
                                : ::mount("/dev/null", path.c_str(), nullptr, MS_BIND, nullptr);
    if (r < 0) throw_errno("masking " + path);
  }
  for (const auto& item : linux_spec.value("readonlyPaths", nlohmann::json::array())) {
    std::string path = item;
    if (!starts_with(path, "/proc/") || !fs::exists(path)) continue;
    if (::mount(path.c_str(), path.c_str(), nullptr, MS_BIND | MS_REC, nullptr) < 0 ||
        ::mount("", path.c_str(), nullptr,
                MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) < 0)
      throw_errno("making " + path + " read-only");
  }
}

void write_all_and_close(UniqueFd& fd, const std::string& text) {
  (void)!::write(fd.get(), text.data(), text.size());
  fd.reset();
}

}  // namespace

std::string checkpoint_dir(const StorePaths& paths, const std::string& id) {
  return paths.container_dir(id) + "/checkpoint";
}

ContainerCheckpointResult checkpoint_container(const StorePaths& paths, const std::string& id,
                                               const ContainerCheckpointOptions& options) {
  uint64_t t0 = now_us();
  ContainerManager manager(paths);
  ContainerRecord record = manager.load(id);
  if (record.state != ContainerState::kRunning)
    throw ExitCodeError("\"" + to_string(record.state) +
                            "\" is not running, cannot checkpoint: container state improper",
                        125);
  if (record.config.auto_remove && !options.leave_running)
    throw ExitCodeError(
        "cannot checkpoint containers that have been started with '--rm' unless '--export' is "
        "used: invalid argument",
        125);

  std::string final_dir = checkpoint_dir(paths, id);
  std::string temp_dir = final_dir + ".tmp";
  fs::remove_all(temp_dir);
  nlohmann::json streams = stdio_streams(record.pid);
  ckpt::DumpOptions dump_options;
  dump_options.leave_running = options.leave_running;
  dump_options.tcp_established = options.tcp_established;
  dump_options.file_locks = options.file_locks;
  dump_options.freezer_cgroup = ContainerCgroup::existing(id).freezer_path();
  for (auto& [fd, stream] : streams.items())
    if (stream.at("kind") != "other") dump_options.external_files.insert(stream.at("link"));

  ContainerCheckpointResult result;
  result.id = id;
  try {
    fs::mkdir_p(temp_dir);
    nlohmann::json saved = {
        {"spec", nlohmann::json::parse(fs::read_file(manager.store().spec_path(id)))},
        {"network_status", record.network_status},
        {"stdio", streams},
        {"tty", record.config.tty}};
    std::string saved_text = saved.dump(2) + "\n";
    if (options.sink) {
      auto out = options.sink->create(kContainerImage, saved_text.size());
      out->write(saved_text.data(), saved_text.size());
      out->commit();
      dump_options.sink = options.sink;
    } else {
      fs::write_file_atomic(temp_dir + "/" + kContainerImage, saved_text, 0600);
    }
    result.stats = with_context("checkpointing container " + record.name,
                                [&] { return ckpt::dump(record.pid, temp_dir, dump_options); });
  } catch (...) {
    fs::remove_all(temp_dir);
    throw;
  }
  if (!options.sink) {
    fs::remove_all(final_dir);
    if (::rename(temp_dir.c_str(), final_dir.c_str()) < 0)
      throw_errno("rename " + temp_dir + " to " + final_dir);
  } else {
    fs::remove_all(temp_dir);
  }

  if (!options.leave_running) {
    // The monitor sees its init die, records the exit and releases network (keeping the IP
    // lease) and cgroup; the record then says why it ended.
    manager.wait(id);
    FileLock lock = manager.store().lock(id);
    ContainerRecord after = manager.store().load(id);
    after.checkpointed = true;
    after.checkpointed_ns = now_ns();
    after.restored = false;
    after.exit_code = 0;
    manager.store().save(after);
  }
  result.runtime_checkpoint_duration_us = now_us() - t0;
  return result;
}

ContainerRestoreResult restore_container(const StorePaths& paths, const std::string& id,
                                         const ContainerRestoreOptions& options) {
  uint64_t t0 = now_us();
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
    nlohmann::json saved = nlohmann::json::parse(fs::read_file(dir + "/" + kContainerImage));
    nlohmann::json spec = saved.at("spec");
    // The same network as at checkpoint time: same IP, MAC and host ports.
    if (!saved.at("network_status").is_null()) {
      NetworkStatus before = network_status_from_json(saved.at("network_status"));
      NetworkStatus status = NetworkManager(paths).setup(id, request_from_status(before));
      record.network_status = to_json(status);
      store.save(record);
      for (auto& ns : spec.at("linux").at("namespaces"))
        if (ns.at("type") == "network") ns["path"] = status.netns_path;
    }
    fs::write_file_atomic(store.spec_path(id), spec.dump(2) + "\n", 0600);
    fs::mkdir_p(paths.run_container_dir(id));
    fs::write_file_atomic(paths.run_container_dir(id) + "/" + kRestoreOptionsFile,
                          nlohmann::json{{"tcp_established", options.tcp_established},
                                         {"file_locks", options.file_locks}}
                              .dump());
  }
  MonitorStart started;
  try {
    started = start_monitor(paths, id, false, options.log_level, MonitorLaunch::kFork,
                            /*restore=*/true);
  } catch (...) {
    manager.release_resources(id);
    throw;
  }
  ContainerRestoreResult result;
  result.id = id;
  if (!started.restore_stats.empty()) {
    nlohmann::json stats = nlohmann::json::parse(started.restore_stats);
    result.stats.forking_time = stats.value("forking_time", uint64_t{0});
    result.stats.restore_time = stats.value("restore_time", uint64_t{0});
    result.stats.pages_restored = stats.value("pages_restored", uint64_t{0});
    result.stats.pages_compared = stats.value("pages_compared", uint64_t{0});
    result.stats.pages_skipped_cow = stats.value("pages_skipped_cow", uint64_t{0});
  }
  if (!options.keep) fs::remove_all(dir);
  result.runtime_restore_duration_us = now_us() - t0;
  return result;
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
    try {
      cgroup.add_process(::getpid());
      int flags = sandbox_clone_flags(spec) & ~(CLONE_NEWPID | CLONE_NEWNET);
      if (::unshare(flags) < 0) throw_errno("unshare the container's namespaces");
      if (::unshare(CLONE_NEWCGROUP) < 0) throw_errno("unshare CLONE_NEWCGROUP");
      prepare_sandbox(spec);
      {
        // The files the restore opens here (console, /dev/null, mapped files) belong to this
        // mount namespace's mounts: kept alive by the monitor, they stay attached, so that the
        // restored processes (in a copy of it) see their paths as before, and dump again.
        UniqueFd mount_ns = fs::open_or_throw("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
        send_fd(console_child.get(), mount_ns.get());
      }
      UniqueFd console_slave;
      if (terminal) {
        // A new console in the container's own devpts instance, like the dumped one.
        UniqueFd master(::open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC));
        if (!master) throw_errno("open /dev/ptmx");
        if (::unlockpt(master.get()) < 0) throw_errno("unlockpt");
        console_slave.reset(::ioctl(master.get(), TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC));
        if (!console_slave) throw_errno("ioctl TIOCGPTPEER");
        send_fd(console_child.get(), master.get());
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
      options.in_root_before_restore = [&spec] { mount_proc_of_new_pid_namespace(spec); };
      // The images are reached through the directory opened before pivot_root.
      std::string image_dir = "/proc/self/fd/" + std::to_string(images.get());
      ckpt::RestoreResult restored = ckpt::restore(image_dir, options);
      nlohmann::json stats = {{"forking_time", restored.stats.forking_time},
                              {"restore_time", restored.stats.restore_time},
                              {"pages_restored", restored.stats.pages_restored},
                              {"pages_compared", restored.stats.pages_compared},
                              {"pages_skipped_cow", restored.stats.pages_skipped_cow}};
      write_all_and_close(
          report_write,
          nlohmann::json{{"ok", true}, {"pid", restored.root_pid}, {"stats", stats}}.dump());
      ::_exit(0);
    } catch (const std::exception& e) {
      write_all_and_close(report_write,
                          nlohmann::json{{"ok", false}, {"message", e.what()}}.dump());
      ::_exit(1);
    }
  }
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
    *mount_namespace = receive_fd(console_parent.get());
    if (terminal) out.console_master = receive_fd(console_parent.get());
  } catch (...) {
    ::kill(out.pid, SIGKILL);
    throw;
  }
  return out;
}

}  // namespace cryo::engine
