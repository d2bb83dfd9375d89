#include "engine/monitor/monitor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>

#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/phase_trace.h"
#include "common/strings.h"
#include "common/subprocess.h"
#include "engine/checkpoint/container_checkpoint.h"
#include "engine/container/container.h"
#include "engine/container/manager.h"
#include "engine/runtime/cgroup.h"
#include "engine/runtime/runtime.h"

namespace cryo::engine {

namespace {

constexpr int kStatusFd = 3;
constexpr int kAttachFd = 4;

// Writes container output to ctr.log in the k8s-file format, one record per line; a line still
// open when its stream ends (or grows past the buffer) is written as a partial ("P") record.
class LogWriter {
 public:
  explicit LogWriter(const std::string& path)
      : fd_(fs::open_or_throw(path, O_WRONLY | O_CREAT | O_APPEND, 0600)) {}

  void add(const char* stream, std::string& pending, const char* data, size_t size) {
    pending.append(data, size);
    size_t start = 0;
    for (;;) {
      size_t nl = pending.find('\n', start);
      if (nl == std::string::npos) break;
      emit(stream, 'F', std::string_view(pending).substr(start, nl - start));
      start = nl + 1;
    }
    pending.erase(0, start);
    if (pending.size() > 16384) flush(stream, pending);
  }
  void flush(const char* stream, std::string& pending) {
    if (pending.empty()) return;
    emit(stream, 'P', pending);
    pending.clear();
  }

