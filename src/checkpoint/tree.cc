#include "checkpoint/tree.h"

#include <dirent.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "common/error.h"
#include "common/fault_injection.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/strings.h"

namespace cryo::ckpt {

ProcessInfo read_process_info(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/stat";
  std::string stat = fs::read_file(path);
  // comm may contain spaces and parentheses: it ends at the last ')'.
  size_t open = stat.find('(');
  size_t close = stat.rfind(')');
  if (open == std::string::npos || close == std::string::npos)
    throw Error("unexpected format of " + path);
  ProcessInfo info;
  info.pid = pid;
  info.comm = stat.substr(open + 1, close - open - 1);
  std::vector<std::string> fields;
  std::istringstream in(stat.substr(close + 2));
  std::string field;
  while (in >> field) fields.push_back(field);
  // fields[0] is field 3 of proc(5) (state).
  if (fields.size() < 50) throw Error("unexpected format of " + path);
  info.zombie = fields[0] == "Z";
  info.ppid = std::stoi(fields[1]);
  info.pgid = std::stoi(fields[2]);
  info.sid = std::stoi(fields[3]);
  info.exit_code = std::stoi(fields[49]);  // field 52
  return info;
}

std::vector<pid_t> list_threads(pid_t pid) {
  std::vector<pid_t> tids;
  std::string path = "/proc/" + std::to_string(pid) + "/task";
  DIR* dir = ::opendir(path.c_str());
  if (!dir) throw_errno("opendir " + path);
  while (dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    tids.push_back(static_cast<pid_t>(std::stol(entry->d_name)));
  }
  ::closedir(dir);
  std::sort(tids.begin(), tids.end());
  auto leader = std::find(tids.begin(), tids.end(), pid);
  if (leader != tids.end()) std::rotate(tids.begin(), leader, leader + 1);
  return tids;
}

std::vector<pid_t> list_children(pid_t pid) {
  std::vector<pid_t> children;
  for (pid_t tid : list_threads(pid)) {
    auto text = fs::read_file_if_exists("/proc/" + std::to_string(pid) + "/task/" +
                                        std::to_string(tid) + "/children");
    if (!text) continue;
    std::istringstream in(*text);
    pid_t child;
    while (in >> child) children.push_back(child);
  }
  std::sort(children.begin(), children.end());
  return children;
}

namespace {

// The freezer cgroup, frozen for the lifetime of this object.
class CgroupFreeze {
 public:
  explicit CgroupFreeze(std::string dir) : dir_(std::move(dir)) {
    v1_ = fs::exists(dir_ + "/freezer.state");
    if (!v1_ && !fs::exists(dir_ + "/cgroup.freeze"))
      throw Error("freezer cgroup " + dir_ + " has neither freezer.state nor cgroup.freeze");
    set(true);
  }
  ~CgroupFreeze() {
    try {
      set(false);
    } catch (const Error& e) {
      LOG_WARN << "thawing " << dir_ << ": " << e.what();
    }
  }
  void set(bool frozen) {
    if (v1_) {
      fs::write_file(dir_ + "/freezer.state", frozen ? "FROZEN" : "THAWED");
      if (!frozen) return;
      for (int i = 0; i < 10000; ++i) {
        if (trim(fs::read_file(dir_ + "/freezer.state")) == "FROZEN") return;
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
      throw Error("cgroup " + dir_ + " did not reach FROZEN");
    }
    fs::write_file(dir_ + "/cgroup.freeze", frozen ? "1" : "0");
    if (!frozen) return;
    for (int i = 0; i < 10000; ++i) {
      if (fs::read_file(dir_ + "/cgroup.events").find("frozen 1") != std::string::npos) return;
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    throw Error("cgroup " + dir_ + " did not freeze");
  }

 private:
  std::string dir_;
  bool v1_ = false;
};

}  // namespace

FrozenTree FrozenTree::freeze(pid_t root, const std::string& freezer_cgroup) {
  FrozenTree tree;
  std::unique_ptr<CgroupFreeze> cgroup;
  if (!freezer_cgroup.empty()) cgroup = std::make_unique<CgroupFreeze>(freezer_cgroup);

  std::set<pid_t> attached;
  std::set<pid_t> known_processes;
  std::vector<pid_t> queue{root};
  bool changed = true;
  while (changed) {
    changed = false;
    for (size_t i = 0; i < queue.size(); ++i) {
      pid_t pid = queue[i];
      FrozenProcess* process = nullptr;
      if (known_processes.insert(pid).second) {
        ProcessInfo info;
        try {
          info = read_process_info(pid);
        } catch (const Error&) {
          if (pid == root) throw;
          continue;  // exited before we got it: it is not part of the tree any more
        }
        tree.processes_.push_back(FrozenProcess{info, {}, {}});
        changed = true;
      }
      for (auto& p : tree.processes_)
        if (p.info.pid == pid) process = &p;
      if (!process || process->info.zombie) continue;
      for (pid_t tid : list_threads(pid)) {
        if (attached.count(tid)) continue;
        try {
          if (cgroup)
            process->threads.push_back(PtraceAttachment::seize_and_request_stop(tid));
          else
            process->threads.push_back(PtraceAttachment::seize_and_interrupt(tid));
        } catch (const Error& e) {
          if (e.sys_errno() == ESRCH) continue;  // the thread exited meanwhile
          throw;
        }
        attached.insert(tid);
        changed = true;
      }
      std::vector<pid_t> children = list_children(pid);
      process->children = children;
      for (pid_t child : children)
        if (!known_processes.count(child)) queue.push_back(child);
    }
  }
  if (cgroup) {
    fault_point("dump-cgroup-frozen");
    // Everything is seized with a stop requested; thawing lets each thread reach that stop (a
    // v1-frozen task gets there only once thawed) before it can run any user code.
    cgroup.reset();
    for (auto& process : tree.processes_)
      for (auto& thread : process.threads) thread.wait_interrupted();
  }
  return tree;
}

FrozenTree::~FrozenTree() {
  resume();
}

void FrozenTree::resume() {
  for (auto& process : processes_) {
    for (auto& thread : process.threads) {
      try {
        thread.detach();
      } catch (const Error& e) {
        LOG_WARN << "detaching: " << e.what();
      }
    }
  }
  processes_.clear();
}

void FrozenTree::kill(bool wait_for_exit) {
  for (auto& process : processes_) ::kill(process.info.pid, SIGKILL);
  if (!wait_for_exit) {
    // SIGKILL wakes a ptrace-stopped thread straight into its exit; our attachments end with
    // this process (or with the dying tasks), so there is nothing to detach.
    for (auto& process : processes_)
      for (PtraceAttachment& thread : process.threads) thread.release();
    processes_.clear();
    return;
  }
  // Children before parents (container-cr): the init of a PID namespace does not finish dying
  // until it has reaped every child, and a traced child is reaped by its parent only after we,
  // its tracer, have seen its death. Parents first would wait forever.
  for (auto process_it = processes_.rbegin(); process_it != processes_.rend(); ++process_it) {
    FrozenProcess& process = *process_it;
    // Non-leader threads first: the leader's death is reported only once the others are reaped.
    for (auto it = process.threads.rbegin(); it != process.threads.rend(); ++it) {
      PtraceAttachment& thread = *it;
      // A traced thread killed by SIGKILL reports its death to us (tracer) first.
      int status;
      while (::waitpid(thread.tid(), &status, __WALL) < 0 && errno == EINTR) {
      }
      thread.release();
    }
    process.threads.clear();
  }
  processes_.clear();
}

}  // namespace cryo::ckpt
