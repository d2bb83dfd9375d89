#include "engine/container/oci_spec.h"

#include <sys/resource.h>

#include "common/error.h"
#include "common/fs.h"
#include "common/strings.h"

namespace cryo::engine {

namespace {

// Podman asks for 1048576 open files; without CAP_SYS_RESOURCE nothing can exceed the current
// hard limit, so the spec asks for at most that.
constexpr rlim_t kWantedNofile = 1048576;

std::optional<std::string> read_from_layers(const std::string& path,
                                            const std::vector<std::string>& layer_dirs) {
  for (const auto& dir : layer_dirs)
    if (auto text = fs::read_file_if_exists(dir + path)) return text;
  return std::nullopt;
}

bool all_digits(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

}  // namespace

const std::vector<std::string>& default_capabilities() {
  static const std::vector<std::string> caps = {
      "CAP_CHOWN",   "CAP_DAC_OVERRIDE",     "CAP_FOWNER",    "CAP_FSETID",
      "CAP_KILL",    "CAP_NET_BIND_SERVICE", "CAP_SETFCAP",   "CAP_SETGID",
      "CAP_SETPCAP", "CAP_SETUID",           "CAP_SYS_CHROOT"};
  return caps;
}

const std::vector<std::string>& default_masked_paths() {
  static const std::vector<std::string> paths = {
      "/proc/acpi",       "/proc/kcore",       "/proc/keys",        "/proc/latency_stats",
      "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
      "/sys/firmware",    "/sys/fs/selinux",   "/sys/dev/block",    "/proc/interrupts"};
  return paths;
}

const std::vector<std::string>& default_readonly_paths() {
  static const std::vector<std::string> paths = {
      "/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"};
  return paths;
}

ResolvedUser resolve_user(const std::string& user, const std::vector<std::string>& layer_dirs) {
  ResolvedUser out;
  size_t colon = user.find(':');
  std::string user_part = user.substr(0, colon);
  std::string group_part = colon == std::string::npos ? "" : user.substr(colon + 1);
  if (user_part.empty()) user_part.push_back('0');
  std::string passwd = read_from_layers("/etc/passwd", layer_dirs).value_or("");
  std::string group = read_from_layers("/etc/group", layer_dirs).value_or("");
  bool found = false;
  std::string user_name;
  for (const auto& line : split(passwd, '\n')) {
    auto f = split(line, ':');
    if (f.size() < 7) continue;
    if (f[0] == user_part || (all_digits(user_part) && f[2] == user_part)) {
      out.uid = static_cast<uid_t>(std::stoul(f[2]));
      out.gid = static_cast<gid_t>(std::stoul(f[3]));
      out.home = f[5].empty() ? "/" : f[5];
      user_name = f[0];
      found = true;
      break;
    }
  }
  if (!found) {
    if (!all_digits(user_part))
      throw ExitCodeError(
          "unable to find user " + user_part + ": no matching entries in passwd file", 125);
    out.uid = static_cast<uid_t>(std::stoul(user_part));
    out.gid = out.uid == 0 ? 0 : out.uid;
  }
  if (!group_part.empty()) {
    if (all_digits(group_part)) {
      out.gid = static_cast<gid_t>(std::stoul(group_part));
    } else {
      bool group_found = false;
      for (const auto& line : split(group, '\n')) {
        auto f = split(line, ':');
        if (f.size() >= 3 && f[0] == group_part) {
          out.gid = static_cast<gid_t>(std::stoul(f[2]));
          group_found = true;
          break;
        }
      }
      if (!group_found)
        throw ExitCodeError(
            "unable to find group " + group_part + ": no matching entries in group file", 125);
    }
  }
  // Supplementary groups: every group listing the user by name.
  if (!user_name.empty()) {
    for (const auto& line : split(group, '\n')) {
      auto f = split(line, ':');
      if (f.size() < 4 || f[3].empty()) continue;
      for (const auto& member : split(f[3], ','))
        if (member == user_name) {
          gid_t gid = static_cast<gid_t>(std::stoul(f[2]));
          if (gid != out.gid) out.additional_gids.push_back(gid);
        }
    }
  }
  return out;
}

nlohmann::json make_oci_spec(const ContainerRecord& record, const SpecInputs& in) {
  const ContainerConfig& c = record.config;
  struct rlimit nofile;
  if (::getrlimit(RLIMIT_NOFILE, &nofile) < 0) throw_errno("getrlimit RLIMIT_NOFILE");
  rlim_t nofile_limit = std::min<rlim_t>(kWantedNofile, nofile.rlim_max);
  struct rlimit nproc;
  if (::getrlimit(RLIMIT_NPROC, &nproc) < 0) throw_errno("getrlimit RLIMIT_NPROC");

  nlohmann::json caps = default_capabilities();
  nlohmann::json process = {
      {"terminal", c.tty},
      {"user",
       {{"uid", in.user.uid}, {"gid", in.user.gid}, {"additionalGids", in.user.additional_gids}}},
      {"args", record.full_command()},
      {"env", c.env},
      {"cwd", c.working_dir.empty() ? "/" : c.working_dir},
      {"capabilities",
       {{"bounding", caps},
        {"effective", caps},
        {"permitted", caps},
        {"inheritable", nlohmann::json::array()},
        {"ambient", nlohmann::json::array()}}},
      {"rlimits",
       {{{"type", "RLIMIT_NOFILE"}, {"hard", nofile_limit}, {"soft", nofile_limit}},
        {{"type", "RLIMIT_NPROC"}, {"hard", nproc.rlim_max}, {"soft", nproc.rlim_cur}}}},
      {"oomScoreAdj", 0},
  };

  nlohmann::json mounts = {
      {{"destination", "/proc"},
       {"type", "proc"},
       {"source", "proc"},
       {"options", {"nosuid", "noexec", "nodev"}}},
      {{"destination", "/dev"},
       {"type", "tmpfs"},
       {"source", "tmpfs"},
       {"options", {"nosuid", "strictatime", "mode=755", "size=65536k"}}},
      {{"destination", "/dev/pts"},
       {"type", "devpts"},
       {"source", "devpts"},
       {"options", {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}}},
      {{"destination", "/dev/mqueue"},
       {"type", "mqueue"},
       {"source", "mqueue"},
       {"options", {"nosuid", "noexec", "nodev"}}},
      {{"destination", "/sys"},
       {"type", "sysfs"},
       {"source", "sysfs"},
       {"options", {"nosuid", "noexec", "nodev", "ro"}}},
      {{"destination", "/dev/shm"},
       {"type", "tmpfs"},
       {"source", "shm"},
       {"options", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}}},
  };
  auto add_bind = [&](const std::string& source, const std::string& destination, bool ro) {
    nlohmann::json options = {"rbind", "rprivate"};
    if (ro) options.push_back("ro");
    mounts.push_back(
        {{"destination", destination}, {"type", "bind"}, {"source", source}, {"options", options}});
  };
  add_bind(in.hosts_file, "/etc/hosts", false);
  add_bind(in.resolv_file, "/etc/resolv.conf", false);
  add_bind(in.hostname_file, "/etc/hostname", false);
  for (const auto& m : c.mounts) add_bind(m.source, m.destination, m.read_only);