 private:
  void emit(const char* stream, char tag, std::string_view line) {
    std::string record = format_rfc3339_ns(now_ns());
    record += ' ';
    record += stream;
    record += ' ';
    record += tag;
    record += ' ';
    record += line;
    record += '\n';
    // A full disk must not kill the monitor: the container keeps running, the log loses lines.
    (void)!::write(fd_.get(), record.data(), record.size());
  }
  UniqueFd fd_;
};

// Tells the starting CLI how the start went, once: the fd number may be reused afterwards.
void report_status(const nlohmann::json& status) {
  static bool reported = false;
  if (reported) return;
  reported = true;
  std::string text = status.dump() + "\n";
  (void)!::write(kStatusFd, text.data(), text.size());
  ::close(kStatusFd);
}

void set_nonblocking(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

class Monitor {
 public:
  Monitor(StorePaths paths, std::string id, bool attached, bool restore = false)
      : manager_(paths),
        store_(paths),
        paths_(paths),
        id_(std::move(id)),
        attached_(attached),
        restore_(restore) {}

  int run() {
    phase_mark("monitor: begins");
    ContainerRecord record = store_.load(id_);
    nlohmann::json spec = nlohmann::json::parse(fs::read_file(store_.spec_path(id_)));
    tty_ = record.config.tty;
    interactive_ = record.config.interactive;
    auto_remove_ = record.config.auto_remove;
    log_ = std::make_unique<LogWriter>(store_.log_path(id_));

    if (::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) throw_errno("PR_SET_CHILD_SUBREAPER");
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    ::sigprocmask(SIG_BLOCK, &mask, nullptr);
    signal_fd_.reset(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!signal_fd_) throw_errno("signalfd");
    ::signal(SIGPIPE, SIG_IGN);
    ::signal(SIGHUP, SIG_IGN);

    SpawnedProcess init;
    nlohmann::json restore_stats;
    try {
      cgroup_ = std::make_unique<ContainerCgroup>(
          ContainerCgroup::create(container_cgroup_name(paths_, id_),
                                  {record.config.memory_limit, record.config.pids_limit}));
      phase_mark("monitor: cgroup created");
      // container-cr: a restore makes the time namespace with the dumped clocks itself.
      if (!restore_) enter_new_time_namespace_for_children();
      ProcessStdio stdio;
      UniqueFd child_stdin, child_stdout, child_stderr;
      if (!tty_) {
        int p[2];
        if (::pipe2(p, O_CLOEXEC) < 0) throw_errno("pipe2");
        stdout_.reset(p[0]);
        child_stdout.reset(p[1]);
        if (::pipe2(p, O_CLOEXEC) < 0) throw_errno("pipe2");
        stderr_.reset(p[0]);
        child_stderr.reset(p[1]);
        if (interactive_) {
          if (::pipe2(p, O_CLOEXEC) < 0) throw_errno("pipe2");
          child_stdin.reset(p[0]);
          stdin_.reset(p[1]);
        }
        stdio = {child_stdin.get(), child_stdout.get(), child_stderr.get()};
      }
      if (restore_)  // container-cr
        init = restore_container_init(paths_, id_, spec, *cgroup_, stdio, tty_, &restore_stats,
                                      &restored_mount_namespace_);
      else
        init = spawn_container_init(spec, *cgroup_, stdio);
      if (tty_) {
        stdout_ = std::move(init.console_master);
        if (interactive_) stdin_.reset(::dup(stdout_.get()));
      }
    } catch (const ExitCodeError& e) {
      cleanup_after_failed_start();
      report_status({{"ok", false}, {"code", e.exit_code()}, {"message", e.what()}});
      return 0;
    } catch (const std::exception& e) {
      cleanup_after_failed_start();
      report_status({{"ok", false}, {"code", 125}, {"message", e.what()}});
      return 0;
    }
    init_pid_ = init.pid;

    {
      FileLock lock = store_.lock(id_);
      record = store_.load(id_);
      record.state = ContainerState::kRunning;
      record.pid = init_pid_;
      record.monitor_pid = ::getpid();
      record.monitor_start_time = process_start_time(::getpid());
      record.started_ns = now_ns();
      record.finished_ns = 0;
      record.exit_code = 0;
      record.network_kept = false;
      if (restore_) {  // container-cr
        record.checkpointed = false;
        record.restored = true;
        record.restored_ns = record.started_ns;
      }
      // Live state (the monitor's and init's PIDs): a power loss ends them whatever it says.
      store_.save(record, false);
    }
    ::unlink(store_.exit_file_path(id_).c_str());
    std::string retired_checkpoint;
    if (restore_) {  // container-cr
      try {
        retired_checkpoint = retire_restored_checkpoint(paths_, id_);
      } catch (const std::exception& e) {
        LOG_WARN << "container " << id_ << ": " << e.what();
      }
    }
    report_status({{"ok", true}, {"pid", init_pid_}, {"restore_stats", restore_stats}});
    phase_mark("monitor: record saved, status reported");
    if (!retired_checkpoint.empty()) {
      try {
        fs::remove_all(retired_checkpoint);
      } catch (const std::exception& e) {
        LOG_WARN << "container " << id_ << ": " << e.what();
      }
      phase_mark("monitor: restored checkpoint removed");
    }

    if (stdout_) set_nonblocking(stdout_.get());
    if (stderr_) set_nonblocking(stderr_.get());
    if (attached_) set_nonblocking(kAttachFd);
    int exit_code = event_loop();
    finish(exit_code);
    return 0;
  }

 private:
  void cleanup_after_failed_start() {
    cgroup_.reset();
    try {
      manager_.release_resources(id_);
    } catch (const std::exception& e) {
      LOG_ERROR << "cleanup of container " << id_ << ": " << e.what();
    }
  }

  // Output of one stream: to the log and to the attached client. Returns false at end of stream.
  bool pump(UniqueFd& fd, const char* stream, std::string& pending, AttachFrame frame) {
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return true;
      if (n <= 0) {  // EOF, or EIO from a pty master whose slave is gone
        log_->flush(stream, pending);
        fd.reset();
        return false;
      }
      log_->add(stream, pending, buf, static_cast<size_t>(n));
      if (attached_) {
        try {
          write_attach_frame(kAttachFd, frame, buf, static_cast<size_t>(n));
        } catch (const std::exception&) {
          detach();
        }
      }
    }
  }

  void detach() {
    if (!attached_) return;
    attached_ = false;
    ::close(kAttachFd);
  }

  void handle_client_input() {
    char buf[65536];
    ssize_t n = ::read(kAttachFd, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
    if (n <= 0) {
      detach();
      return;
    }
    client_buffer_.append(buf, static_cast<size_t>(n));
    while (client_buffer_.size() >= 5) {
      uint32_t size;
      std::memcpy(&size, client_buffer_.data() + 1, 4);
      if (client_buffer_.size() < 5 + size) break;
      auto type = static_cast<AttachFrame>(client_buffer_[0]);
      std::string payload = client_buffer_.substr(5, size);
      client_buffer_.erase(0, 5 + size);
      if (type == AttachFrame::kStdin && stdin_) {
        try {
          fs::write_all(stdin_.get(), payload.data(), payload.size(), "container stdin");
        } catch (const std::exception&) {
          stdin_.reset();
        }
      } else if (type == AttachFrame::kStdinClose) {
        if (tty_ && stdin_) {
          // EOF on a terminal is the VEOF character at the start of a line.
          char eof = 4;
          (void)!::write(stdin_.get(), &eof, 1);
        }
        stdin_.reset();
      } else if (type == AttachFrame::kResize && tty_ && stdout_) {
        auto parts = split(payload, ' ');
        if (parts.size() == 2) {
          struct winsize ws = {};
          ws.ws_row = static_cast<unsigned short>(std::stoi(parts[0]));
          ws.ws_col = static_cast<unsigned short>(std::stoi(parts[1]));
          ::ioctl(stdout_.get(), TIOCSWINSZ, &ws);
        }
      }
    }
  }

  // Returns the init's exit code once it has exited and its output is drained.
  int event_loop() {
    int exit_code = -1;
    std::string out_pending, err_pending;
    for (;;) {
      struct pollfd fds[4];
      int n = 0;
      fds[n++] = {signal_fd_.get(), POLLIN, 0};
      int out_index = -1, err_index = -1, attach_index = -1;
      if (stdout_) {
        out_index = n;
        fds[n++] = {stdout_.get(), POLLIN, 0};
      }
      if (stderr_) {
        err_index = n;
        fds[n++] = {stderr_.get(), POLLIN, 0};
      }
      if (attached_ && exit_code < 0) {
        attach_index = n;
        fds[n++] = {kAttachFd, POLLIN, 0};
      }
      if (exit_code >= 0 && !stdout_ && !stderr_) return exit_code;
      // Once the init is gone, remaining output is drained but never waited for long.
      int timeout = exit_code >= 0 ? 1000 : -1;
      int ready = ::poll(fds, static_cast<nfds_t>(n), timeout);
      if (ready < 0) {
        if (errno == EINTR) continue;
        throw_errno("poll");
      }
      if (ready == 0) {
        log_->flush("stdout", out_pending);
        log_->flush("stderr", err_pending);
        return exit_code;
      }
      if (out_index >= 0 && fds[out_index].revents)
        pump(stdout_, "stdout", out_pending, AttachFrame::kStdout);
      if (err_index >= 0 && fds[err_index].revents)
        pump(stderr_, "stderr", err_pending, AttachFrame::kStderr);
      if (attach_index >= 0 && fds[attach_index].revents) handle_client_input();
      if (fds[0].revents) {
        struct signalfd_siginfo info;
        while (::read(signal_fd_.get(), &info, sizeof info) > 0) {
        }
        for (;;) {
          int status;
          pid_t pid = ::waitpid(-1, &status, WNOHANG);
          if (pid <= 0) break;
          if (pid == init_pid_)
            exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
      }
    }
  }

  void finish(int exit_code) {
    stdin_.reset();
    stdout_.reset();
    stderr_.reset();
    int64_t finished = now_ns();
    try {
      // After an in-place checkpoint the restore reuses the cgroup (record_exit thaws it).
      std::optional<ContainerRecord> record = store_.try_load(id_);
      if (record && record->checkpointed && record->network_kept)
        cgroup_->release();
      else
        cgroup_->remove();
    } catch (const std::exception& e) {
      LOG_ERROR << "container " << id_ << ": " << e.what();
    }
    cgroup_.reset();
    try {
      manager_.record_exit(id_, exit_code, finished);
      if (auto_remove_) manager_.remove_stopped(id_);
    } catch (const std::exception& e) {
      LOG_ERROR << "recording the exit of container " << id_ << ": " << e.what();
    }
    if (attached_) {
      std::string code = std::to_string(exit_code);
      try {
        write_attach_frame(kAttachFd, AttachFrame::kExit, code.data(), code.size());
      } catch (const std::exception&) {
      }
      detach();
    }
  }

  ContainerManager manager_;
  ContainerStore store_;
  StorePaths paths_;
  std::string id_;
  bool attached_;
  bool restore_;
  UniqueFd restored_mount_namespace_;  // container-cr: see restore_container_init
  bool tty_ = false, interactive_ = false, auto_remove_ = false;
  std::unique_ptr<LogWriter> log_;
  std::unique_ptr<ContainerCgroup> cgroup_;
  UniqueFd signal_fd_, stdin_, stdout_, stderr_;
  std::string client_buffer_;
  pid_t init_pid_ = -1;
};

int run_monitor(const StorePaths& paths, const std::string& id, bool attach, bool restore) {
  // Recognisable in ps, and its working directory tells which container (and store) it serves.
  ::prctl(PR_SET_NAME, "cryo-monitor", 0, 0, 0);
  if (::chdir(paths.run_container_dir(id).c_str()) < 0) {
    LOG_WARN << "chdir " << paths.run_container_dir(id) << ": " << std::strerror(errno);
  }
  // The container must not inherit the channels to the CLI.
  ::fcntl(kStatusFd, F_SETFD, FD_CLOEXEC);
  ::fcntl(kAttachFd, F_SETFD, FD_CLOEXEC);
  try {
    Monitor monitor(paths, id, attach, restore);
    return monitor.run();
  } catch (const std::exception& e) {
    LOG_ERROR << "monitor of container " << id << ": " << e.what();
    report_status({{"ok", false}, {"code", 125}, {"message", e.what()}});
    return 1;
  }
}

}  // namespace

void write_attach_frame(int fd, AttachFrame type, const void* data, size_t size) {
  char header[5];
  header[0] = static_cast<char>(type);
  uint32_t size32 = static_cast<uint32_t>(size);
  std::memcpy(header + 1, &size32, 4);
  std::string frame(header, 5);
  frame.append(static_cast<const char*>(data), size);
  size_t done = 0;
  while (done < frame.size()) {
    ssize_t n = ::send(fd, frame.data() + done, frame.size() - done, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        struct pollfd p = {fd, POLLOUT, 0};
        ::poll(&p, 1, 1000);
        continue;
      }
      throw_errno("send attach frame");
    }
    done += static_cast<size_t>(n);
  }
}

MonitorStart start_monitor(const StorePaths& paths, const std::string& id, bool attach,
                           const std::string& log_level, MonitorLaunch launch, bool restore) {
  int status_pipe[2];
  if (::pipe2(status_pipe, O_CLOEXEC) < 0) throw_errno("pipe2");
  UniqueFd status_read(status_pipe[0]), status_write(status_pipe[1]);
  UniqueFd attach_client, attach_monitor;
  if (attach) {
    int sp[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) throw_errno("socketpair");
    attach_client.reset(sp[0]);
    attach_monitor.reset(sp[1]);
  }
  std::vector<std::string> args = {"cryo",        kMonitorCommand, "--root", paths.root,
                                   "--runroot",   paths.runroot,   "--id",   id,
                                   "--log-level", log_level};
  if (attach) args.push_back("--attach");
  if (restore) args.push_back("--restore");
  std::string monitor_log = paths.run_container_dir(id) + "/monitor.log";

  pid_t child = -1;
  if (launch == MonitorLaunch::kExec) {
    // posix_spawn (a vfork: no copy of this process's page tables, and none of the
    // copy-on-write faults a fork costs both processes afterwards) of `cryo __monitor
    // --daemonize`, which forks once more while still small and exits: the monitor is nobody's
    // child but init's, outside this session. Its stdio and the two channels are set up here.
    args.push_back("--daemonize");
    static_assert(kStatusFd == 3 && kAttachFd == 4);
    UniqueFd null_fd = fs::open_or_throw("/dev/null", O_RDWR | O_CLOEXEC);
    UniqueFd log_fd(::open(monitor_log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
    child = spawn_self_in_new_session(
        args,
        {null_fd.get(), null_fd.get(), log_fd ? log_fd.get() : null_fd.get(), status_write.get(),
         attach ? attach_monitor.get() : null_fd.get()},
        "spawn the container monitor");
  } else {
    child = ::fork();
    if (child < 0) throw_errno("fork monitor");
    if (child == 0) {
      // Daemonize: a new session, and a grandchild that is nobody's child but init's.
      ::setsid();
      pid_t grandchild = ::fork();
      if (grandchild != 0) ::_exit(grandchild < 0 ? 1 : 0);
      int status_fd = ::fcntl(status_write.get(), F_DUPFD_CLOEXEC, 10);
      int attach_fd = attach ? ::fcntl(attach_monitor.get(), F_DUPFD_CLOEXEC, 10) : -1;
      int null_fd = ::open("/dev/null", O_RDWR);
      int log_fd = ::open(monitor_log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      ::dup2(null_fd, 0);
      ::dup2(null_fd, 1);
      ::dup2(log_fd >= 0 ? log_fd : null_fd, 2);
      ::dup2(status_fd, kStatusFd);
      ::dup2(attach_fd >= 0 ? attach_fd : null_fd, kAttachFd);
      ::syscall(SYS_close_range, kAttachFd + 1, ~0U, 0);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      for (int sig = 1; sig < NSIG; ++sig)
        if (sig != SIGKILL && sig != SIGSTOP) ::signal(sig, SIG_DFL);
      ::_exit(run_monitor(paths, id, attach, restore));
    }
  }
  status_write.reset();
  attach_monitor.reset();
  int wstatus;
  while (::waitpid(child, &wstatus, 0) < 0 && errno == EINTR) {
  }
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(status_read.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  if (text.empty())
    throw Error("container monitor exited without reporting (see " + monitor_log + ")");
  nlohmann::json status = nlohmann::json::parse(text);
  if (!status.value("ok", false))
    throw ExitCodeError(status.value("message", "container start failed"),
                        status.value("code", 125));
  MonitorStart out;
  out.container_pid = status.at("pid").get<pid_t>();
  out.attach = std::move(attach_client);
  if (status.contains("restore_stats") && !status.at("restore_stats").is_null())
    out.restore_stats = status.at("restore_stats").dump();
  return out;
}

int monitor_main(const std::vector<std::string>& args) {
  StorePaths paths;
  std::string id, level = "warn";
  bool attach = false, restore = false, daemonize = false;
  for (size_t i = 0; i < args.size(); ++i) {
    auto next = [&]() -> std::string {
      if (i + 1 >= args.size()) throw Error("__monitor: " + args[i] + " needs a value");
      return args[++i];
    };
    if (args[i] == "--root")
      paths.root = next();
    else if (args[i] == "--runroot")
      paths.runroot = next();
    else if (args[i] == "--id")
      id = next();
    else if (args[i] == "--log-level")
      level = next();
    else if (args[i] == "--attach")
      attach = true;
    else if (args[i] == "--restore")
      restore = true;
    else if (args[i] == "--daemonize")
      daemonize = true;
    else
      throw Error("__monitor: unknown argument " + args[i]);
  }
  if (daemonize) {
    // Spawned by start_monitor in a session of its own: the monitor is a fork of this fresh
    // (small) process, and the spawned one exits at once, so init adopts the monitor.
    pid_t monitor = ::fork();
    if (monitor < 0) {
      std::string msg =
          nlohmann::json{{"ok", false},
                         {"code", 125},
                         {"message", std::string("fork monitor: ") + std::strerror(errno)}}
              .dump() +
          "\n";
      (void)!::write(kStatusFd, msg.data(), msg.size());
      return 125;
    }
    if (monitor > 0) ::_exit(0);
  }
  log::Level parsed;
  if (log::parse_level(level, &parsed)) log::set_level(parsed);
  return run_monitor(paths, id, attach, restore);
}

}  // namespace cryo::engine
