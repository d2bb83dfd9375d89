#include "engine/runtime/cgroup.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/strings.h"

namespace cryo::engine {

namespace {

constexpr const char* kCgroupRoot = "/sys/fs/cgroup";
// The parent of the default store's container cgroups (Podman's are under libpod_parent).
constexpr const char* kDefaultParent = "cryo";
constexpr const char* kDefaultRunroot = "/run/cryo";
constexpr const char* kV1Controllers[] = {"memory", "pids", "cpu", "freezer"};

void write_value(const std::string& path, const std::string& value) {
  UniqueFd fd = fs::open_or_throw(path, O_WRONLY);
  if (::write(fd.get(), value.data(), value.size()) < 0) throw_errno("write " + path);
}

std::string trimmed(const std::string& path) {
  return std::string(trim(fs::read_file(path)));
}

void make_dir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) < 0 && errno != EEXIST) throw_errno("mkdir " + path);
}

// Enables the controllers in `parent`'s subtree (pure cgroup2): only those it offers.
void enable_v2_controllers(const std::string& parent) {
  std::string available = trimmed(parent + "/cgroup.controllers");
  std::string wanted;
  for (const char* ctl : {"memory", "pids", "cpu"})
    for (const auto& have : split(available, ' '))
      if (have == ctl) wanted += std::string(wanted.empty() ? "+" : " +") + ctl;
  if (!wanted.empty()) write_value(parent + "/cgroup.subtree_control", wanted);
}

std::vector<pid_t> procs_of(const std::string& dir) {
  std::vector<pid_t> pids;
  auto text = fs::read_file_if_exists(dir + "/cgroup.procs");
  if (!text) return pids;
  for (const auto& line : split(*text, '\n'))
    if (!trim(line).empty()) pids.push_back(std::stoi(line));
  return pids;
}

}  // namespace

std::string container_cgroup_name(const StorePaths& paths, const std::string& container_id) {
  std::string runroot = std::filesystem::absolute(paths.runroot).lexically_normal().string();
  while (runroot.size() > 1 && runroot.back() == '/') runroot.pop_back();
  if (runroot == kDefaultRunroot) return std::string(kDefaultParent) + "/" + container_id;
  // XXH3, not SHA-256: a name, not a security boundary, and no libcrypto start in every monitor.
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016llx",
                static_cast<unsigned long long>(XXH3_64bits(runroot.data(), runroot.size())));
  return std::string(kDefaultParent) + "-" + std::string(hash, 12) + "/" + container_id;
}

bool ContainerCgroup::host_is_pure_cgroup2() {
  return fs::exists(std::string(kCgroupRoot) + "/cgroup.controllers");
}

ContainerCgroup ContainerCgroup::existing(const std::string& cgroup_name) {
  ContainerCgroup cg;
  if (host_is_pure_cgroup2()) {
    cg.dirs_.push_back(std::string(kCgroupRoot) + "/" + cgroup_name);
    cg.cgroup2_dir_ = cg.dirs_.back();
  } else {
    if (fs::exists(std::string(kCgroupRoot) + "/unified/cgroup.procs")) {
      cg.dirs_.push_back(std::string(kCgroupRoot) + "/unified/" + cgroup_name);
      cg.cgroup2_dir_ = cg.dirs_.back();
    }
    for (const char* ctl : kV1Controllers) {
      std::string base = std::string(kCgroupRoot) + "/" + ctl;
      if (!fs::exists(base + "/cgroup.procs")) continue;
      cg.dirs_.push_back(base + "/" + cgroup_name);
      if (std::string(ctl) == "freezer") cg.v1_freezer_dir_ = cg.dirs_.back();
    }
  }
  cg.released_ = true;  // a handle on something that may exist: removal only when asked
  return cg;
}

std::string ContainerCgroup::freezer_path() const {
  bool cgroup2_freezes = !cgroup2_dir_.empty() && fs::exists(cgroup2_dir_ + "/cgroup.freeze");
  return cgroup2_freezes || v1_freezer_dir_.empty() ? cgroup2_dir_ : v1_freezer_dir_;
}

ContainerCgroup ContainerCgroup::create(const std::string& cgroup_name,
                                        const CgroupLimits& limits) {
  ContainerCgroup cg = existing(cgroup_name);
  cg.released_ = false;
  with_context("creating cgroup " + cgroup_name, [&] {
    bool v2 = host_is_pure_cgroup2();
    if (v2) enable_v2_controllers(kCgroupRoot);
    for (const auto& dir : cg.dirs_) {
      // Another engine of the same store may remove the (empty) parent in between: once more.
      for (int attempt = 0;; ++attempt) {
        std::string parent = dir.substr(0, dir.rfind('/'));
        make_dir(parent);
        if (v2) enable_v2_controllers(parent);
        if (::mkdir(dir.c_str(), 0755) == 0 || errno == EEXIST) break;
        if (errno != ENOENT || attempt == 2) throw_errno("mkdir " + dir);
      }
    }
    for (const auto& dir : cg.dirs_) {
      bool is_memory = v2 || dir.find("/memory/") != std::string::npos;
      bool is_pids = v2 || dir.find("/pids/") != std::string::npos;
      if (limits.memory_bytes > 0 && is_memory)
        write_value(dir + (v2 ? "/memory.max" : "/memory.limit_in_bytes"),
                    std::to_string(limits.memory_bytes));
      if (limits.pids_max > 0 && is_pids)
        write_value(dir + "/pids.max", std::to_string(limits.pids_max));
    }
  });
  return cg;
}