  nlohmann::json namespaces = nlohmann::json::array();
  namespaces.push_back({{"type", "pid"}});
  if (!in.netns_path.empty())
    namespaces.push_back({{"type", "network"}, {"path", in.netns_path}});
  else if (in.new_netns_without_path)
    namespaces.push_back({{"type", "network"}});
  namespaces.push_back({{"type", "ipc"}});
  namespaces.push_back({{"type", "uts"}});
  namespaces.push_back({{"type", "mount"}});
  namespaces.push_back({{"type", "cgroup"}});
  namespaces.push_back({{"type", "time"}});

  nlohmann::json resources = nlohmann::json::object();
  if (c.memory_limit > 0) resources["memory"] = {{"limit", c.memory_limit}};
  if (c.pids_limit > 0) resources["pids"] = {{"limit", c.pids_limit}};

  return {
      {"ociVersion", "1.0.2-dev"},
      {"process", process},
      {"root", {{"path", in.rootfs_dir}, {"readonly", false}}},
      {"hostname", c.hostname},
      {"mounts", mounts},
      {"annotations",
       {{kAnnotationLowerDirs, join(in.lower_dirs, ":")},
        {kAnnotationUpperDir, in.upper_dir},
        {kAnnotationWorkDir, in.work_dir},
        {"io.container.manager", "cryo"},
        {"org.opencontainers.image.stopSignal", std::to_string(c.stop_signal)}}},
      {"linux",
       {{"namespaces", namespaces},
        {"cgroupsPath", in.cgroups_path.empty() ? "cryo/" + record.id : in.cgroups_path},
        {"resources", resources},
        {"maskedPaths", default_masked_paths()},
        {"readonlyPaths", default_readonly_paths()}}},
  };
}

}  // namespace cryo::engine
