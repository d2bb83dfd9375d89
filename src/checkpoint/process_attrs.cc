// Dispatcher of the process and thread attributes, and the attributes too small for a file of
// their own: personality, rlimits, comm, cwd, root, umask, dumpable, pdeath signal, child
// subreaper, THP disable, timer slack, no_new_privs.
//
// Where each attribute lives in the kernel decides where it is dumped and restored:
//   process (signal struct, mm, fs): sigactions, itimers, POSIX timers, rlimits, personality,
//     cwd, root, umask, dumpable, child subreaper, THP disable;
//   thread (task): comm, sigaltstack, pdeath signal, timer slack, credentials, no_new_privs,
//     seccomp. The leader's are in the process record under "thread".
// A change of euid/egid/fsuid/fsgid resets dumpable and the pdeath signal, so both are restored
// after the credentials; seccomp comes last since a filter may forbid what the batch still does.
#include <fcntl.h>
#include <signal.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>

#include "checkpoint/process_attrs.h"
#include "checkpoint/process_attrs_internal.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/strings.h"

namespace cryo::ckpt {

namespace attrs {

namespace {

struct RlimitName {
  int resource;
  const char* name;
};
constexpr RlimitName kRlimits[] = {{RLIMIT_CPU, "cpu"},           {RLIMIT_FSIZE, "fsize"},
                                   {RLIMIT_DATA, "data"},         {RLIMIT_STACK, "stack"},
                                   {RLIMIT_CORE, "core"},         {RLIMIT_RSS, "rss"},
                                   {RLIMIT_NPROC, "nproc"},       {RLIMIT_NOFILE, "nofile"},
                                   {RLIMIT_MEMLOCK, "memlock"},   {RLIMIT_AS, "as"},
                                   {RLIMIT_LOCKS, "locks"},       {RLIMIT_SIGPENDING, "sigpending"},
                                   {RLIMIT_MSGQUEUE, "msgqueue"}, {RLIMIT_NICE, "nice"},
                                   {RLIMIT_RTPRIO, "rtprio"},     {RLIMIT_RTTIME, "rttime"}};

constexpr size_t kPathMax = 4096;

json rlimit_value(rlim_t value) {
  if (value == RLIM_INFINITY) return "unlimited";
  return static_cast<uint64_t>(value);
}
rlim_t rlimit_from(const json& value) {
  if (value.is_string()) {
    if (value.get<std::string>() != "unlimited") throw Error("bad rlimit value " + value.dump());
    return RLIM_INFINITY;
  }
  return value.get<uint64_t>();
}
std::string rlimit_text(rlim_t value) {
  return value == RLIM_INFINITY ? "unlimited" : std::to_string(value);
}

// Read by the process itself: prlimit on another process needs matching uids or
// CAP_SYS_RESOURCE, which cryo lacks on hosts like this one.
void queue_rlimits_dump(DumpQueries& queries, json& out) {
  struct Query {
    const char* name;
    size_t index;
    BatchArg result;
  };
  std::vector<Query> batch_queries;
  for (const RlimitName& limit : kRlimits) {
    BatchArg result = queries.batch().reserve(sizeof(rlimit));
    size_t index = queries.add(SYS_prlimit64, {0, static_cast<uint64_t>(limit.resource), 0, result},
                               std::string("prlimit64(") + limit.name + ")");
    batch_queries.push_back(Query{limit.name, index, result});
  }
  queries.then([&out, batch_queries](const BatchOutput& output) {
    json rlimits = json::object();
    for (const Query& query : batch_queries) {
      output.checked_result(query.index);
      auto value = output.read<rlimit>(query.result);
      rlimits[query.name] = {{"soft", rlimit_value(value.rlim_cur)},
                             {"hard", rlimit_value(value.rlim_max)}};
    }
    out["rlimits"] = std::move(rlimits);
  });
}

}  // namespace

// Without CAP_SYS_RESOURCE no hard limit can be raised. A dumped limit above ours is clamped to
// ours with a warning rather than failing the restore: the process keeps running with the
// highest limit this host allows (it could only have lowered its hard limit anyway).
void restore_rlimits(const json& rlimits) {
  for (const RlimitName& limit : kRlimits) {
    if (!rlimits.contains(limit.name)) continue;
    const json& entry = rlimits.at(limit.name);
    auto resource = static_cast<__rlimit_resource>(limit.resource);
    rlimit ours{};
    if (::getrlimit(resource, &ours) != 0)
      throw_errno(std::string("getrlimit(") + limit.name + ")");
    rlimit wanted{rlimit_from(entry.at("soft")), rlimit_from(entry.at("hard"))};
    rlimit applied = wanted;
    if (ours.rlim_max != RLIM_INFINITY) {
      if (applied.rlim_max == RLIM_INFINITY || applied.rlim_max > ours.rlim_max)
        applied.rlim_max = ours.rlim_max;
      if (applied.rlim_cur == RLIM_INFINITY || applied.rlim_cur > applied.rlim_max)
        applied.rlim_cur = applied.rlim_max;
    }
    if (applied.rlim_max != wanted.rlim_max || applied.rlim_cur != wanted.rlim_cur) {
      LOG_WARN << "rlimit " << limit.name << ": dumped soft " << rlimit_text(wanted.rlim_cur)
               << " hard " << rlimit_text(wanted.rlim_max) << " is above this host's hard limit "
               << rlimit_text(ours.rlim_max) << " (no CAP_SYS_RESOURCE); restored as soft "
               << rlimit_text(applied.rlim_cur) << " hard " << rlimit_text(applied.rlim_max);
    }
    if (::setrlimit(resource, &applied) != 0)
      throw_errno(std::string("setrlimit(") + limit.name + ", soft " +
                  rlimit_text(applied.rlim_cur) + ", hard " + rlimit_text(applied.rlim_max) + ")");
  }
}

namespace {

std::string task_dir(pid_t pid, pid_t tid) {
  return "/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid);
}

std::string read_comm(pid_t pid, pid_t tid) {
  std::string comm = fs::read_file(task_dir(pid, tid) + "/comm");
  if (!comm.empty() && comm.back() == '\n') comm.pop_back();
  return comm;
}

// What a thread owns itself, read from /proc and ptrace or queued in `queries`.
void queue_task_dump(pid_t pid, pid_t tid, DumpQueries& queries, json& out) {
  out["comm"] = read_comm(pid, tid);
  std::map<std::string, std::string> status = read_status(pid, tid);
  out["no_new_privs"] = std::atoi(status["NoNewPrivs"].c_str()) != 0;
  out["seccomp"] = dump_seccomp(pid, tid);
  queue_sigaltstack_dump(queries, out);
  queue_creds_dump(pid, tid, queries, out);
  BatchArg pdeath = queries.batch().reserve(sizeof(int));
  size_t get_pdeath =
      queries.add(SYS_prctl, {PR_GET_PDEATHSIG, pdeath, 0, 0, 0}, "PR_GET_PDEATHSIG");
  size_t get_slack = queries.add(SYS_prctl, {PR_GET_TIMERSLACK, 0, 0, 0, 0}, "PR_GET_TIMERSLACK");
  // clear_child_tid, asked here rather than by an injected syscall of its own (one stop less).
  BatchArg tid_address = queries.batch().reserve(sizeof(uint64_t));
  size_t get_tid_address =
      queries.add(SYS_prctl, {PR_GET_TID_ADDRESS, tid_address, 0, 0, 0}, "PR_GET_TID_ADDRESS");
  queries.then([&out, pdeath, get_pdeath, get_slack, tid_address,
                get_tid_address](const BatchOutput& output) {
    output.checked_result(get_pdeath);
    out["pdeath_signal"] = output.read<int>(pdeath);
    out["timer_slack_ns"] = output.checked_result(get_slack);
    output.checked_result(get_tid_address);
    out["tid_address"] = output.read<uint64_t>(tid_address);
  });
}

void set_comm(const std::string& comm) {
  if (::prctl(PR_SET_NAME, comm.c_str(), 0, 0, 0) != 0) throw_errno("prctl(PR_SET_NAME)");
}

void set_timer_slack(const json& task) {
  auto slack = task.at("timer_slack_ns").get<uint64_t>();
  // 0 means "back to the default" to PR_SET_TIMERSLACK; a real-time thread reads 0 and its slack
  // is ignored by the kernel anyway.
  if (slack == 0) return;
  if (::prctl(PR_SET_TIMERSLACK, slack, 0, 0, 0) != 0) throw_errno("prctl(PR_SET_TIMERSLACK)");
}

// What a thread restores in its own batch once memory is in place, the leader included.
// `dumpable` is the process's (set by the leader only, after its credentials).
void append_task_late(const json& task, SyscallBatch& batch, const json* dumpable) {
  append_sigaltstack_restore(task.at("sigaltstack"), batch);
  const json& creds = task.at("creds");
  append_creds_restore(creds, batch);
  if (dumpable) {
    int value = dumpable->get<int>();
    // 0 and 1 can be set; 2 (SUID_DUMP_ROOT) only comes from fs.suid_dumpable.
    if (value == 0 || value == 1) {
      add_step(batch, SYS_prctl, {PR_SET_DUMPABLE, static_cast<uint64_t>(value), 0, 0, 0},
               "prctl(PR_SET_DUMPABLE, " + std::to_string(value) + ")");
    } else {
      LOG_WARN << "dumpable " << value << " cannot be set by prctl; "
               << "the restored process gets the system's fs.suid_dumpable";
    }
  }
  auto pdeath_signal = task.at("pdeath_signal").get<uint64_t>();
  add_step(batch, SYS_prctl, {PR_SET_PDEATHSIG, pdeath_signal, 0, 0, 0},
           "prctl(PR_SET_PDEATHSIG, " + std::to_string(pdeath_signal) + ")");
  if (task.at("no_new_privs").get<bool>()) {
    add_step(batch, SYS_prctl, {PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0}, "prctl(PR_SET_NO_NEW_PRIVS)");
    append_final_capset(creds, batch);
    append_seccomp_restore(task.at("seccomp"), batch);
  } else {
    // Without no_new_privs, installing a filter needs CAP_SYS_ADMIN, which the final sets may
    // not have: filters first, then the capset (which the filters must allow, as they did when
    // the process dropped its capabilities after installing them).
    append_seccomp_restore(task.at("seccomp"), batch);
    append_final_capset(creds, batch);
  }
}

}  // namespace

int64_t BatchOutput::checked_result(size_t index) const {
  int64_t value = result(index);
  if (value < 0 && value >= -4095)
    throw SysError(batch_.description(index), static_cast<int>(-value));
  return value;
}

void BatchOutput::read_bytes(BatchArg ref, void* out, size_t size) const {
  size_t offset = batch_.offset_of(ref);
  if (!ref.is_data_ref || offset + size > block_.size())
    throw Error("batch output outside the block (offset " + std::to_string(offset) + ")");
  std::memcpy(out, block_.data() + offset, size);
}

size_t DumpQueries::add(long nr, std::initializer_list<BatchArg> args, std::string description) {
  size_t index = batch_.add(nr, args, /*stop_on_error=*/false);
  batch_.describe(index, std::move(description));
  return index;
}

void DumpQueries::run(const BatchRunner& runner) {
  std::vector<uint8_t> block = runner(batch_);
  if (block.size() < batch_.size())
    throw Error("batch block came back with " + std::to_string(block.size()) + " bytes, expected " +
                std::to_string(batch_.size()));
  BatchOutput output(batch_, block);
  for (auto& parser : parsers_) parser(output);
}

size_t add_step(SyscallBatch& batch, long nr, std::initializer_list<BatchArg> args,
                std::string description) {
  size_t index = batch.add(nr, args, /*stop_on_error=*/true);
  batch.describe(index, std::move(description));
  return index;
}

namespace {

// While one frozen process's attributes are dumped, its status files are read once: the readers
// (umask, no_new_privs, credentials, seccomp, the leader check) each used to read it again.
thread_local std::map<std::pair<pid_t, pid_t>, std::map<std::string, std::string>>*
    status_reads_shared = nullptr;

class ShareStatusReads {
 public:
  ShareStatusReads() : previous_(status_reads_shared) {
    if (!previous_) status_reads_shared = &reads_;
  }
  ~ShareStatusReads() { status_reads_shared = previous_; }
  ShareStatusReads(const ShareStatusReads&) = delete;
  ShareStatusReads& operator=(const ShareStatusReads&) = delete;

