#include "engine/runtime/runtime.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cstring>
#include <map>

#include "common/error.h"
#include "common/fd_passing.h"
#include "common/fs.h"
#include "common/strings.h"
#include "engine/container/oci_spec.h"
#include "engine/runtime/rootfs_path.h"

namespace cryo::engine {

namespace {

struct MountFlags {
  unsigned long flags = 0;
  unsigned long propagation = 0;
  bool bind = false;
  std::string data;
};

MountFlags parse_mount_options(const nlohmann::json& options) {
  static const std::map<std::string, std::pair<bool, unsigned long>> kFlags = {
      {"ro", {true, MS_RDONLY}},
      {"rw", {false, MS_RDONLY}},
      {"nosuid", {true, MS_NOSUID}},
      {"suid", {false, MS_NOSUID}},
      {"nodev", {true, MS_NODEV}},
      {"dev", {false, MS_NODEV}},
      {"noexec", {true, MS_NOEXEC}},
      {"exec", {false, MS_NOEXEC}},
      {"strictatime", {true, MS_STRICTATIME}},
      {"relatime", {true, MS_RELATIME}},
      {"noatime", {true, MS_NOATIME}},
      {"sync", {true, MS_SYNCHRONOUS}},
  };
  static const std::map<std::string, unsigned long> kPropagation = {
      {"private", MS_PRIVATE},       {"rprivate", MS_PRIVATE | MS_REC},
      {"slave", MS_SLAVE},           {"rslave", MS_SLAVE | MS_REC},
      {"shared", MS_SHARED},         {"rshared", MS_SHARED | MS_REC},
      {"unbindable", MS_UNBINDABLE}, {"runbindable", MS_UNBINDABLE | MS_REC}};
  MountFlags out;
  for (const auto& item : options) {
    std::string opt = item.get<std::string>();
    if (opt == "bind") {
      out.bind = true;
      out.flags |= MS_BIND;
    } else if (opt == "rbind") {
      out.bind = true;
      out.flags |= MS_BIND | MS_REC;
    } else if (auto it = kFlags.find(opt); it != kFlags.end()) {
      if (it->second.first)
        out.flags |= it->second.second;
      else
        out.flags &= ~it->second.second;
    } else if (auto p = kPropagation.find(opt); p != kPropagation.end()) {
      out.propagation = p->second;
    } else {
      out.data += (out.data.empty() ? "" : ",") + opt;
    }
  }
  return out;
}

void do_mount(const std::string& source, const std::string& target, const char* type,
              unsigned long flags, const std::string& data) {
  if (::mount(source.c_str(), target.c_str(), type, flags, data.empty() ? nullptr : data.c_str()) <
      0)
    throw_errno("mount " + (type ? std::string(type) : std::string("bind")) + " " + source +
                " on " + target);
}

bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Every mount below lands on an fd resolved inside the container's root (rootfs_path.h), never on
// a path string joined to it: a symlink in the image cannot send a mount, or the creation of a
// missing mount point, outside the root.
void mount_one(const nlohmann::json& m, int root_fd) {
  std::string destination = m.at("destination").get<std::string>();
  std::string type = m.value("type", "");
  std::string source = m.value("source", "");
  MountFlags f = parse_mount_options(m.value("options", nlohmann::json::array()));
  if (type == "bind") {
    f.bind = true;
    f.flags |= MS_BIND;
  }
  MountPointKind kind =
      f.bind && !is_directory(source) ? MountPointKind::kFile : MountPointKind::kDirectory;
  with_context("mount " + destination, [&] {
    UniqueFd target = open_mount_point(root_fd, destination, kind);
    if (f.bind) {
      do_mount(source, fd_path(target.get()), nullptr, MS_BIND | (f.flags & MS_REC), "");
    } else {
      do_mount(source, fd_path(target.get()), type.c_str(), f.flags, f.data);
    }
    unsigned long remount = f.bind ? f.flags & ~(MS_BIND | MS_REC) : 0;
    if (remount == 0 && f.propagation == 0) return;
    // The fd still names the directory under the new mount; the mount's root is found anew.
    UniqueFd mounted = open_mount_point(root_fd, destination, kind);
    if (remount != 0)
      do_mount("", fd_path(mounted.get()), nullptr, MS_BIND | MS_REMOUNT | remount, "");
    if (f.propagation != 0) do_mount("", fd_path(mounted.get()), nullptr, f.propagation, "");
  });
}

// `dev_fd`: the container's fresh /dev tmpfs.
void make_devices(int dev_fd) {
  struct Device {
    const char* name;
    unsigned major, minor;
  };
  static constexpr Device kDevices[] = {{"null", 1, 3},   {"zero", 1, 5},    {"full", 1, 7},
                                        {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
  for (const auto& d : kDevices) {
    if (::mknodat(dev_fd, d.name, S_IFCHR | 0666, makedev(d.major, d.minor)) < 0)
      throw_errno(std::string("mknod /dev/") + d.name);
    if (::fchmodat(dev_fd, d.name, 0666, 0) < 0) throw_errno(std::string("chmod /dev/") + d.name);
  }
  static constexpr std::pair<const char*, const char*> kLinks[] = {
      {"/proc/self/fd", "fd"},       {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
      {"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"},         {"/proc/kcore", "core"}};
  for (const auto& [to, name] : kLinks) {
    if (::symlinkat(to, dev_fd, name) < 0 && errno != EEXIST)
      throw_errno(std::string("symlink /dev/") + name);
  }
}

// After pivot_root, `root_fd` is the container's "/". An absent path has nothing to hide.
void mask_path(int root_fd, const std::string& path) {
  UniqueFd target = open_in_root(root_fd, path, O_PATH);
  if (!target) {
    if (errno == ENOENT) return;
    throw_errno("openat2 " + path);
  }
  struct stat st;
  if (::fstat(target.get(), &st) < 0) throw_errno("fstat " + path);
  if (S_ISDIR(st.st_mode))
    do_mount("tmpfs", fd_path(target.get()), "tmpfs", MS_RDONLY, "");
  else
    do_mount("/dev/null", fd_path(target.get()), nullptr, MS_BIND, "");
}

void make_read_only(int root_fd, const std::string& path) {
  UniqueFd target = open_in_root(root_fd, path, O_PATH);
  if (!target) {
    if (errno == ENOENT) return;
    throw_errno("openat2 " + path);
  }
  std::string at = fd_path(target.get());
  do_mount(at, at, nullptr, MS_BIND | MS_REC, "");
  UniqueFd mounted = open_in_root(root_fd, path, O_PATH);
  if (!mounted) throw_errno("openat2 " + path + " after bind mount");
  do_mount("", fd_path(mounted.get()), nullptr,
           MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "");
}

// What exec_container_process sends back when it cannot exec.
struct ExecFailureHeader {
  int32_t exit_code;
  uint32_t message_size;
};

[[noreturn]] void report_failure_and_exit(int error_fd, int exit_code, const std::string& message) {
  ExecFailureHeader header{exit_code, static_cast<uint32_t>(message.size())};
  std::string buf(reinterpret_cast<const char*>(&header), sizeof header);
  buf += message;
  // One write: the pipe is large enough for any message we produce, so it arrives whole.
  (void)!::write(error_fd, buf.data(), std::min<size_t>(buf.size(), 4000));
  ::_exit(exit_code);
}

// Reads what the child reported: nullopt when the pipe closed without a message (exec happened).
std::optional<ExitCodeError> read_exec_failure(int fd) {
  std::string data;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  if (data.size() < sizeof(ExecFailureHeader)) {
    if (data.empty()) return std::nullopt;
    return ExitCodeError("container process failed before exec (truncated report)", 125);
  }
  ExecFailureHeader header;
  std::memcpy(&header, data.data(), sizeof header);
  return ExitCodeError(data.substr(sizeof header), header.exit_code);
}

std::string env_value(const nlohmann::json& env, const std::string& key) {
  for (const auto& item : env) {
    std::string kv = item.get<std::string>();
    if (kv.size() > key.size() && kv.compare(0, key.size(), key) == 0 && kv[key.size()] == '=')
      return kv.substr(key.size() + 1);
  }
  return "";
}

// execve of args[0] searched in the container's PATH; returns the errno to report.
int exec_in_path(const std::vector<std::string>& args, const std::vector<std::string>& env,
                 const std::string& path_var) {
  std::vector<char*> argv, envp;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  if (args[0].find('/') != std::string::npos) {
    ::execve(argv[0], argv.data(), envp.data());
    return errno;
  }
  int result = ENOENT;
  for (const auto& dir : split(path_var, ':')) {
    std::string candidate = (dir.empty() ? "." : dir) + "/" + args[0];
    ::execve(candidate.c_str(), argv.data(), envp.data());
    // A found but unrunnable file wins over later "not found"s, as in execvp.
    if (errno == EACCES)
      result = EACCES;
    else if (errno != ENOENT && errno != ENOTDIR)
      return errno;
  }
  return result;
}

std::vector<cap_value_t> capability_list(const nlohmann::json& caps_json, const char* key) {
  std::vector<cap_value_t> out;
  for (const auto& n : caps_json.value(key, nlohmann::json::array())) {
    cap_value_t cap;
    if (cap_from_name(n.get<std::string>().c_str(), &cap) < 0)
      throw Error("unknown capability " + n.get<std::string>());
    out.push_back(cap);
  }
  return out;
}

// Needs CAP_SETPCAP: runs before the user changes.
void drop_bounding_capabilities(const nlohmann::json& caps_json) {
  std::vector<cap_value_t> bounding = capability_list(caps_json, "bounding");
  for (cap_value_t cap = 0; cap <= static_cast<cap_value_t>(cap_max_bits()) - 1; ++cap) {
    if (std::find(bounding.begin(), bounding.end(), cap) != bounding.end()) continue;
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
      throw_errno("prctl PR_CAPBSET_DROP " + std::to_string(cap));
  }
}

// After the user change (PR_SET_KEEPCAPS kept the permitted set).
void apply_capabilities(const nlohmann::json& caps_json) {
  auto names = [&](const char* key) { return capability_list(caps_json, key); };
  cap_t caps = cap_init();
  if (!caps) throw_errno("cap_init");
  auto set = [&](const char* key, cap_flag_t flag) {
    auto list = names(key);
    if (!list.empty() &&
        cap_set_flag(caps, flag, static_cast<int>(list.size()), list.data(), CAP_SET) < 0)
      throw_errno("cap_set_flag");
  };
  try {
    set("effective", CAP_EFFECTIVE);
    set("permitted", CAP_PERMITTED);
    set("inheritable", CAP_INHERITABLE);
    if (cap_set_proc(caps) < 0) throw_errno("cap_set_proc");
  } catch (...) {
    cap_free(caps);
    throw;
  }
  cap_free(caps);
  for (const auto& n : caps_json.value("ambient", nlohmann::json::array())) {
    cap_value_t cap;
    if (cap_from_name(n.get<std::string>().c_str(), &cap) == 0)
      ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0);
  }
}

int rlimit_resource(const std::string& name) {
  static const std::map<std::string, int> kNames = {
      {"RLIMIT_NOFILE", RLIMIT_NOFILE},    {"RLIMIT_NPROC", RLIMIT_NPROC},
      {"RLIMIT_CORE", RLIMIT_CORE},        {"RLIMIT_STACK", RLIMIT_STACK},
      {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK},  {"RLIMIT_AS", RLIMIT_AS},
      {"RLIMIT_FSIZE", RLIMIT_FSIZE},      {"RLIMIT_DATA", RLIMIT_DATA},
      {"RLIMIT_CPU", RLIMIT_CPU},          {"RLIMIT_NICE", RLIMIT_NICE},
      {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},    {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
      {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE}};
  auto it = kNames.find(name);
  if (it == kNames.end()) throw Error("unknown rlimit " + name);
  return it->second;
}

void apply_rlimits(const nlohmann::json& rlimits) {
  for (const auto& r : rlimits) {
    int resource = rlimit_resource(r.at("type").get<std::string>());
    struct rlimit current;
    if (::getrlimit(resource, &current) < 0) throw_errno("getrlimit");
    // Without CAP_SYS_RESOURCE no limit can go above the current hard limit.
    struct rlimit wanted;
    wanted.rlim_max = std::min<rlim_t>(r.at("hard").get<rlim_t>(), current.rlim_max);
    wanted.rlim_cur = std::min<rlim_t>(r.at("soft").get<rlim_t>(), wanted.rlim_max);
    if (::setrlimit(resource, &wanted) < 0)
      throw_errno("setrlimit " + r.at("type").get<std::string>());
  }
}

// Opens a new pty in the container's devpts, sends the master to the starter and makes the slave
// the controlling terminal and standard streams.
void setup_terminal(int console_socket) {
  UniqueFd master(::open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!master) throw_errno("open /dev/ptmx");
  if (::unlockpt(master.get()) < 0) throw_errno("unlockpt");
  UniqueFd slave(::ioctl(master.get(), TIOCGPTPEER, O_RDWR | O_NOCTTY));
  if (!slave) throw_errno("ioctl TIOCGPTPEER");
  send_fd(console_socket, master.get(), "pty master");
  if (::ioctl(slave.get(), TIOCSCTTY, 0) < 0) throw_errno("ioctl TIOCSCTTY");
  for (int fd = 0; fd < 3; ++fd)
    if (::dup2(slave.get(), fd) < 0) throw_errno("dup2 pty slave");
}

void setup_stdio(const ProcessStdio& stdio) {
  int fds[3] = {stdio.stdin_fd, stdio.stdout_fd, stdio.stderr_fd};
  UniqueFd null_fd(::open("/dev/null", O_RDWR | O_CLOEXEC));
  for (int target = 0; target < 3; ++target) {
    int source = fds[target] >= 0 ? fds[target] : null_fd.get();
    if (source < 0) throw_errno("open /dev/null");
    if (source == target) {
      ::fcntl(target, F_SETFD, 0);
    } else if (::dup2(source, target) < 0) {
      throw_errno("dup2 stdio");
    }
  }
}

}  // namespace

int sandbox_clone_flags(const nlohmann::json& spec) {
  int flags = 0;
  for (const auto& ns : spec.at("linux").at("namespaces")) {
    std::string type = ns.at("type").get<std::string>();
    bool has_path = ns.contains("path") && !ns.at("path").get<std::string>().empty();
    if (has_path) continue;
    if (type == "pid")
      flags |= CLONE_NEWPID;
    else if (type == "mount")
      flags |= CLONE_NEWNS;
    else if (type == "uts")
      flags |= CLONE_NEWUTS;
    else if (type == "ipc")
      flags |= CLONE_NEWIPC;
    else if (type == "network")
      flags |= CLONE_NEWNET;
  }
  return flags;
}

void enter_new_time_namespace_for_children() {
  if (::unshare(CLONE_NEWTIME) < 0) throw_errno("unshare CLONE_NEWTIME");
}

void prepare_sandbox(const nlohmann::json& spec) {
  for (const auto& ns : spec.at("linux").at("namespaces")) {
    if (ns.at("type") != "network" || !ns.contains("path")) continue;
    std::string path = ns.at("path").get<std::string>();
    if (path.empty()) continue;
    UniqueFd netns = fs::open_or_throw(path, O_RDONLY);
    if (::setns(netns.get(), CLONE_NEWNET) < 0) throw_errno("setns network namespace " + path);
  }
  // Nothing mounted here may propagate back to the host.
  do_mount("", "/", nullptr, MS_REC | MS_PRIVATE, "");

  const auto& annotations = spec.at("annotations");
  std::string rootfs = spec.at("root").at("path").get<std::string>();
  std::string overlay = "lowerdir=" + annotations.at(kAnnotationLowerDirs).get<std::string>() +
                        ",upperdir=" + annotations.at(kAnnotationUpperDir).get<std::string>() +
                        ",workdir=" + annotations.at(kAnnotationWorkDir).get<std::string>();
  with_context("mounting the root file system",
               [&] { do_mount("overlay", rootfs, "overlay", 0, overlay); });

  UniqueFd root = fs::open_or_throw(rootfs, O_PATH | O_DIRECTORY);
  for (const auto& m : spec.at("mounts")) {
    mount_one(m, root.get());
    if (m.at("destination") == "/dev")
      make_devices(open_mount_point(root.get(), "/dev", MountPointKind::kDirectory).get());
  }
  root.reset();

  if (::chdir(rootfs.c_str()) < 0) throw_errno("chdir " + rootfs);
  if (::syscall(SYS_pivot_root, ".", ".") < 0) throw_errno("pivot_root " + rootfs);
  // The old root is stacked under the new one: detach it.
  if (::umount2(".", MNT_DETACH) < 0) throw_errno("umount old root");
  if (::chdir("/") < 0) throw_errno("chdir /");

  UniqueFd new_root = fs::open_or_throw("/", O_PATH | O_DIRECTORY);
  for (const auto& path : spec.at("linux").value("maskedPaths", nlohmann::json::array()))
    with_context("masking " + path.get<std::string>(),
                 [&] { mask_path(new_root.get(), path.get<std::string>()); });
  for (const auto& path : spec.at("linux").value("readonlyPaths", nlohmann::json::array()))
    with_context("making " + path.get<std::string>() + " read-only",
                 [&] { make_read_only(new_root.get(), path.get<std::string>()); });
  new_root.reset();
  if (spec.at("root").value("readonly", false))
    do_mount("", "/", nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, "");

  std::string hostname = spec.value("hostname", "");
  if (!hostname.empty() && ::sethostname(hostname.data(), hostname.size()) < 0)
    throw_errno("sethostname " + hostname);
}

void enter_sandbox(const nlohmann::json& spec) {
  // The cgroup namespace's root is the cgroup the process is in now: the container's.
  if (::unshare(CLONE_NEWCGROUP) < 0) throw_errno("unshare CLONE_NEWCGROUP");
  prepare_sandbox(spec);
}

void remount_proc(const nlohmann::json& spec) {
  if (::umount2("/proc", MNT_DETACH) < 0) throw_errno("umount /proc");
  do_mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "");
  // Called after pivot_root: "/" is the container's root.
  UniqueFd root = fs::open_or_throw("/", O_PATH | O_DIRECTORY);
  const nlohmann::json& linux_spec = spec.at("linux");
  for (const auto& item : linux_spec.value("maskedPaths", nlohmann::json::array())) {
    std::string path = item.get<std::string>();
    if (starts_with(path, "/proc/"))
      with_context("masking " + path, [&] { mask_path(root.get(), path); });
  }
  for (const auto& item : linux_spec.value("readonlyPaths", nlohmann::json::array())) {
    std::string path = item.get<std::string>();
    if (starts_with(path, "/proc/"))
      with_context("making " + path + " read-only", [&] { make_read_only(root.get(), path); });
  }
}

void exec_container_process(const nlohmann::json& process, const ProcessStdio& stdio, int error_fd,
                            int console_socket) {
  std::vector<std::string> args, env;
  try {
    args = process.at("args").get<std::vector<std::string>>();
    env = process.value("env", std::vector<std::string>{});
    if (args.empty()) throw ExitCodeError("no command specified", 125);
    if (::setsid() < 0) throw_errno("setsid");
    if (process.value("terminal", false))
      setup_terminal(console_socket);
    else
      setup_stdio(stdio);
    if (console_socket >= 0) ::close(console_socket);
    apply_rlimits(process.value("rlimits", nlohmann::json::array()));

    std::string cwd = process.value("cwd", "/");
    if (!fs::exists(cwd)) fs::mkdir_p(cwd);
    const auto& user = process.at("user");
    uid_t uid = user.value("uid", 0u);
    gid_t gid = user.value("gid", 0u);
    std::vector<gid_t> groups = user.value("additionalGids", std::vector<gid_t>{});
    const auto& capabilities = process.value("capabilities", nlohmann::json::object());
    drop_bounding_capabilities(capabilities);
    if (::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) throw_errno("prctl PR_SET_KEEPCAPS");
    if (::setgroups(groups.size(), groups.data()) < 0) throw_errno("setgroups");
    if (::setresgid(gid, gid, gid) < 0) throw_errno("setresgid " + std::to_string(gid));
    if (::setresuid(uid, uid, uid) < 0) throw_errno("setresuid " + std::to_string(uid));
    apply_capabilities(capabilities);
    if (::chdir(cwd.c_str()) < 0) throw_errno("chdir " + cwd);
    ::umask(022);

    // The signal state the container starts with is the default one, whatever ours is.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig = 1; sig < NSIG; ++sig)
      if (sig != SIGKILL && sig != SIGSTOP) ::signal(sig, SIG_DFL);
  } catch (const ExitCodeError& e) {
    report_failure_and_exit(error_fd, e.exit_code(), e.what());
  } catch (const std::exception& e) {
    report_failure_and_exit(error_fd, 125, e.what());
  }

  // Only the standard streams go to the container (the error pipe is close-on-exec already).
  ::syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
  std::string path_var = env_value(nlohmann::json(env), "PATH");
  if (path_var.empty()) path_var = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  int err = exec_in_path(args, env, path_var);
  if (err == ENOENT) {
    std::string what = args[0].find('/') != std::string::npos
                           ? "executable file `" + args[0] + "` not found"
                           : "executable file `" + args[0] + "` not found in $PATH";
    report_failure_and_exit(error_fd, 127,
                            what +
                                ": No such file or directory: OCI runtime attempted to "
                                "invoke a command that was not found");
  }
  if (err == EACCES || err == EPERM || err == ENOEXEC || err == EISDIR)
    report_failure_and_exit(error_fd, 126,
                            args[0] + ": " + std::strerror(err) + ": OCI permission denied");
  report_failure_and_exit(error_fd, 125, "exec " + args[0] + ": " + std::strerror(err));
}

namespace {

// The pipe a starting process reports its exec failure through (read_exec_failure) and, with a
// terminal, the socket pair its console master comes back through (receive_fd).
struct StartChannels {
  UniqueFd error_read, error_write;
  UniqueFd console_parent, console_child;
};

StartChannels open_start_channels(bool terminal) {
  StartChannels channels;
  int error_pipe[2];
  if (::pipe2(error_pipe, O_CLOEXEC) < 0) throw_errno("pipe2");
  channels.error_read.reset(error_pipe[0]);
  channels.error_write.reset(error_pipe[1]);
  if (terminal) {
    int console[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, console) < 0)
      throw_errno("socketpair");
    channels.console_parent.reset(console[0]);
    channels.console_child.reset(console[1]);
  }
  return channels;
}

}  // namespace

SpawnedProcess spawn_container_init(const nlohmann::json& spec, const ContainerCgroup& cgroup,
                                    const ProcessStdio& stdio) {
  const nlohmann::json& process = spec.at("process");
  bool terminal = process.value("terminal", false);
  int sync_pipe[2];
  if (::pipe2(sync_pipe, O_CLOEXEC) < 0) throw_errno("pipe2");
  UniqueFd sync_read(sync_pipe[0]), sync_write(sync_pipe[1]);
  auto [error_read, error_write, console_parent, console_child] = open_start_channels(terminal);

  int pidfd = -1;
  struct clone_args args = {};
  args.flags = static_cast<uint64_t>(sandbox_clone_flags(spec)) | CLONE_PIDFD;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  long pid = ::syscall(SYS_clone3, &args, sizeof args);
  if (pid < 0) throw_errno("clone3 container init");
  if (pid == 0) {
    sync_write.reset();
    error_read.reset();
    console_parent.reset();
    try {
      char go;
      if (::read(sync_read.get(), &go, 1) != 1) ::_exit(125);  // the starter gave up
      enter_sandbox(spec);
    } catch (const std::exception& e) {
      report_failure_and_exit(error_write.get(), 125, e.what());
    }
    exec_container_process(process, stdio, error_write.get(), console_child.get());
  }

  SpawnedProcess out;
  out.pid = static_cast<pid_t>(pid);
  out.pidfd.reset(pidfd);
  sync_read.reset();
  error_write.reset();
  console_child.reset();
  auto reap = [&] {
    ::kill(out.pid, SIGKILL);
    while (::waitpid(out.pid, nullptr, 0) < 0 && errno == EINTR) {
    }
  };
  try {
    cgroup.add_process(out.pid);
  } catch (...) {
    reap();
    throw;
  }
  if (::write(sync_write.get(), "g", 1) != 1) {
    int err = errno;
    reap();
    throw_errno("starting container init", err);
  }
  sync_write.reset();
  if (auto failure = read_exec_failure(error_read.get())) {
    reap();
    throw *failure;
  }
  if (terminal) {
    try {
      out.console_master = receive_fd(console_parent.get(), "pty master");
    } catch (...) {
      reap();
      throw;
    }
  }
  return out;
}

SpawnedProcess spawn_exec_process(pid_t init_pid, const std::vector<std::string>& cgroup_dirs,
                                  const nlohmann::json& process, const ProcessStdio& stdio) {
  bool terminal = process.value("terminal", false);
  UniqueFd init_pidfd(static_cast<int>(::syscall(SYS_pidfd_open, init_pid, 0)));
  if (!init_pidfd) throw_errno("pidfd_open container init " + std::to_string(init_pid));
  auto [error_read, error_write, console_parent, console_child] = open_start_channels(terminal);

  int pidfd = -1;
  struct clone_args args = {};
  args.flags = CLONE_PIDFD;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  long pid = ::syscall(SYS_clone3, &args, sizeof args);
  if (pid < 0) throw_errno("clone3 exec helper");
  if (pid == 0) {
    error_read.reset();
    console_parent.reset();
    pid_t inner;
    try {
      for (const auto& dir : cgroup_dirs) {
        std::string procs = dir + "/cgroup.procs";
        std::string self = std::to_string(::getpid());
        UniqueFd fd = fs::open_or_throw(procs, O_WRONLY);
        if (::write(fd.get(), self.data(), self.size()) < 0) throw_errno("write " + procs);
      }
      int ns_flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWPID |
                     CLONE_NEWCGROUP | CLONE_NEWTIME;
      if (::setns(init_pidfd.get(), ns_flags) < 0)
        throw_errno("setns into the namespaces of pid " + std::to_string(init_pid));
      // Joining a PID namespace applies to children only.
      inner = ::fork();
      if (inner < 0) throw_errno("fork");
    } catch (const std::exception& e) {
      report_failure_and_exit(error_write.get(), 125, e.what());
    }
    if (inner == 0) exec_container_process(process, stdio, error_write.get(), console_child.get());
    error_write.reset();
    console_child.reset();
    // Signals for the helper are meant for the process.
    for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2}) {
      ::signal(sig, SIG_IGN);
    }
    int status = 0;
    while (::waitpid(inner, &status, 0) < 0) {
      if (errno != EINTR) ::_exit(125);
    }
    ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  }

  SpawnedProcess out;
  out.pid = static_cast<pid_t>(pid);
  out.pidfd.reset(pidfd);
  error_write.reset();
  console_child.reset();
  if (auto failure = read_exec_failure(error_read.get())) {
    while (::waitpid(out.pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    throw *failure;
  }
  if (terminal) out.console_master = receive_fd(console_parent.get(), "pty master");
  return out;
}

}  // namespace cryo::engine
