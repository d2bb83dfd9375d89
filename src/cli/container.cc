// Container lifecycle commands: run, create, start, stop, restart, kill, rm, ps, logs, inspect,
// exec, port, wait.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cstring>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "cli/cli.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/strings.h"
#include "engine/checkpoint/container_checkpoint.h"
#include "engine/container/manager.h"
#include "engine/monitor/monitor.h"
#include "engine/network/network.h"

namespace cryo::cli {

namespace {

using engine::AttachFrame;
using engine::ContainerManager;
using engine::ContainerRecord;
using engine::ContainerState;

engine::StorePaths store_paths(const GlobalOptions& g) {
  return {g.root, g.runroot};
}

using engine::parse_signal;

void write_out(int fd, const std::string& data) {
  fs::write_all(fd, data.data(), data.size(), fd == 1 ? "stdout" : "stderr");
}

// Go's units.HumanDuration, as Podman prints ages.
std::string human_duration(int64_t ns) {
  int64_t s = ns / 1000000000;
  if (s < 1) return "Less than a second";
  if (s == 1) return "1 second";
  if (s < 60) return std::to_string(s) + " seconds";
  int64_t m = s / 60;
  if (m == 1) return "About a minute";
  if (m < 60) return std::to_string(m) + " minutes";
  int64_t h = m / 60;
  if (h == 1) return "About an hour";
  if (h < 48) return std::to_string(h) + " hours";
  if (h < 24 * 7 * 2) return std::to_string(h / 24) + " days";
  if (h < 24 * 30 * 2) return std::to_string(h / 24 / 7) + " weeks";
  if (h < 24 * 365 * 2) return std::to_string(h / 24 / 30) + " months";
  return std::to_string(h / 24 / 365) + " years";
}

std::string status_text(const ContainerRecord& r) {
  int64_t now = engine::now_ns();
  switch (r.state) {
    case ContainerState::kRunning:
      return "Up " + human_duration(now - r.started_ns);
    case ContainerState::kPaused:
      return "Paused";
    case ContainerState::kCreated:
      return "Created";
    default:
      return "Exited (" + std::to_string(r.exit_code) + ") " + human_duration(now - r.finished_ns) +
             " ago";
  }
}

std::vector<engine::PublishedPort> actual_ports(const ContainerRecord& r) {
  if (!r.network_status.is_null()) {
    std::vector<engine::PublishedPort> out;
    for (const auto& p : engine::network_status_from_json(r.network_status).ports)
      out.push_back({p.host_ip, p.host_port, p.container_port, p.protocol});
    return out;
  }
  return r.config.ports;
}

std::string ports_text(const ContainerRecord& r) {
  std::vector<std::string> parts;
  for (const auto& p : actual_ports(r))
    parts.push_back((p.host_ip.empty() ? "0.0.0.0" : p.host_ip) + ":" +
                    std::to_string(p.host_port) + "->" + std::to_string(p.container_port) + "/" +
                    p.protocol);
  return join(parts, ", ");
}

std::string quote_command(const std::vector<std::string>& args) {
  return join(args, " ");
}

nlohmann::json inspect_json(const ContainerRecord& r, const std::string& spec_path) {
  nlohmann::json spec = nlohmann::json::object();
  if (auto text = fs::read_file_if_exists(spec_path)) spec = nlohmann::json::parse(*text);
  auto cmd = r.full_command();
  nlohmann::json port_map = nlohmann::json::object();
  nlohmann::json port_bindings = nlohmann::json::object();
  for (const auto& p : actual_ports(r)) {
    std::string key = std::to_string(p.container_port) + "/" + p.protocol;
    nlohmann::json binding = {{"HostIp", p.host_ip}, {"HostPort", std::to_string(p.host_port)}};
    port_map[key].push_back(binding);
    port_bindings[key].push_back(binding);
  }
  nlohmann::json mounts = nlohmann::json::array();
  nlohmann::json binds = nlohmann::json::array();
  for (const auto& m : r.config.mounts) {
    mounts.push_back({{"Type", m.volume_name.empty() ? "bind" : "volume"},
                      {"Name", m.volume_name},
                      {"Source", m.source},
                      {"Destination", m.destination},
                      {"RW", !m.read_only}});
    binds.push_back((m.volume_name.empty() ? m.source : m.volume_name) + ":" + m.destination +
                    (m.read_only ? ":ro" : ":rw"));
  }
  nlohmann::json net = {{"IPAddress", ""},  {"MacAddress", ""},  {"Gateway", ""},
                        {"IPPrefixLen", 0}, {"Ports", port_map}, {"SandboxKey", ""}};
  if (!r.network_status.is_null()) {
    auto status = engine::network_status_from_json(r.network_status);
    net["IPAddress"] = status.ip;
    net["MacAddress"] = status.mac;
    net["Gateway"] = status.gateway;
    net["IPPrefixLen"] = status.prefix_length;
    net["SandboxKey"] = status.netns_path;
  }
  auto time_or_zero = [](int64_t ns) {
    return ns == 0 ? std::string("0001-01-01T00:00:00Z") : engine::format_rfc3339_ns(ns);
  };
  bool running = r.state == ContainerState::kRunning || r.state == ContainerState::kPaused;
  return {
      {"Id", r.id},
      {"Created", engine::format_rfc3339_ns(r.created_ns)},
      {"Path", cmd.empty() ? "" : cmd[0]},
      {"Args", cmd.empty() ? std::vector<std::string>{}
                           : std::vector<std::string>(cmd.begin() + 1, cmd.end())},
      {"State",
       {{"OciVersion", spec.value("ociVersion", "")},
        {"Status", engine::to_string(r.state)},
        {"Running", r.state == ContainerState::kRunning},
        {"Paused", r.state == ContainerState::kPaused},
        {"Restarting", false},
        {"OOMKilled", r.oom_killed},
        {"Dead", false},
        {"Pid", running ? r.pid : 0},
        {"ConmonPid", running ? r.monitor_pid : 0},
        {"ExitCode", r.exit_code},
        {"Error", ""},
        {"StartedAt", time_or_zero(r.started_ns)},
        {"FinishedAt", time_or_zero(r.finished_ns)},
        {"Checkpointed", r.checkpointed},
        {"CheckpointedAt", time_or_zero(r.checkpointed_ns)},
        {"Restored", r.restored},
        {"RestoredAt", time_or_zero(r.restored_ns)}}},
      {"Image", r.image_id},
      {"ImageName", r.image_name},
      {"Name", r.name},
      {"RestartCount", 0},
      {"Driver", "overlay"},
      {"MountLabel", ""},
      {"ProcessLabel", ""},
      {"Mounts", mounts},
      {"Dependencies", nlohmann::json::array()},
      {"NetworkSettings", net},
      {"Config",
       {{"Hostname", r.config.hostname},
        {"User", r.config.user},
        {"Env", r.config.env},
        {"Cmd", r.config.cmd},
        {"Entrypoint", join(r.config.entrypoint, " ")},
        {"Image", r.image_name},
        {"WorkingDir", r.config.working_dir},
        {"Labels", r.config.labels},
        {"Tty", r.config.tty},
        {"OpenStdin", r.config.interactive},
        {"StopSignal", r.config.stop_signal},
        {"StopTimeout", r.config.stop_timeout},
        {"CreateCommand", nlohmann::json::array()}}},
      {"HostConfig",
       {{"Binds", binds},
        {"NetworkMode", r.config.network_mode},
        {"PortBindings", port_bindings},
        {"AutoRemove", r.config.auto_remove},
        {"Memory", r.config.memory_limit},
        {"PidsLimit", r.config.pids_limit}}},
  };
}

// Renders the subset of Go templates people use with --format: {{.A.B}}, {{json .A}},
// {{.A}} where A names a field of `data`; text around them is kept; \t and \n unescaped.
std::string render_template(const std::string& format, const nlohmann::json& data) {
  std::string out;
  size_t pos = 0;
  while (pos < format.size()) {
    size_t open = format.find("{{", pos);
    if (open == std::string::npos) {
      out += format.substr(pos);
      break;
    }
    out += format.substr(pos, open - pos);
    size_t close = format.find("}}", open);
    if (close == std::string::npos) throw ExitCodeError("template: unclosed action", 125);
    std::string expr(trim(std::string_view(format).substr(open + 2, close - open - 2)));
    bool as_json = false;
    if (starts_with(expr, "json ")) {
      as_json = true;
      expr = std::string(trim(std::string_view(expr).substr(5)));
    }
    if (expr.empty() || expr[0] != '.')
      throw ExitCodeError("template: unsupported action {{" + expr + "}}", 125);
    const nlohmann::json* node = &data;
    if (expr != ".") {
      for (const auto& key : split(expr.substr(1), '.')) {
        if (!node->is_object() || !node->contains(key))
          throw ExitCodeError("template: can't evaluate field " + key, 125);
        node = &(*node)[key];
      }
    }
    if (as_json)
      out += node->dump();
    else if (node->is_string())
      out += node->get<std::string>();
    else if (node->is_array()) {
      std::vector<std::string> items;
      for (const auto& item : *node)
        items.push_back(item.is_string() ? item.get<std::string>() : item.dump());
      out += "[" + join(items, " ") + "]";
    } else if (node->is_null())
      out += "<no value>";
    else
      out += node->dump();
    pos = close + 2;
  }
  std::string unescaped;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == '\\' && i + 1 < out.size() && (out[i + 1] == 't' || out[i + 1] == 'n')) {
      unescaped += out[i + 1] == 't' ? '\t' : '\n';
      ++i;
    } else {
      unescaped += out[i];
    }
  }
  return unescaped;
}