 private:
  std::map<std::pair<pid_t, pid_t>, std::map<std::string, std::string>> reads_;
  decltype(status_reads_shared) previous_;
};

}  // namespace

std::map<std::string, std::string> read_status(pid_t pid, pid_t tid) {
  if (status_reads_shared) {
    auto it = status_reads_shared->find({pid, tid});
    if (it != status_reads_shared->end()) return it->second;
  }
  std::map<std::string, std::string> fields;
  for (const std::string& line : split(fs::read_file(task_dir(pid, tid) + "/status"), '\n')) {
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    fields[line.substr(0, colon)] = std::string(trim(std::string_view(line).substr(colon + 1)));
  }
  if (status_reads_shared) (*status_reads_shared)[{pid, tid}] = fields;
  return fields;
}

pid_t innermost_tid(pid_t pid, pid_t tid) {
  std::map<std::string, std::string> status = read_status(pid, tid);
  std::vector<std::string> ids;
  for (const std::string& id : split(status["NSpid"], '\t'))
    if (!trim(id).empty()) ids.push_back(std::string(trim(id)));
  if (ids.empty()) throw Error("no NSpid for thread " + std::to_string(tid));
  return static_cast<pid_t>(std::atoi(ids.back().c_str()));
}

json dump_process_attrs_with(pid_t pid, const BatchRunner& runner) {
  return with_context("process attributes of " + std::to_string(pid), [&] {
    ShareStatusReads share_status;
    json out = json::object();
    std::string proc = "/proc/" + std::to_string(pid);
    out["personality"] = std::strtoull(fs::read_file(proc + "/personality").c_str(), nullptr, 16);
    out["umask"] = std::strtoul(read_status(pid, pid)["Umask"].c_str(), nullptr, 8);
    out["root"] = fs::read_link(proc + "/root");

    DumpQueries queries;
    queue_rlimits_dump(queries, out);
    queue_sigactions_dump(queries, out);
    queue_itimers_dump(queries, out);
    queue_posix_timers_dump(pid, queries, out);
    // The cwd as the process sees it, relative to its own root (the dumper may be elsewhere).
    BatchArg cwd = queries.batch().reserve(kPathMax);
    size_t getcwd = queries.add(SYS_getcwd, {cwd, kPathMax}, "getcwd");
    size_t dumpable = queries.add(SYS_prctl, {PR_GET_DUMPABLE, 0, 0, 0, 0}, "PR_GET_DUMPABLE");
    BatchArg subreaper = queries.batch().reserve(sizeof(int));
    size_t get_subreaper = queries.add(SYS_prctl, {PR_GET_CHILD_SUBREAPER, subreaper, 0, 0, 0},
                                       "PR_GET_CHILD_SUBREAPER");
    size_t thp = queries.add(SYS_prctl, {PR_GET_THP_DISABLE, 0, 0, 0, 0}, "PR_GET_THP_DISABLE");
    size_t brk = queries.add(SYS_brk, {0, 0, 0, 0, 0}, "brk(0)");
    queries.then([&](const BatchOutput& output) {
      int64_t length = output.result(getcwd);
      if (length == -ENOENT) throw Error("not supported yet: a deleted current directory");
      output.checked_result(getcwd);
      std::vector<char> path(kPathMax);
      output.read_bytes(cwd, path.data(), kPathMax);
      if (path[0] != '/') throw Error("current directory outside the process's root");
      out["cwd"] = std::string(path.data(), strnlen(path.data(), kPathMax));
      out["dumpable"] = output.checked_result(dumpable);
      output.checked_result(get_subreaper);
      out["child_subreaper"] = output.read<int>(subreaper) != 0;
      out["thp_disable"] = output.checked_result(thp);
      out["brk"] = output.checked_result(brk);
    });
    json leader = json::object();
    queue_task_dump(pid, pid, queries, leader);
    queries.run(runner);
    out["thread"] = std::move(leader);
    return out;
  });
}

json dump_thread_attrs_with(pid_t pid, pid_t tid, const BatchRunner& runner) {
  return with_context("attributes of thread " + std::to_string(tid), [&] {
    ShareStatusReads share_status;
    json out = json::object();
    DumpQueries queries;
    queue_task_dump(pid, tid, queries, out);
    queries.run(runner);
    return out;
  });
}

}  // namespace attrs

json dump_process_attrs(pid_t pid, RemoteSyscalls& main_thread) {
  // The seccomp filters are read by ptrace requests of our own, which need the thread stopped.
  main_thread.wait_until_stopped();
  return attrs::dump_process_attrs_with(
      pid, [&](const SyscallBatch& batch) { return main_thread.run_batch(batch); });
}

json dump_thread_attrs(pid_t tid, RemoteSyscalls& thread) {
  thread.wait_until_stopped();  // as in dump_process_attrs
  attrs::ShareStatusReads share_status;
  if (std::atoi(attrs::read_status(tid, tid)["Tgid"].c_str()) == tid) return json{{"leader", true}};
  // /proc/TID/task/TID names the thread whichever process it belongs to.
  return attrs::dump_thread_attrs_with(
      tid, tid, [&](const SyscallBatch& batch) { return thread.run_batch(batch); });
}

void restore_process_attrs_early(const json& attrs) {
  with_context("restoring process attributes", [&] {
    attrs::restore_rlimits(attrs.at("rlimits"));
    auto persona = attrs.at("personality").get<unsigned long>();
    if (::personality(persona) == -1) throw_errno("personality(" + std::to_string(persona) + ")");
    // The root is a path in the mount namespace the process is restored in; the cwd is relative
    // to that root.
    auto root = attrs.at("root").get<std::string>();
    if (root != "/" && ::chroot(root.c_str()) != 0) throw_errno("chroot(" + root + ")");
    auto cwd = attrs.at("cwd").get<std::string>();
    if (::chdir(cwd.c_str()) != 0) throw_errno("chdir(" + cwd + ")");
    ::umask(attrs.at("umask").get<mode_t>());
    const json& leader = attrs.at("thread");
    attrs::set_comm(leader.at("comm").get<std::string>());
    attrs::set_timer_slack(leader);
    if (::prctl(PR_SET_CHILD_SUBREAPER, attrs.at("child_subreaper").get<bool>() ? 1 : 0, 0, 0, 0) !=
        0)
      throw_errno("prctl(PR_SET_CHILD_SUBREAPER)");
    auto thp = attrs.at("thp_disable").get<unsigned long>();
    // PR_GET_THP_DISABLE gives 1, or 3 when disabled "except where advised" (6.18).
    constexpr unsigned long kThpDisableExceptAdvised = 1UL << 1;
    if (::prctl(PR_SET_THP_DISABLE, thp & 1, (thp & 2) ? kThpDisableExceptAdvised : 0, 0, 0) != 0)
      throw_errno("prctl(PR_SET_THP_DISABLE, " + std::to_string(thp) + ")");
    sigset_t all;
    sigfillset(&all);
    if (::sigprocmask(SIG_BLOCK, &all, nullptr) != 0) throw_errno("sigprocmask");
    attrs::restore_sigactions(attrs.at("sigactions"));
  });
}

void append_late_process_restore(const json& attrs, SyscallBatch& batch) {
  with_context("process attributes", [&] {
    attrs::append_timers_restore(attrs, batch);
    attrs::append_task_late(attrs.at("thread"), batch, &attrs.at("dumpable"));
  });
}

void append_thread_restore(const json& thread_attrs, SyscallBatch& batch) {
  with_context("thread attributes", [&] {
    if (thread_attrs.value("leader", false)) return;  // part of the process's attributes
    std::string comm = thread_attrs.at("comm").get<std::string>();
    attrs::add_step(batch, SYS_prctl,
                    {PR_SET_NAME, batch.data(comm.c_str(), comm.size() + 1), 0, 0, 0},
                    "prctl(PR_SET_NAME, " + comm + ")");
    auto slack = thread_attrs.at("timer_slack_ns").get<uint64_t>();
    if (slack != 0)
      attrs::add_step(batch, SYS_prctl, {PR_SET_TIMERSLACK, slack, 0, 0, 0},
                      "prctl(PR_SET_TIMERSLACK)");
    attrs::append_task_late(thread_attrs, batch, nullptr);
  });
}

}  // namespace cryo::ckpt
