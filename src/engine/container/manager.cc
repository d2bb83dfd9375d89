#include "engine/container/manager.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmath>
#include <cstring>

#include "common/clock.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/signal_names.h"
#include "common/strings.h"
#include "engine/container/oci_spec.h"
#include "engine/image/image_store.h"
#include "engine/network/network.h"
#include "engine/runtime/cgroup.h"
#include "engine/volume/volume_store.h"

namespace cryo::engine {

namespace {

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

std::string env_key(const std::string& entry) {
  return entry.substr(0, entry.find('='));
}

void set_env(std::vector<std::string>& env, const std::string& entry) {
  std::string key = env_key(entry);
  for (auto& e : env)
    if (env_key(e) == key) {
      e = entry;
      return;
    }
  env.push_back(entry);
}

bool has_env(const std::vector<std::string>& env, const std::string& key) {
  for (const auto& e : env)
    if (env_key(e) == key) return true;
  return false;
}

// -e KEY (no '=') takes the value from cryo's own environment, or is dropped when unset.
std::optional<std::string> expand_env_entry(const std::string& entry) {
  if (entry.find('=') != std::string::npos) return entry;
  const char* value = ::getenv(entry.c_str());
  if (!value) return std::nullopt;
  return entry + "=" + value;
}

std::vector<std::string> parse_entrypoint(const std::string& text) {
  if (!text.empty() && text.front() == '[') {
    try {
      return nlohmann::json::parse(text).get<std::vector<std::string>>();
    } catch (const nlohmann::json::exception& e) {
      throw ExitCodeError("invalid --entrypoint " + text + ": " + e.what(), 125);
    }
  }
  if (text.empty()) return {};
  return {text};
}

// Whether the record's monitor still runs (and its PID was not recycled by another process).
bool monitor_alive(const ContainerRecord& record) {
  return record.monitor_pid > 0 && record.monitor_start_time != 0 &&
         process_start_time(record.monitor_pid) == record.monitor_start_time;
}

std::string resolv_conf_for(const std::string& mode) {
  std::string host = fs::read_file_if_exists("/etc/resolv.conf").value_or("");
  if (mode == "host") return host;
  // Loopback resolvers of the host are unreachable from another network namespace.
  std::string out;
  bool has_server = false;
  for (const auto& line : split(host, '\n')) {
    std::string_view t = trim(line);
    if (starts_with(t, "nameserver")) {
      std::string_view addr = trim(t.substr(10));
      if (starts_with(addr, "127.") || addr == "::1") continue;
      has_server = true;
    }
    if (!t.empty()) out += std::string(t) + "\n";
  }
  if (!has_server && mode == "bridge") out += "nameserver 10.88.0.1\n";
  return out;
}

// Debug-level timing of the steps of create and start (`--log-level debug`), for bench/run_rm.sh.
class StepTimer {
 public:
  explicit StepTimer(std::string what) : what_(std::move(what)), last_(steady_now_us()) {}
  void step(const char* name) {
    uint64_t now = steady_now_us();
    LOG_DEBUG << "timing " << what_ << " " << name << ": " << (now - last_) << " us";
    last_ = now;
  }