ContainerCgroup::ContainerCgroup(ContainerCgroup&& other) noexcept
    : dirs_(std::move(other.dirs_)),
      cgroup2_dir_(std::move(other.cgroup2_dir_)),
      v1_freezer_dir_(std::move(other.v1_freezer_dir_)),
      released_(other.released_) {
  other.released_ = true;
}

ContainerCgroup& ContainerCgroup::operator=(ContainerCgroup&& other) noexcept {
  if (this != &other) {
    if (!released_) {
      try {
        remove();
      } catch (const std::exception& e) {
        LOG_WARN << e.what();
      }
    }
    dirs_ = std::move(other.dirs_);
    cgroup2_dir_ = std::move(other.cgroup2_dir_);
    v1_freezer_dir_ = std::move(other.v1_freezer_dir_);
    released_ = other.released_;
    other.released_ = true;
  }
  return *this;
}

ContainerCgroup::~ContainerCgroup() {
  if (released_) return;
  try {
    remove();
  } catch (const std::exception& e) {
    LOG_WARN << "removing cgroup: " << e.what();
  }
}

void ContainerCgroup::add_process(pid_t pid) const {
  for (const auto& dir : dirs_)
    with_context("moving pid " + std::to_string(pid) + " into cgroup " + dir,
                 [&] { write_value(dir + "/cgroup.procs", std::to_string(pid)); });
}

void ContainerCgroup::thaw() const {
  if (!v1_freezer_dir_.empty() && fs::exists(v1_freezer_dir_ + "/freezer.state"))
    write_value(v1_freezer_dir_ + "/freezer.state", "THAWED");
  if (!cgroup2_dir_.empty() && fs::exists(cgroup2_dir_ + "/cgroup.freeze"))
    write_value(cgroup2_dir_ + "/cgroup.freeze", "0");
}

void ContainerCgroup::remove() {
  released_ = true;
  // A frozen cgroup's tasks cannot die: thaw first.
  thaw();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (const auto& dir : dirs_) {
    for (;;) {
      if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) break;
      if (errno != EBUSY) throw_errno("rmdir " + dir);
      // Still populated: the container's processes are ours to end.
      for (pid_t pid : procs_of(dir)) ::kill(pid, SIGKILL);
      if (std::chrono::steady_clock::now() > deadline)
        throw Error("rmdir " + dir + ": cgroup still busy after 10 s");
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    // An engine store's own parent goes with its last container (the default one stays, as
    // Podman's libpod_parent does); a parent still in use is EBUSY, one removed meanwhile ENOENT.
    std::string parent = dir.substr(0, dir.rfind('/'));
    if (starts_with(parent.substr(parent.rfind('/') + 1), std::string(kDefaultParent) + "-"))
      ::rmdir(parent.c_str());
  }
}

FrozenCgroup::FrozenCgroup(std::string path) : path_(std::move(path)) {
  v1_ = fs::exists(path_ + "/freezer.state");
  with_context("freezing cgroup " + path_, [&] {
    if (v1_) {
      write_value(path_ + "/freezer.state", "FROZEN");
      frozen_ = true;
      // FREEZING until every task has stopped.
      for (;;) {
        std::string state = trimmed(path_ + "/freezer.state");
        if (state == "FROZEN") break;
        write_value(path_ + "/freezer.state", "FROZEN");
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    } else {
      write_value(path_ + "/cgroup.freeze", "1");
      frozen_ = true;
      for (;;) {
        std::string events = fs::read_file(path_ + "/cgroup.events");
        if (events.find("frozen 1") != std::string::npos) break;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    }
  });
}

void FrozenCgroup::thaw() {
  if (!frozen_) return;
  if (v1_)
    write_value(path_ + "/freezer.state", "THAWED");
  else
    write_value(path_ + "/cgroup.freeze", "0");
  frozen_ = false;
}

FrozenCgroup::~FrozenCgroup() {
  if (committed_) return;
  try {
    thaw();
  } catch (const std::exception& e) {
    LOG_ERROR << "thawing cgroup " << path_ << ": " << e.what();
  }
}

}  // namespace cryo::engine
