#include "engine/container/container.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <unistd.h>

#include <array>
#include <ctime>

#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/strings.h"

namespace cryo::engine {

namespace {

constexpr const char* kStateNames[] = {"created", "running", "paused", "stopped", "exited"};

bool is_hex_id(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

uint32_t random_u32() {
  uint32_t value = 0;
  if (::getrandom(&value, sizeof value, 0) != sizeof value) throw_errno("getrandom");
  return value;
}

}  // namespace

std::string to_string(ContainerState state) {
  return kStateNames[static_cast<int>(state)];
}

ContainerState container_state_from_string(const std::string& name) {
  for (int i = 0; i < 5; ++i)
    if (name == kStateNames[i]) return static_cast<ContainerState>(i);
  throw Error("unknown container state \"" + name + "\"");
}

std::vector<std::string> ContainerRecord::full_command() const {
  std::vector<std::string> out = config.entrypoint;
  out.insert(out.end(), config.cmd.begin(), config.cmd.end());
  return out;
}

nlohmann::json to_json(const ContainerRecord& r) {
  const ContainerConfig& c = r.config;
  nlohmann::json mounts = nlohmann::json::array();
  for (const auto& m : c.mounts)
    mounts.push_back({{"source", m.source},
                      {"destination", m.destination},
                      {"volume_name", m.volume_name},
                      {"read_only", m.read_only}});
  nlohmann::json ports = nlohmann::json::array();
  for (const auto& p : c.ports)
    ports.push_back({{"host_ip", p.host_ip},
                     {"host_port", p.host_port},
                     {"container_port", p.container_port},
                     {"protocol", p.protocol}});
  return {
      {"id", r.id},
      {"name", r.name},
      {"image_id", r.image_id},
      {"image_name", r.image_name},
      {"created", r.created_ns},
      {"config",
       {{"entrypoint", c.entrypoint},
        {"cmd", c.cmd},
        {"env", c.env},
        {"working_dir", c.working_dir},
        {"user", c.user},
        {"hostname", c.hostname},
        {"tty", c.tty},
        {"interactive", c.interactive},
        {"auto_remove", c.auto_remove},
        {"mounts", mounts},
        {"network_mode", c.network_mode},
        {"static_ip", c.static_ip},
        {"static_mac", c.static_mac},
        {"ports", ports},
        {"memory_limit", c.memory_limit},
        {"pids_limit", c.pids_limit},
        {"labels", c.labels},
        {"stop_timeout", c.stop_timeout},
        {"stop_signal", c.stop_signal}}},
      {"state", to_string(r.state)},
      {"pid", r.pid},
      {"monitor_pid", r.monitor_pid},
      {"monitor_start_time", r.monitor_start_time},
      {"exit_code", r.exit_code},
      {"oom_killed", r.oom_killed},
      {"started", r.started_ns},
      {"finished", r.finished_ns},
      {"network_status", r.network_status},
      {"checkpointed", r.checkpointed},
      {"checkpointed_at", r.checkpointed_ns},
      {"restored", r.restored},
      {"restored_at", r.restored_ns},
      {"network_kept", r.network_kept},
  };
}

ContainerRecord container_record_from_json(const nlohmann::json& j) {
  ContainerRecord r;
  r.id = j.at("id").get<std::string>();
  r.name = j.at("name").get<std::string>();
  r.image_id = j.value("image_id", "");
  r.image_name = j.value("image_name", "");
  r.created_ns = j.value("created", int64_t{0});
  const auto& jc = j.at("config");
  ContainerConfig& c = r.config;
  c.entrypoint = jc.value("entrypoint", std::vector<std::string>{});
  c.cmd = jc.value("cmd", std::vector<std::string>{});
  c.env = jc.value("env", std::vector<std::string>{});
  c.working_dir = jc.value("working_dir", "/");
  c.user = jc.value("user", "");
  c.hostname = jc.value("hostname", "");
  c.tty = jc.value("tty", false);
  c.interactive = jc.value("interactive", false);
  c.auto_remove = jc.value("auto_remove", false);
  for (const auto& m : jc.value("mounts", nlohmann::json::array()))
    c.mounts.push_back({m.value("source", ""), m.value("destination", ""),
                        m.value("volume_name", ""), m.value("read_only", false)});
  c.network_mode = jc.value("network_mode", "bridge");
  c.static_ip = jc.value("static_ip", "");
  c.static_mac = jc.value("static_mac", "");
  for (const auto& p : jc.value("ports", nlohmann::json::array()))
    c.ports.push_back({p.value("host_ip", ""), p.value("host_port", uint16_t{0}),
                       p.value("container_port", uint16_t{0}), p.value("protocol", "tcp")});
  c.memory_limit = jc.value("memory_limit", int64_t{0});
  c.pids_limit = jc.value("pids_limit", int64_t{0});
  c.labels = jc.value("labels", std::map<std::string, std::string>{});
  c.stop_timeout = jc.value("stop_timeout", 10u);
  c.stop_signal = jc.value("stop_signal", 15);
  r.state = container_state_from_string(j.value("state", "created"));
  r.pid = j.value("pid", 0);
  r.monitor_pid = j.value("monitor_pid", 0);
  r.monitor_start_time = j.value("monitor_start_time", uint64_t{0});
  r.exit_code = j.value("exit_code", 0);
  r.oom_killed = j.value("oom_killed", false);
  r.started_ns = j.value("started", int64_t{0});
  r.finished_ns = j.value("finished", int64_t{0});
  if (j.contains("network_status")) r.network_status = j.at("network_status");
  r.checkpointed = j.value("checkpointed", false);
  r.checkpointed_ns = j.value("checkpointed_at", int64_t{0});
  r.restored = j.value("restored", false);
  r.restored_ns = j.value("restored_at", int64_t{0});
  r.network_kept = j.value("network_kept", false);
  return r;
}

FileLock FileLock::exclusive(const std::string& path) {
  FileLock lock;
  lock.fd_ = fs::open_or_throw(path, O_RDWR | O_CREAT, 0600);
  while (::flock(lock.fd_.get(), LOCK_EX) < 0) {
    if (errno != EINTR) throw_errno("flock " + path);
  }
  return lock;
}

int64_t now_ns() {
  struct timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

uint64_t process_start_time(pid_t pid) {
  auto stat = fs::read_file_if_exists("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return 0;
  // The command name may contain spaces and parentheses: fields start after the last ')'.
  size_t close = stat->rfind(')');
  if (close == std::string::npos) return 0;
  auto fields = split(std::string_view(*stat).substr(close + 2), ' ');
  // fields[0] is field 3 (state); the start time is field 22.
  if (fields.size() < 20) return 0;
  return std::stoull(fields[19]);
}

std::string format_rfc3339_ns(int64_t ns) {
  time_t secs = static_cast<time_t>(ns / 1000000000);
  struct tm tm;
  ::gmtime_r(&secs, &tm);
  char buf[64];
  size_t n = ::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%09lld+00:00", static_cast<long long>(ns % 1000000000));
  return buf;
}

std::string generate_container_name() {
  // Our own short lists, in the spirit of Podman's adjective_surname names.
  static constexpr std::array kAdjectives = {
      "agile",   "bold",   "brave",   "bright", "calm",   "clever", "cool",   "crisp",
      "daring",  "eager",  "fervent", "gentle", "happy",  "hardy",  "jolly",  "keen",
      "kind",    "lively", "lucid",   "merry",  "modest", "nimble", "noble",  "patient",
      "plucky",  "quick",  "quiet",   "rapid",  "serene", "sharp",  "shiny",  "sleepy",
      "smart",   "steady", "sturdy",  "sunny",  "swift",  "tender", "vivid",  "witty",
      "zealous", "zen",    "frosty",  "wintry", "chilly", "polar",  "arctic", "glacial"};
  static constexpr std::array kSurnames = {
      "babbage",  "banach",   "bohr",     "boole",    "cantor",   "curie",    "darwin",
      "dijkstra", "einstein", "euler",    "faraday",  "fermat",   "feynman",  "gauss",
      "germain",  "goedel",   "hamilton", "hilbert",  "hopper",   "hypatia",  "kepler",
      "knuth",    "lamport",  "leibniz",  "lovelace", "maxwell",  "meitner",  "mirzakhani",
      "neumann",  "newton",   "noether",  "pascal",   "planck",   "poincare", "ramanujan",
      "riemann",  "ritchie",  "shannon",  "tesla",    "thompson", "turing",   "wozniak"};
  return std::string(kAdjectives[random_u32() % kAdjectives.size()]) + "_" +
         kSurnames[random_u32() % kSurnames.size()];
}

bool valid_container_name(const std::string& name) {
  // Podman: [a-zA-Z0-9][a-zA-Z0-9_.-]*
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-'))) return false;
  }
  return true;
}

ContainerStore::ContainerStore(StorePaths paths) : paths_(std::move(paths)) {}

std::string ContainerStore::record_path(const std::string& id) const {
  return paths_.container_dir(id) + "/container.json";
}
std::string ContainerStore::spec_path(const std::string& id) const {
  return paths_.container_dir(id) + "/config.json";
}
std::string ContainerStore::log_path(const std::string& id) const {
  return paths_.container_dir(id) + "/ctr.log";
}
std::string ContainerStore::exit_file_path(const std::string& id) const {
  return paths_.run_container_dir(id) + "/exit";
}

FileLock ContainerStore::lock(const std::string& id) const {
  return FileLock::exclusive(paths_.locks_dir() + "/ctr-" + id + ".lock");
}

ContainerRecord ContainerStore::create(ContainerRecord record,
                                       const std::function<void(ContainerRecord&)>& complete) {
  fs::mkdir_p(paths_.containers_dir(), 0700);
  fs::mkdir_p(paths_.locks_dir(), 0700);
  FileLock names_lock = FileLock::exclusive(paths_.locks_dir() + "/names.lock");
  remove_incomplete_locked();
  std::vector<ContainerRecord> existing = list();
  auto name_taken = [&](const std::string& name) -> const ContainerRecord* {
    for (const auto& c : existing)
      if (c.name == name) return &c;
    return nullptr;
  };
  if (record.name.empty()) {
    do {
      record.name = generate_container_name();
    } while (name_taken(record.name));
  } else if (!valid_container_name(record.name)) {
    throw ExitCodeError("container name \"" + record.name +
                            "\" is invalid: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*",
                        125);
  } else if (const ContainerRecord* other = name_taken(record.name)) {
    throw ExitCodeError("creating container storage: the container name \"" + record.name +
                            "\" is already in use by " + other->id +
                            ". You have to remove that container to be able to reuse that "
                            "name: that name is already in use",
                        125);
  }
  do {
    record.id = random_hex(32);
  } while (fs::exists(paths_.container_dir(record.id)));
  if (record.created_ns == 0) record.created_ns = now_ns();
  try {
    fs::mkdir_p(paths_.container_dir(record.id), 0700);
    fs::mkdir_p(paths_.run_container_dir(record.id), 0700);
    if (complete) complete(record);
    save(record);
  } catch (...) {
    remove(record.id);
    throw;
  }
  return record;
}

void ContainerStore::remove_incomplete() const {
  if (!fs::exists(paths_.locks_dir())) return;
  FileLock names_lock = FileLock::exclusive(paths_.locks_dir() + "/names.lock");
  remove_incomplete_locked();
}

void ContainerStore::remove_incomplete_locked() const {
  // A container is created whole under the names lock, so a directory without a record seen
  // under it is what a create killed midway left.
  for (const std::string& dir : {paths_.containers_dir(), paths_.runroot + "/containers"}) {
    DIR* d = ::opendir(dir.c_str());
    if (!d) continue;
    std::vector<std::string> ids;
    while (struct dirent* entry = ::readdir(d))
      if (is_hex_id(entry->d_name)) ids.emplace_back(entry->d_name);
    ::closedir(d);
    for (const auto& id : ids)
      if (!fs::exists(record_path(id))) {
        LOG_WARN << "removing the remains of container " << id << ", whose creation was cut short";
        remove(id);
      }
  }
}

void ContainerStore::save(const ContainerRecord& record, bool durable) const {
  std::string path = record_path(record.id);
  std::string text = to_json(record).dump(2) + "\n";
  if (durable) {
    fs::write_file_atomic(path, text, 0600);
    return;
  }
  fs::write_file_replace(path, text, 0600);
}

std::optional<ContainerRecord> ContainerStore::try_load(const std::string& id) const {
  auto text = fs::read_file_if_exists(record_path(id));
  if (!text) return std::nullopt;
  return with_context("container " + id, [&] {
    try {
      return container_record_from_json(nlohmann::json::parse(*text));
    } catch (const nlohmann::json::exception& e) {
      throw Error(record_path(id) + ": " + e.what());
    }
  });
}

ContainerRecord ContainerStore::load(const std::string& id) const {
  auto record = try_load(id);
  if (!record)
    throw ExitCodeError("no container with name or ID \"" + id + "\" found: no such container",
                        125);
  return *record;
}

std::vector<ContainerRecord> ContainerStore::list() const {
  std::vector<ContainerRecord> out;
  DIR* dir = ::opendir(paths_.containers_dir().c_str());
  if (!dir) {
    if (errno == ENOENT) return out;
    throw_errno("opendir " + paths_.containers_dir());
  }
  std::vector<std::string> ids;
  while (struct dirent* entry = ::readdir(dir))
    if (is_hex_id(entry->d_name)) ids.emplace_back(entry->d_name);
  ::closedir(dir);
  for (const auto& id : ids)
    if (auto record = try_load(id)) out.push_back(std::move(*record));
  std::sort(out.begin(), out.end(), [](const ContainerRecord& a, const ContainerRecord& b) {
    return a.created_ns > b.created_ns;
  });
  return out;
}

std::string ContainerStore::resolve_id(const std::string& name_or_id) const {
  if (is_hex_id(name_or_id) && fs::exists(record_path(name_or_id))) return name_or_id;
  std::vector<ContainerRecord> all = list();
  for (const auto& c : all)
    if (c.name == name_or_id) return c.id;
  std::string match;
  bool hex = !name_or_id.empty() && name_or_id.size() <= 64 &&
             name_or_id.find_first_not_of("0123456789abcdef") == std::string::npos;
  if (hex) {
    for (const auto& c : all) {
      if (c.id.compare(0, name_or_id.size(), name_or_id) != 0) continue;
      if (!match.empty())
        throw ExitCodeError("more than one result for container ID " + name_or_id, 125);
      match = c.id;
    }
  }
  if (match.empty())
    throw ExitCodeError(
        "no container with name or ID \"" + name_or_id + "\" found: no such container", 125);
  return match;
}

void ContainerStore::remove(const std::string& id) const {
  fs::remove_all(paths_.run_container_dir(id));
  fs::remove_all(paths_.container_dir(id));
  ::unlink((paths_.locks_dir() + "/ctr-" + id + ".lock").c_str());
}

}  // namespace cryo::engine