// Puts the terminal in raw mode for an interactive session and restores it afterwards.
class RawTerminal {
 public:
  explicit RawTerminal(int fd) : fd_(fd) {
    if (::tcgetattr(fd_, &saved_) < 0) return;
    struct termios raw = saved_;
    ::cfmakeraw(&raw);
    if (::tcsetattr(fd_, TCSANOW, &raw) == 0) active_ = true;
  }
  ~RawTerminal() {
    if (active_) ::tcsetattr(fd_, TCSANOW, &saved_);
  }

 private:
  int fd_;
  struct termios saved_ = {};
  bool active_ = false;
};

std::string window_size_text(int fd) {
  struct winsize ws = {};
  if (::ioctl(fd, TIOCGWINSZ, &ws) < 0 || ws.ws_row == 0) return "";
  return std::to_string(ws.ws_row) + " " + std::to_string(ws.ws_col);
}

// Blocks SIGINT/SIGTERM/SIGHUP/SIGQUIT into a signalfd for forwarding to the container.
UniqueFd forwarded_signals_fd() {
  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2}) sigaddset(&mask, sig);
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  UniqueFd fd(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!fd) throw_errno("signalfd");
  return fd;
}

// Proxies the terminal to the monitor's attach connection until the container exits; returns the
// exit code (or -1 when the connection ended without one).
int attach_session(int sock, bool tty, bool interactive, const std::function<void(int)>& forward) {
  std::optional<RawTerminal> raw;
  bool stdin_tty = ::isatty(0);
  if (tty && interactive && stdin_tty) raw.emplace(0);
  if (tty && stdin_tty) {
    std::string size = window_size_text(0);
    if (!size.empty())
      engine::write_attach_frame(sock, AttachFrame::kResize, size.data(), size.size());
  }
  UniqueFd signals;
  if (!tty) signals = forwarded_signals_fd();
  bool stdin_open = interactive;
  std::string buffer;
  char buf[65536];
  for (;;) {
    struct pollfd fds[3] = {{sock, POLLIN, 0}, {-1, POLLIN, 0}, {-1, POLLIN, 0}};
    if (stdin_open) fds[1].fd = 0;
    if (signals) fds[2].fd = signals.get();
    if (::poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      throw_errno("poll");
    }
    if (fds[2].revents) {
      struct signalfd_siginfo info;
      while (::read(signals.get(), &info, sizeof info) == sizeof info)
        forward(static_cast<int>(info.ssi_signo));
    }
    if (fds[1].revents) {
      ssize_t n = ::read(0, buf, sizeof buf);
      if (n > 0) {
        engine::write_attach_frame(sock, AttachFrame::kStdin, buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        stdin_open = false;
        engine::write_attach_frame(sock, AttachFrame::kStdinClose, nullptr, 0);
      }
    }
    if (fds[0].revents) {
      ssize_t n = ::read(sock, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return -1;
      buffer.append(buf, static_cast<size_t>(n));
      while (buffer.size() >= 5) {
        uint32_t size;
        std::memcpy(&size, buffer.data() + 1, 4);
        if (buffer.size() < 5 + size) break;
        auto type = static_cast<AttachFrame>(buffer[0]);
        std::string payload = buffer.substr(5, size);
        buffer.erase(0, 5 + size);
        if (type == AttachFrame::kStdout)
          write_out(1, payload);
        else if (type == AttachFrame::kStderr)
          write_out(2, payload);
        else if (type == AttachFrame::kExit)
          return std::atoi(payload.c_str());
      }
    }
  }
}

// Runs the attach session of a started container and returns its exit code.
int attach_and_wait(ContainerManager& manager, const std::string& id, int sock, bool tty,
                    bool interactive) {
  int code = attach_session(sock, tty, interactive, [&](int sig) {
    try {
      manager.kill(id, sig);
    } catch (const std::exception&) {
      // Already gone.
    }
  });
  if (code >= 0) return code;
  return manager.wait(id);
}

std::vector<std::string> read_env_file(const std::string& path) {
  std::vector<std::string> out;
  std::string text = fs::read_file(path);
  for (const auto& line : split(text, '\n')) {
    std::string t(trim(line));
    if (t.empty() || t[0] == '#') continue;
    out.push_back(t);
  }
  return out;
}

struct CreateOptions {
  engine::CreateRequest request;
  bool detach = false;
  std::string memory;
  std::vector<std::string> env_files;
  std::vector<std::string> labels;
  std::string entrypoint;
  bool entrypoint_set = false;
  int stop_timeout = -1;
  std::string stop_signal;
  std::vector<std::string> never_filled;
};

void add_create_options(CLI::App* cmd, CreateOptions& o, bool is_run) {
  cmd->prefix_command();
  // Podman's -h is --hostname here.
  cmd->set_help_flag("--help", "Print this help message and exit");
  auto& r = o.request;
  if (is_run) {
    cmd->add_flag("-d,--detach", o.detach, "Run container in background and print container ID");
    cmd->add_flag("--rm", r.auto_remove, "Remove container (and pod if created) after exit");
  } else {
    cmd->add_flag("--rm", r.auto_remove, "Remove container after exit");
  }
  cmd->add_flag("-t,--tty", r.tty, "Allocate a pseudo-TTY for container");
  cmd->add_flag("-i,--interactive", r.interactive, "Keep STDIN open even if not attached");
  cmd->add_option("--name", r.name, "Assign a name to the container");
  cmd->add_option("-p,--publish", r.publish, "Publish a container's port to the host")
      ->allow_extra_args(false);
  cmd->add_option("-e,--env", r.env, "Set environment variables in container")
      ->allow_extra_args(false);
  cmd->add_option("--env-file", o.env_files, "Read in a file of environment variables")
      ->allow_extra_args(false);
  cmd->add_option("-v,--volume", r.volumes, "Bind mount a volume into the container")
      ->allow_extra_args(false);
  cmd->add_option("-w,--workdir", r.workdir, "Working directory inside the container");
  cmd->add_option("-u,--user", r.user, "Username or UID (format: <name|uid>[:<group|gid>])");
  cmd->add_option("-h,--hostname", r.hostname, "Set container hostname");
  cmd->add_option("--ip", r.ip, "Specify a static IPv4 address for the container");
  cmd->add_option("--mac-address", r.mac, "Container MAC address");
  cmd->add_option("-m,--memory", o.memory, "Memory limit (format: <number>[<unit>])");
  cmd->add_option("--pids-limit", r.pids_limit, "Tune container pids limit");
  cmd->add_option("--network,--net", r.network, "Connect a container to a network");
  cmd->add_option("--entrypoint", o.entrypoint, "Overwrite the default ENTRYPOINT of the image")
      ->each([&](const std::string&) { o.entrypoint_set = true; });
  cmd->add_option("-l,--label", o.labels, "Set metadata on container")->allow_extra_args(false);
  cmd->add_option("--stop-timeout", o.stop_timeout, "Timeout (in seconds) to stop a container");
  cmd->add_option("--stop-signal", o.stop_signal, "Signal to stop a container (default SIGTERM)");
  // Never takes a value: it only makes CLI11 keep a `--` (the end of the options) in remaining()
  // instead of handing the rest of the line back to the parent command.
  cmd->add_option("IMAGE", o.never_filled, "IMAGE [COMMAND [ARG...]]")
      ->check(CLI::Validator([](std::string&) { return std::string("taken by remaining()"); }, "",
                             "image"));
  cmd->validate_positionals();
}

engine::CreateRequest finish_create_request(CLI::App* cmd, CreateOptions& o) {
  engine::CreateRequest r = o.request;
  std::vector<std::string> rest = cmd->remaining();
  // `--` ends the options: `run [OPTIONS] -- IMAGE CMD...` and `run [OPTIONS] IMAGE -- CMD...`.
  bool options_ended = !rest.empty() && rest[0] == "--";
  if (options_ended) rest.erase(rest.begin());
  if (rest.empty()) throw ExitCodeError("requires at least 1 arg(s), only received 0", 125);
  if (!options_ended && rest[0].size() > 1 && rest[0][0] == '-')
    throw ExitCodeError("unknown flag: " + rest[0], 125);
  r.image = rest[0];
  auto command_start = rest.begin() + 1;
  if (command_start != rest.end() && *command_start == "--") ++command_start;
  r.command.assign(command_start, rest.end());
  if (!o.memory.empty()) r.memory_limit = engine::parse_memory_size(o.memory);
  if (o.entrypoint_set) r.entrypoint = o.entrypoint;
  if (o.stop_timeout >= 0) r.stop_timeout = static_cast<unsigned>(o.stop_timeout);
  if (!o.stop_signal.empty()) r.stop_signal = parse_signal(o.stop_signal);
  std::vector<std::string> env;
  for (const auto& f : o.env_files)
    for (auto& e : read_env_file(f)) env.push_back(e);
  env.insert(env.end(), r.env.begin(), r.env.end());
  r.env = env;
  for (const auto& l : o.labels) {
    auto eq = l.find('=');
    r.labels[l.substr(0, eq)] = eq == std::string::npos ? "" : l.substr(eq + 1);
  }
  return r;
}

template <typename Setup>
void add_both(CLI::App& app, CLI::App& container, const std::string& name,
              const std::string& description, Setup setup,
              const std::vector<std::string>& container_aliases = {}) {
  CLI::App* top = app.add_subcommand(name, description);
  setup(top);
  CLI::App* sub = container.add_subcommand(name, description);
  for (const auto& alias : container_aliases) sub->alias(alias);
  setup(sub);
}

int run_command(GlobalOptions& g, CLI::App* cmd, CreateOptions& o) {
  ContainerManager manager(store_paths(g));
  engine::CreateRequest request = finish_create_request(cmd, o);
  ContainerRecord record = manager.create(request);
  engine::MonitorStart started;
  try {
    started = manager.start(record.id, !o.detach, g.log_level);
  } catch (...) {
    // A run that could not start leaves nothing behind.
    try {
      manager.remove_stopped(record.id);
    } catch (const std::exception&) {
    }
    throw;
  }
  if (o.detach) {
    std::cout << record.id << std::endl;
    return 0;
  }
  return attach_and_wait(manager, record.id, started.attach.get(), request.tty,
                         request.interactive);
}

// Exec of a process with a terminal: the pty master is proxied to our terminal.
int proxy_exec_terminal(engine::SpawnedProcess& proc, bool interactive) {
  std::optional<RawTerminal> raw;
  if (interactive && ::isatty(0)) {
    raw.emplace(0);
    struct winsize ws;
    if (::ioctl(0, TIOCGWINSZ, &ws) == 0) ::ioctl(proc.console_master.get(), TIOCSWINSZ, &ws);
  }
  bool stdin_open = interactive;
  bool master_open = true;
  char buf[65536];
  while (master_open) {
    struct pollfd fds[2] = {{proc.console_master.get(), POLLIN, 0}, {-1, POLLIN, 0}};
    if (stdin_open) fds[1].fd = 0;
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      throw_errno("poll");
    }
    if (fds[1].revents) {
      ssize_t n = ::read(0, buf, sizeof buf);
      if (n > 0)
        fs::write_all(proc.console_master.get(), buf, static_cast<size_t>(n), "pty");
      else if (n == 0 || errno != EINTR)
        stdin_open = false;
    }
    if (fds[0].revents) {
      ssize_t n = ::read(proc.console_master.get(), buf, sizeof buf);
      if (n > 0)
        fs::write_all(1, buf, static_cast<size_t>(n), "stdout");
      else if (n == 0 || (n < 0 && errno != EINTR))
        master_open = false;  // EIO: every slave fd is closed
    }
  }
  int status = 0;
  while (::waitpid(proc.pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void print_logs(const std::string& path, bool follow, ContainerManager& manager,
                const std::string& id, int tail) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  std::string pending;
  auto emit = [&](bool all) {
    size_t start = 0;
    for (;;) {
      size_t nl = pending.find('\n', start);
      if (nl == std::string::npos) break;
      std::string_view line = std::string_view(pending).substr(start, nl - start);
      start = nl + 1;
      // "<time> <stream> <F|P> <content>"
      size_t a = line.find(' ');
      size_t b = a == std::string_view::npos ? a : line.find(' ', a + 1);
      size_t c = b == std::string_view::npos ? b : line.find(' ', b + 1);
      if (c == std::string_view::npos) continue;
      std::string_view stream = line.substr(a + 1, b - a - 1);
      bool partial = line.substr(b + 1, c - b - 1) == "P";
      std::string content(line.substr(c + 1));
      if (!partial) content += '\n';
      write_out(stream == "stderr" ? 2 : 1, content);
    }
    pending.erase(0, start);
    (void)all;
  };
  if (fd) {
    std::string all = fs::read_file(path);
    if (tail >= 0) {
      // The last `tail` records: every record of the log file ends with a newline.
      size_t pos = all.size();
      for (int count = 0; count < tail && pos > 0; ++count) {
        size_t nl = pos >= 2 ? all.rfind('\n', pos - 2) : std::string::npos;
        pos = nl == std::string::npos ? 0 : nl + 1;
      }
      all = all.substr(pos);
    }
    pending = all;
    ::lseek(fd.get(), 0, SEEK_END);
    emit(true);
  }
  if (!follow) return;
  char buf[65536];
  for (;;) {
    bool running = false;
    try {
      running = manager.load(id).state == ContainerState::kRunning;
    } catch (const ExitCodeError&) {
    }
    if (!fd) fd.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    bool got = false;
    if (fd) {
      for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n <= 0) break;
        got = true;
        pending.append(buf, static_cast<size_t>(n));
      }
      emit(false);
    }
    if (!running && !got) return;
    if (!got) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace

void register_container_commands(CLI::App& app, CLI::App& container, GlobalOptions& global) {
  GlobalOptions& g = global;

  add_both(app, container, "run", "Run a command in a new container", [&g](CLI::App* cmd) {
    auto o = std::make_shared<CreateOptions>();
    add_create_options(cmd, *o, true);
    cmd->callback([&g, cmd, o] { exit_code() = run_command(g, cmd, *o); });
  });

  add_both(app, container, "create", "Create but do not start a container", [&g](CLI::App* cmd) {
    auto o = std::make_shared<CreateOptions>();
    add_create_options(cmd, *o, false);
    cmd->callback([&g, cmd, o] {
      ContainerManager manager(store_paths(g));
      ContainerRecord record = manager.create(finish_create_request(cmd, *o));
      std::cout << record.id << std::endl;
    });
  });

  add_both(app, container, "start", "Start one or more containers", [&g](CLI::App* cmd) {
    auto names = std::make_shared<std::vector<std::string>>();
    auto attach = std::make_shared<bool>(false);
    auto interactive = std::make_shared<bool>(false);
    cmd->add_flag("-a,--attach", *attach, "Attach container's STDOUT and STDERR");
    cmd->add_flag("-i,--interactive", *interactive,
                  "Make STDIN available to the contained process");
    cmd->add_option("containers", *names, "Containers")->required();
    cmd->callback([&g, names, attach, interactive] {
      ContainerManager manager(store_paths(g));
      if (*attach && names->size() != 1)
        throw ExitCodeError("you cannot start and attach multiple containers at once", 125);
      int failures = 0;
      for (const auto& name : *names) {
        try {
          std::string id = manager.store().resolve_id(name);
          ContainerRecord record = manager.load(id);
          if (record.state == ContainerState::kRunning) {
            if (!*attach) std::cout << name << std::endl;
            continue;
          }
          auto started = manager.start(id, *attach, g.log_level);
          if (*attach) {
            exit_code() =
                attach_and_wait(manager, id, started.attach.get(), record.config.tty, *interactive);
            return;
          }
          std::cout << name << std::endl;
        } catch (const ExitCodeError& e) {
          if (names->size() == 1) throw;
          std::cerr << "Error: " << e.what() << std::endl;
          ++failures;
        }
      }
      if (failures) exit_code() = 125;
    });
  });

  add_both(app, container, "stop", "Stop one or more containers", [&g](CLI::App* cmd) {
    auto names = std::make_shared<std::vector<std::string>>();
    auto timeout = std::make_shared<int>(-1);
    auto all = std::make_shared<bool>(false);
    cmd->add_option("-t,--time", *timeout, "Seconds to wait for stop before killing the container");
    cmd->add_flag("-a,--all", *all, "Stop all running containers");
    cmd->add_option("containers", *names, "Containers");
    cmd->callback([&g, names, timeout, all] {
      ContainerManager manager(store_paths(g));
      std::optional<unsigned> t;
      if (*timeout >= 0) t = static_cast<unsigned>(*timeout);
      std::vector<std::string> targets = *names;
      if (*all)
        for (const auto& r : manager.list())
          if (r.state == ContainerState::kRunning) targets.push_back(r.id);
      if (targets.empty() && !*all)
        throw ExitCodeError("you must provide at least one name or id", 125);
      int failures = 0;
      for (const auto& name : targets) {
        try {
          manager.stop(manager.store().resolve_id(name), t);
          std::cout << name << std::endl;
        } catch (const ExitCodeError& e) {
          if (targets.size() == 1) throw;
          std::cerr << "Error: " << e.what() << std::endl;
          ++failures;
        }
      }
      if (failures) exit_code() = 125;
    });
  });

  add_both(app, container, "restart", "Restart one or more containers", [&g](CLI::App* cmd) {
    auto names = std::make_shared<std::vector<std::string>>();
    auto timeout = std::make_shared<int>(-1);
    cmd->add_option("-t,--time", *timeout, "Seconds to wait for stop before killing the container");
    cmd->add_option("containers", *names, "Containers")->required();
    cmd->callback([&g, names, timeout] {
      ContainerManager manager(store_paths(g));
      std::optional<unsigned> t;
      if (*timeout >= 0) t = static_cast<unsigned>(*timeout);
      for (const auto& name : *names) {
        std::string id = manager.store().resolve_id(name);
        manager.stop(id, t);
        manager.start(id, false, g.log_level);
        std::cout << id << std::endl;
      }
    });
  });

  add_both(app, container, "kill", "Kill one or more running containers with a specific signal",
           [&g](CLI::App* cmd) {
             auto names = std::make_shared<std::vector<std::string>>();
             auto signal = std::make_shared<std::string>("KILL");
             cmd->add_option("-s,--signal", *signal, "Signal to send to the container");
             cmd->add_option("containers", *names, "Containers")->required();
             cmd->callback([&g, names, signal] {
               ContainerManager manager(store_paths(g));
               int sig = parse_signal(*signal);
               for (const auto& name : *names) {
                 manager.kill(manager.store().resolve_id(name), sig);
                 std::cout << name << std::endl;
               }
             });
           });

  add_both(app, container, "rm", "Remove one or more containers", [&g](CLI::App* cmd) {
    auto names = std::make_shared<std::vector<std::string>>();
    auto force = std::make_shared<bool>(false);
    auto all = std::make_shared<bool>(false);
    auto ignore = std::make_shared<bool>(false);
    auto timeout = std::make_shared<int>(-1);
    cmd->add_flag("-f,--force", *force, "Force removal of a running or unusable container");
    cmd->add_flag("-a,--all", *all, "Remove all containers");
    cmd->add_flag("-i,--ignore", *ignore, "Ignore errors when a specified container is missing");
    cmd->add_option("-t,--time", *timeout, "Seconds to wait for stop before killing the container");
    cmd->add_option("containers", *names, "Containers");
    cmd->callback([&g, names, force, all, ignore, timeout] {
      ContainerManager manager(store_paths(g));
      std::optional<unsigned> t;
      if (*timeout >= 0) t = static_cast<unsigned>(*timeout);
      std::vector<std::string> targets = *names;
      if (*all) {
        manager.store().remove_incomplete();
        for (const auto& r : manager.list()) targets.push_back(r.id);
      }
      if (targets.empty() && !*all)
        throw ExitCodeError("you must provide at least one name or id", 125);
      int failures = 0;
      for (const auto& name : targets) {
        try {
          manager.remove(manager.store().resolve_id(name), *force, t);
          std::cout << name << std::endl;
        } catch (const ExitCodeError& e) {
          if (*ignore && std::string(e.what()).find("no such container") != std::string::npos)
            continue;
          if (targets.size() == 1) throw;
          std::cerr << "Error: " << e.what() << std::endl;
          ++failures;
        }
      }
      if (failures) exit_code() = 125;
    });
  });

  add_both(
      app, container, "ps", "List containers",
      [&g](CLI::App* cmd) {
        auto all = std::make_shared<bool>(false);
        auto quiet = std::make_shared<bool>(false);
        auto no_trunc = std::make_shared<bool>(false);
        auto latest = std::make_shared<bool>(false);
        auto format = std::make_shared<std::string>();
        cmd->add_flag("-a,--all", *all, "Show all the containers, default is only running");
        cmd->add_flag("-q,--quiet", *quiet, "Print the numeric IDs of the containers only");
        cmd->add_flag("--no-trunc", *no_trunc, "Display the extended information");
        cmd->add_flag("-l,--latest", *latest, "Act on the latest container");
        cmd->add_option("--format", *format, "Pretty-print containers to JSON or a Go template");
        cmd->callback([&g, all, quiet, no_trunc, latest, format] {
          ContainerManager manager(store_paths(g));
          std::vector<ContainerRecord> shown;
          for (auto& r : manager.list())
            if (*all || *latest || r.state == ContainerState::kRunning) shown.push_back(r);
          if (*latest && shown.size() > 1) shown.resize(1);
          auto id_of = [&](const std::string& id) { return *no_trunc ? id : id.substr(0, 12); };
          if (*quiet) {
            for (const auto& r : shown) std::cout << id_of(r.id) << "\n";
            return;
          }
          auto to_ps_json = [&](const ContainerRecord& r) {
            nlohmann::json ports = nlohmann::json::array();
            for (const auto& p : actual_ports(r))
              ports.push_back({{"host_ip", p.host_ip},
                               {"container_port", p.container_port},
                               {"host_port", p.host_port},
                               {"range", 1},
                               {"protocol", p.protocol}});
            return nlohmann::json{
                {"AutoRemove", r.config.auto_remove},
                {"Command", r.full_command()},
                {"Created", r.created_ns / 1000000000},
                {"CreatedAt", human_duration(engine::now_ns() - r.created_ns) + " ago"},
                {"Exited", r.state == ContainerState::kExited},
                {"ExitedAt", r.finished_ns / 1000000000},
                {"ExitCode", r.exit_code},
                {"Id", r.id},
                {"ID", id_of(r.id)},
                {"Image", r.image_name},
                {"ImageID", r.image_id},
                {"Labels", r.config.labels},
                {"Names", {r.name}},
                {"Pid", r.state == ContainerState::kRunning ? r.pid : 0},
                {"Ports", ports},
                {"StartedAt", r.started_ns / 1000000000},
                {"State", engine::to_string(r.state)},
                {"Status", status_text(r)},
            };
          };
          if (*format == "json") {
            nlohmann::json out = nlohmann::json::array();
            for (const auto& r : shown) out.push_back(to_ps_json(r));
            std::cout << out.dump(4) << std::endl;
            return;
          }
          if (!format->empty()) {
            std::string fmt = *format;
            bool table = starts_with(fmt, "table");
            if (table) fmt = std::string(trim(fmt.substr(5)));
            for (const auto& r : shown) {
              nlohmann::json data = to_ps_json(r);
              data["Names"] = r.name;
              data["Command"] = quote_command(r.full_command());
              data["Ports"] = ports_text(r);
              std::cout << render_template(fmt, data) << "\n";
            }
            return;
          }
          std::vector<std::vector<std::string>> rows = {
              {"CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"}};
          for (const auto& r : shown) {
            std::string command = quote_command(r.full_command());
            if (!*no_trunc && command.size() > 20) command = command.substr(0, 17) + "...";
            rows.push_back({id_of(r.id), r.image_name, command,
                            human_duration(engine::now_ns() - r.created_ns) + " ago",
                            status_text(r), ports_text(r), r.name});
          }
          std::vector<size_t> widths(7, 0);
          for (const auto& row : rows)
            for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
          for (const auto& row : rows) {
            std::string line;
            for (size_t i = 0; i < row.size(); ++i) {
              line += row[i];
              if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
            }
            std::cout << line << "\n";
          }
        });
      },
      {"ls", "list"});

  add_both(app, container, "logs", "Fetch the logs of one or more containers", [&g](CLI::App* cmd) {
    auto name = std::make_shared<std::string>();
    auto follow = std::make_shared<bool>(false);
    auto tail = std::make_shared<int>(-1);
    cmd->add_flag("-f,--follow", *follow, "Follow log output");
    cmd->add_option("--tail", *tail, "Output the specified number of LINES at the end of the logs");
    cmd->add_option("container", *name, "Container")->required();
    cmd->callback([&g, name, follow, tail] {
      ContainerManager manager(store_paths(g));
      std::string id = manager.store().resolve_id(*name);
      print_logs(manager.store().log_path(id), *follow, manager, id, *tail);
    });
  });

  add_both(app, container, "inspect", "Display the configuration of a container",
           [&g](CLI::App* cmd) {
             auto names = std::make_shared<std::vector<std::string>>();
             auto format = std::make_shared<std::string>();
             cmd->add_option("-f,--format", *format, "Format the output using a Go template");
             cmd->add_option("containers", *names, "Containers")->required();
             cmd->callback([&g, names, format] {
               ContainerManager manager(store_paths(g));
               nlohmann::json out = nlohmann::json::array();
               std::string errors;
               for (const auto& name : *names) {
                 try {
                   std::string id = manager.store().resolve_id(name);
                   out.push_back(inspect_json(manager.load(id), manager.store().spec_path(id)));
                 } catch (const ExitCodeError&) {
                   errors += "Error: no such object: \"" + name + "\"\n";
                 }
               }
               if (!format->empty()) {
                 for (const auto& item : out) std::cout << render_template(*format, item) << "\n";
               } else {
                 std::cout << out.dump(4) << std::endl;
               }
               if (!errors.empty()) {
                 std::cerr << errors;
                 exit_code() = 125;
               }
             });
           });

  add_both(app, container, "exec", "Run a process in a running container", [&g](CLI::App* cmd) {
    cmd->prefix_command();
    auto req = std::make_shared<engine::ExecRequest>();
    auto interactive = std::make_shared<bool>(false);
    auto detach = std::make_shared<bool>(false);
    auto env_files = std::make_shared<std::vector<std::string>>();
    cmd->add_flag("-t,--tty", req->tty, "Allocate a pseudo-TTY");
    cmd->add_flag("-i,--interactive", *interactive, "Keep STDIN open even if not attached");
    cmd->add_flag("-d,--detach", *detach, "Run the exec session in detached mode");
    cmd->add_option("-e,--env", req->env, "Set environment variables")->allow_extra_args(false);
    cmd->add_option("--env-file", *env_files, "Read in a file of environment variables")
        ->allow_extra_args(false);
    cmd->add_option("-w,--workdir", req->workdir, "Working directory inside the container");
    cmd->add_option("-u,--user", req->user, "Sets the username or UID used");
    cmd->callback([&g, cmd, req, interactive, detach, env_files] {
      std::vector<std::string> rest = cmd->remaining();
      // Like Podman's `exec [OPTS] CTR -- CMD...`: the `--` before the command ends the options;
      // a later `--` belongs to the command.
      if (rest.size() > 1 && rest[1] == "--") rest.erase(rest.begin() + 1);
      if (rest.size() < 2)
        throw ExitCodeError("exec requires the name or ID of a container and a command", 125);
      ContainerManager manager(store_paths(g));
      std::string id = manager.store().resolve_id(rest[0]);
      engine::ExecRequest r = *req;
      r.command.assign(rest.begin() + 1, rest.end());
      std::vector<std::string> env;
      for (const auto& f : *env_files)
        for (auto& e : read_env_file(f)) env.push_back(e);
      env.insert(env.end(), r.env.begin(), r.env.end());
      r.env = env;
      if (*detach) {
        r.tty = false;
        r.stdio = {-1, -1, -1};
      } else if (!r.tty) {
        r.stdio = {*interactive ? 0 : -1, 1, 2};
      }
      engine::SpawnedProcess proc = manager.exec(id, r);
      if (*detach) {
        std::cout << proc.pid << std::endl;
        return;
      }
      if (r.tty) {
        exit_code() = proxy_exec_terminal(proc, *interactive);
        return;
      }
      int status = 0;
      while (::waitpid(proc.pid, &status, 0) < 0 && errno == EINTR) {
      }
      exit_code() = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    });
  });

  add_both(app, container, "port", "List port mappings or a specific mapping for the container",
           [&g](CLI::App* cmd) {
             auto name = std::make_shared<std::string>();
             auto filter = std::make_shared<std::string>();
             cmd->add_option("container", *name, "Container")->required();
             cmd->add_option("port", *filter, "Private port, e.g. 8080/tcp");
             cmd->callback([&g, name, filter] {
               ContainerManager manager(store_paths(g));
               ContainerRecord r = manager.load(manager.store().resolve_id(*name));
               for (const auto& p : actual_ports(r)) {
                 std::string key = std::to_string(p.container_port) + "/" + p.protocol;
                 std::string host = (p.host_ip.empty() ? "0.0.0.0" : p.host_ip) + ":" +
                                    std::to_string(p.host_port);
                 if (filter->empty())
                   std::cout << key << " -> " << host << "\n";
                 else if (*filter == key || *filter == std::to_string(p.container_port))
                   std::cout << host << "\n";
               }
             });
           });

  add_both(app, container, "wait", "Block on one or more containers", [&g](CLI::App* cmd) {
    auto names = std::make_shared<std::vector<std::string>>();
    cmd->add_option("containers", *names, "Containers")->required();
    cmd->callback([&g, names] {
      ContainerManager manager(store_paths(g));
      for (const auto& name : *names)
        std::cout << manager.wait(manager.store().resolve_id(name)) << std::endl;
    });
  });
}

bool run_internal_command(int argc, char** argv) {
  if (argc < 2) return false;
  std::string command = argv[1];
  if (command == engine::kMonitorCommand) {
    exit_code() = engine::monitor_main(std::vector<std::string>(argv + 2, argv + argc));
    return true;
  }
  return false;
}

}  // namespace cryo::cli