 private:
  std::string what_;
  uint64_t last_;
};

}  // namespace

SpecInputs make_container_dirs(const StorePaths& paths, const ContainerRecord& record,
                               const std::vector<std::string>& layers, const ResolvedUser& user) {
  std::string dir = paths.container_dir(record.id);
  for (const char* sub : {"/upper", "/work", "/merged", "/userdata"}) fs::mkdir_p(dir + sub);
  SpecInputs in;
  in.lower_dirs = layers;
  in.upper_dir = dir + "/upper";
  in.work_dir = dir + "/work";
  in.rootfs_dir = dir + "/merged";
  in.user = user;
  // The network manager creates the netns file at start, always at the same path.
  if (record.config.network_mode != "host")
    in.netns_path = NetworkManager(paths).netns_path(record.id);
  in.hosts_file = dir + "/userdata/hosts";
  in.resolv_file = dir + "/userdata/resolv.conf";
  in.hostname_file = dir + "/userdata/hostname";
  in.cgroups_path = container_cgroup_name(paths, record.id);
  return in;
}

int parse_signal(const std::string& text) {
  if (int sig = signal_number(text)) return sig;
  throw ExitCodeError("invalid signal: " + text, 125);
}

int64_t parse_memory_size(const std::string& text) {
  size_t pos = 0;
  double value;
  try {
    value = std::stod(text, &pos);
  } catch (const std::exception&) {
    throw ExitCodeError("invalid size: '" + text + "'", 125);
  }
  std::string unit = text.substr(pos);
  for (auto& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!unit.empty() && unit.back() == 'b' && unit.size() > 1) unit.pop_back();
  double scale = 1;
  if (unit.empty() || unit == "b")
    scale = 1;
  else if (unit == "k")
    scale = 1024.0;
  else if (unit == "m")
    scale = 1024.0 * 1024;
  else if (unit == "g")
    scale = 1024.0 * 1024 * 1024;
  else if (unit == "t")
    scale = 1024.0 * 1024 * 1024 * 1024;
  else
    throw ExitCodeError("invalid size: '" + text + "'", 125);
  if (value < 0) throw ExitCodeError("invalid size: '" + text + "'", 125);
  return static_cast<int64_t>(std::llround(value * scale));
}

MountRequest parse_volume(const std::string& spec, const StorePaths& paths) {
  auto parts = split(spec, ':');
  if (parts.size() < 2 || parts.size() > 3 || parts[0].empty() || parts[1].empty())
    throw ExitCodeError("invalid volume specification \"" + spec + "\"", 125);
  MountRequest m;
  m.destination = parts[1];
  if (m.destination.front() != '/')
    throw ExitCodeError(
        "invalid container path \"" + m.destination + "\", must be an absolute path", 125);
  if (parts.size() == 3) {
    for (const auto& opt : split(parts[2], ',')) {
      if (opt == "ro")
        m.read_only = true;
      else if (opt == "rw" || opt == "z" || opt == "Z" || opt.empty())
        continue;
      else
        throw ExitCodeError("invalid volume option \"" + opt + "\" in \"" + spec + "\"", 125);
    }
  }
  if (parts[0].front() == '/') {
    m.source = parts[0];
    struct stat st;
    if (::stat(m.source.c_str(), &st) < 0)
      throw ExitCodeError("statfs " + m.source + ": " + std::strerror(errno), 125);
  } else {
    if (!valid_container_name(parts[0]))
      throw ExitCodeError("invalid volume name \"" + parts[0] + "\"", 125);
    m.volume_name = parts[0];
    // Named volumes are created on demand; `volume create` uses the same layout.
    m.source = paths.volumes_dir() + "/" + m.volume_name + "/_data";
  }
  return m;
}

ContainerManager::ContainerManager(StorePaths paths) : paths_(paths), store_(std::move(paths)) {}

ContainerRecord ContainerManager::create(const CreateRequest& req) {
  StepTimer timer("create");
  ImageStore images(paths_);
  ImageRecord image = images.resolve(req.image);
  std::vector<std::string> layers = images.layer_dirs(image);
  std::reverse(layers.begin(), layers.end());  // overlayfs wants the highest layer first
  timer.step("image");

  ContainerRecord record;
  record.name = req.name;
  record.image_id = image.id;
  record.image_name = image.names.empty() ? image.id : image.names.front();
  ContainerConfig& c = record.config;
  if (req.entrypoint) {
    c.entrypoint = parse_entrypoint(*req.entrypoint);
    c.cmd = req.command;
  } else {
    c.entrypoint = image.config.entrypoint;
    c.cmd = req.command.empty() ? image.config.cmd : req.command;
  }
  if (c.entrypoint.empty() && c.cmd.empty())
    throw ExitCodeError("no command or entrypoint provided, and no CMD or ENTRYPOINT from image",
                        125);
  c.working_dir = !req.workdir.empty()                ? req.workdir
                  : !image.config.working_dir.empty() ? image.config.working_dir
                                                      : "/";
  c.user = !req.user.empty() ? req.user : image.config.user;
  c.tty = req.tty;
  c.interactive = req.interactive;
  c.auto_remove = req.auto_remove;
  c.network_mode = req.network;
  if (c.network_mode != "bridge" && c.network_mode != "host" && c.network_mode != "none")
    throw ExitCodeError("network mode \"" + c.network_mode +
                            "\" is not supported (bridge, host, "
                            "none)",
                        125);
  c.static_ip = req.ip;
  c.static_mac = req.mac;
  for (const auto& p : req.publish) {
    PortMapping mapping = parse_publish(p);
    c.ports.push_back(
        {mapping.host_ip, mapping.host_port, mapping.container_port, mapping.protocol});
  }
  if (!c.ports.empty() && c.network_mode != "bridge")
    throw ExitCodeError(
        "cannot set port bindings on an existing container network namespace "
        "or with --network " +
            c.network_mode,
        125);
  c.memory_limit = req.memory_limit;
  c.pids_limit = req.pids_limit;
  c.labels = req.labels;
  if (req.stop_timeout) c.stop_timeout = *req.stop_timeout;
  if (req.stop_signal)
    c.stop_signal = *req.stop_signal;
  else if (!image.config.stop_signal.empty())
    c.stop_signal = with_context("StopSignal of image " + record.image_name,
                                 [&] { return parse_signal(image.config.stop_signal); });
  for (const auto& v : req.volumes) c.mounts.push_back(parse_volume(v, paths_));

  ResolvedUser user = resolve_user(c.user, layers);
  timer.step("config");
  c.env = image.config.env;
  if (!has_env(c.env, "PATH")) c.env.insert(c.env.begin(), std::string("PATH=") + kDefaultPath);
  if (c.tty && !has_env(c.env, "TERM")) c.env.push_back("TERM=xterm");
  set_env(c.env, "container=podman");
  for (const auto& e : req.env)
    if (auto expanded = expand_env_entry(e)) set_env(c.env, *expanded);
  if (!has_env(c.env, "HOME")) c.env.push_back("HOME=" + user.home);

  // Everything that depends on the ID, written before the record itself.
  auto complete = [&](ContainerRecord& rec) {
    if (!req.hostname.empty())
      rec.config.hostname = req.hostname;
    else
      rec.config.hostname = rec.id.substr(0, 12);
    set_env(rec.config.env, "HOSTNAME=" + rec.config.hostname);
    // Named volumes are created through the volume store so that `volume ls/rm` know them.
    VolumeStore volumes(paths_);
    for (const auto& m : rec.config.mounts)
      if (!m.volume_name.empty()) volumes.ensure(m.volume_name);

    SpecInputs in = make_container_dirs(paths_, rec, layers, user);
    fs::write_file(in.hostname_file, rec.config.hostname + "\n");
    fs::write_file(in.hosts_file, "");
    fs::write_file(in.resolv_file, resolv_conf_for(rec.config.network_mode));
    fs::write_file_atomic(store_.spec_path(rec.id), make_oci_spec(rec, in).dump(2) + "\n", 0600);
  };
  record = store_.create(std::move(record), complete);
  timer.step("record and spec");
  return record;
}

MonitorStart ContainerManager::start(const std::string& id, bool attach,
                                     const std::string& log_level) {
  StepTimer timer("start");
  ContainerRecord record;
  {
    FileLock lock = store_.lock(id);
    record = reconcile(store_.load(id));
    if (record.state == ContainerState::kRunning || record.state == ContainerState::kPaused)
      throw ExitCodeError("container " + record.name + " is already running", 125);
    // A fresh start of a checkpointed container builds its network anew.
    if (record.network_kept) release_resources_locked(record);
    std::string dir = paths_.container_dir(id);

    // Network first: the container joins its namespace.
    if (record.config.network_mode != "host") {
      NetworkRequest request;
      request.mode = record.config.network_mode;
      request.static_ip = record.config.static_ip;
      request.static_mac = record.config.static_mac;
      for (const auto& p : record.config.ports)
        request.ports.push_back({p.host_ip, p.host_port, p.container_port, p.protocol});
      timer.step("lock and record");
      NetworkStatus status = NetworkManager(paths_).setup(id, request);
      timer.step("network");
      record.network_status = to_json(status);
      store_.save(record, false);
      timer.step("record");
      try {
        if (status.netns_path != NetworkManager(paths_).netns_path(id))
          throw Error("network namespace of container " + id + " is at " + status.netns_path +
                      ", not where its spec expects it");
        std::string hosts =
            "127.0.0.1\tlocalhost localhost.localdomain\n"
            "::1\tlocalhost localhost.localdomain\n";
        if (!status.ip.empty())
          hosts += status.ip + "\t" + record.config.hostname + " " + record.name + "\n";
        fs::write_file(dir + "/userdata/hosts", hosts);
      } catch (...) {
        release_resources_locked(record);
        throw;
      }
    } else {
      std::string hosts = fs::read_file_if_exists("/etc/hosts").value_or("");
      fs::write_file(dir + "/userdata/hosts", hosts);
    }
  }
  try {
    timer.step("hosts");
    MonitorStart started = start_monitor(paths_, id, attach, log_level);
    timer.step("monitor and init exec");
    return started;
  } catch (...) {
    release_resources(id);
    throw;
  }
}

bool ContainerManager::wait_for_monitor(const ContainerRecord& record, int timeout_ms) {
  pid_t pid = record.monitor_pid;
  if (pid <= 0) return true;
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) {
    if (errno == ESRCH) return true;
    throw_errno("pidfd_open monitor " + std::to_string(pid));
  }
  if (!monitor_alive(record)) return true;
  struct pollfd p = {pidfd.get(), POLLIN, 0};
  for (;;) {
    int n = ::poll(&p, 1, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("poll monitor pidfd");
    return n > 0;
  }
}

ContainerRecord ContainerManager::reconcile(ContainerRecord record) {
  if (record.state != ContainerState::kRunning && record.state != ContainerState::kPaused)
    return record;
  if (monitor_alive(record)) return record;
  // The monitor died without recording the exit (killed, or the machine rebooted).
  auto exit_text = fs::read_file_if_exists(store_.exit_file_path(record.id));
  record.state = ContainerState::kExited;
  record.exit_code = exit_text ? std::atoi(exit_text->c_str()) : 137;
  if (record.finished_ns == 0) record.finished_ns = now_ns();
  record.pid = 0;
  record.monitor_pid = 0;
  record.monitor_start_time = 0;
  store_.save(record, false);
  // Whatever is left in its cgroup is ended there, and its network goes (unless an in-place
  // checkpoint keeps it for the restore).
  release_resources_locked(record, true, /*keep_checkpointed_network=*/true);
  return record;
}

ContainerRecord ContainerManager::load(const std::string& id) {
  FileLock lock = store_.lock(id);
  return reconcile(store_.load(id));
}

std::vector<ContainerRecord> ContainerManager::list() {
  std::vector<ContainerRecord> out;
  for (auto& record : store_.list()) {
    if (record.state == ContainerState::kRunning || record.state == ContainerState::kPaused) {
      try {
        out.push_back(load(record.id));
      } catch (const ExitCodeError&) {
        // Removed meanwhile.
      }
    } else {
      out.push_back(std::move(record));
    }
  }
  return out;
}

void ContainerManager::stop(const std::string& id, std::optional<unsigned> timeout) {
  ContainerRecord record = load(id);
  if (record.state != ContainerState::kRunning && record.state != ContainerState::kPaused) return;
  unsigned seconds = timeout ? *timeout : record.config.stop_timeout;
  if (seconds > 0 && ::kill(record.pid, record.config.stop_signal) < 0 && errno != ESRCH)
    throw_errno("kill container " + record.name + " init " + std::to_string(record.pid));
  if (seconds > 0 && wait_for_monitor(record, static_cast<int>(seconds) * 1000)) return;
  if (seconds > 0) {
    LOG_WARN << "StopSignal " << record.config.stop_signal << " failed to stop container "
             << record.name << " in " << seconds << " seconds, resorting to SIGKILL";
  }
  if (::kill(record.pid, SIGKILL) < 0 && errno != ESRCH)
    throw_errno("kill container " + record.name + " init " + std::to_string(record.pid));
  wait_for_monitor(record, -1);
}

void ContainerManager::kill(const std::string& id, int signal) {
  ContainerRecord record = load(id);
  if (record.state != ContainerState::kRunning)
    throw ExitCodeError("can only kill running containers. " + record.id + " is in state " +
                            to_string(record.state) + ": container state improper",
                        125);
  if (::kill(record.pid, signal) < 0)
    throw_errno("kill container " + record.name + " init " + std::to_string(record.pid));
}

int ContainerManager::wait(const std::string& id) {
  ContainerRecord record = load(id);
  if (record.state == ContainerState::kRunning || record.state == ContainerState::kPaused) {
    wait_for_monitor(record, -1);
    auto after = store_.try_load(id);
    if (!after) {
      // Removed by --rm: the exit code went with it unless the exit file is still there.
      return record.exit_code;
    }
    record = reconcile(*after);
  }
  return record.exit_code;
}

void ContainerManager::remove(const std::string& id, bool force, std::optional<unsigned> timeout) {
  ContainerRecord record = load(id);
  if (record.state == ContainerState::kRunning || record.state == ContainerState::kPaused) {
    if (!force)
      throw ExitCodeError("cannot remove container " + record.id +
                              " as it is running - running or paused containers cannot be "
                              "removed without force: container state improper",
                          125);
    stop(id, timeout);
  }
  // --rm containers may be removed by their monitor meanwhile.
  if (!store_.try_load(id)) return;
  remove_stopped(id);
}

void ContainerManager::release_resources_locked(ContainerRecord& record, bool save,
                                                bool keep_checkpointed_network) {
  ContainerCgroup cgroup = ContainerCgroup::existing(container_cgroup_name(paths_, record.id));
  if (keep_checkpointed_network && record.network_kept) {
    // The restore reuses the (empty) cgroup as it takes the network over; thawed, since the
    // dump froze it and the restored tree joins it.
    cgroup.thaw();
    return;
  }
  cgroup.remove();
  record.network_kept = false;
  if (!record.network_status.is_null()) {
    NetworkManager(paths_).teardown(record.id, network_status_from_json(record.network_status));
    record.network_status = nullptr;
    if (save) store_.save(record);
  }
}

void ContainerManager::record_exit(const std::string& id, int exit_code, int64_t finished_ns) {
  FileLock lock = store_.lock(id);
  ContainerRecord record = store_.load(id);
  try {
    release_resources_locked(record, false, /*keep_checkpointed_network=*/true);
  } catch (const std::exception& e) {
    LOG_ERROR << "cleanup of container " << id << ": " << e.what();
  }
  record.state = ContainerState::kExited;
  record.exit_code = exit_code;
  record.finished_ns = finished_ns;
  record.pid = 0;
  record.monitor_pid = 0;
  record.monitor_start_time = 0;
  // Live state: after a power loss the container is not running whatever this write said.
  store_.save(record, false);
  fs::write_file(store_.exit_file_path(id), std::to_string(exit_code));
}

void ContainerManager::release_resources(const std::string& id) {
  FileLock lock = store_.lock(id);
  auto record = store_.try_load(id);
  if (!record) return;
  release_resources_locked(*record);
}

void ContainerManager::remove_stopped(const std::string& id) {
  FileLock lock = store_.lock(id);
  auto record = store_.try_load(id);
  if (!record) return;
  if (record->state == ContainerState::kRunning && monitor_alive(*record))
    throw ExitCodeError("container " + record->name + " is running", 125);
  release_resources_locked(*record);
  if (record->config.network_mode != "host") {
    NetworkManager network(paths_);
    network.remove_leftovers(id);
    network.release(id);
  }
  store_.remove(id);
}

SpawnedProcess ContainerManager::exec(const std::string& id, const ExecRequest& req) {
  ContainerRecord record = load(id);
  if (record.state != ContainerState::kRunning)
    throw ExitCodeError(
        "can only create exec sessions on running containers: container state "
        "improper",
        125);
  nlohmann::json spec = nlohmann::json::parse(fs::read_file(store_.spec_path(id)));
  nlohmann::json process = spec.at("process");
  process["args"] = req.command;
  process["terminal"] = req.tty;
  std::vector<std::string> env = process.value("env", std::vector<std::string>{});
  if (req.tty && !has_env(env, "TERM")) env.push_back("TERM=xterm");
  for (const auto& e : req.env)
    if (auto expanded = expand_env_entry(e)) set_env(env, *expanded);
  process["env"] = env;
  if (!req.workdir.empty()) process["cwd"] = req.workdir;
  if (!req.user.empty()) {
    ResolvedUser user = resolve_user(req.user, {"/proc/" + std::to_string(record.pid) + "/root"});
    process["user"] = {
        {"uid", user.uid}, {"gid", user.gid}, {"additionalGids", user.additional_gids}};
  }
  return spawn_exec_process(record.pid,
                            ContainerCgroup::existing(container_cgroup_name(paths_, id)).dirs(),
                            process, req.stdio);
}

}  // namespace cryo::engine
