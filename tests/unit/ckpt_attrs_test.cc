// Process and thread attributes: dump queries and restore batches are run in-process (a batch's
// entries executed with syscall(2) at the block's own address), in forked children so that the
// test process keeps its own state. The round trips compare the dump of an original process with
// the dump of a fresh process after restore.
#include <grp.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/fsuid.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "checkpoint/process_attrs.h"
#include "checkpoint/process_attrs_internal.h"
#include "checkpoint/ptrace.h"
#include "checkpoint/remote_syscall.h"
#include "common/error.h"
#include "common/fs.h"

namespace cryo::ckpt {
namespace {

using attrs::json;

// Runs the batch's entries in this process, as the injected code runs them in a target.
std::vector<uint8_t> run_locally(const SyscallBatch& batch) {
  std::vector<uint8_t> block(batch.size());
  std::vector<uint8_t> laid_out =
      batch.layout(RemoteAddr(reinterpret_cast<uintptr_t>(block.data())));
  std::memcpy(block.data(), laid_out.data(), laid_out.size());
  auto* entry = reinterpret_cast<BatchedSyscall*>(block.data());
  for (; entry->nr != kBatchEnd; ++entry) {
    long result = ::syscall(entry->nr & kBatchNrMask, entry->args[0], entry->args[1],
                            entry->args[2], entry->args[3], entry->args[4], entry->args[5]);
    if (result == -1) result = -errno;
    entry->result = result;
    if ((entry->nr & kBatchStopOnError) && result < 0 && result >= -4095) break;
  }
  return block;
}

// Checks that every entry of a restore batch succeeded; returns "" or what failed.
std::string failed_steps(const SyscallBatch& batch, const std::vector<uint8_t>& block) {
  std::string failures;
  for (size_t i = 0; i < batch.count(); ++i) {
    int64_t result = SyscallBatch::result_of(block, i);
    if (result < 0 && result >= -4095)
      failures += batch.description(i) + ": " + std::strerror(static_cast<int>(-result)) + "; ";
  }
  return failures;
}

// Runs fn in a forked child; returns what it returns ("" = success), or how it failed.
std::string in_child(const std::function<std::string()>& fn) {
  int fds[2];
  if (pipe(fds) != 0) return "pipe failed";
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    std::string message;
    try {
      message = fn();
    } catch (const std::exception& e) {
      message = std::string("exception: ") + e.what();
    }
    size_t done = 0;
    while (done < message.size()) {
      ssize_t n = write(fds[1], message.data() + done, message.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    _exit(0);
  }
  close(fds[1]);
  std::string message;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fds[0], buffer, sizeof buffer)) > 0)
    message.append(buffer, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) return "child killed by signal " + std::to_string(WTERMSIG(status));
  return message;
}

void on_signal(int) {}
void on_siginfo(int, siginfo_t*, void*) {}

// Wakes a child that waits for one byte on `wake_fd` (closed here), and expects it to exit 0 (its
// own checks passed).
void release_and_expect_clean_exit(int wake_fd, pid_t child) {
  char c = 'x';
  EXPECT_EQ(write(wake_fd, &c, 1), 1);
  close(wake_fd);
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

uint64_t cap_bit(int cap) {
  return uint64_t{1} << cap;
}

bool capset_sets(uint64_t effective, uint64_t permitted, uint64_t inheritable) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  for (int half = 0; half < 2; ++half) {
    data[half].effective = static_cast<uint32_t>(effective >> (32 * half));
    data[half].permitted = static_cast<uint32_t>(permitted >> (32 * half));
    data[half].inheritable = static_cast<uint32_t>(inheritable >> (32 * half));
  }
  return ::syscall(SYS_capset, &header, data) == 0;
}

#define CHECK_SYS(call)                                                               \
  do {                                                                                \
    if ((call) == -1) return std::string(#call) + " failed: " + std::strerror(errno); \
  } while (0)

// A change of uid sets dumpable to fs.suid_dumpable: the test process uses the other value, so
// that the restore must set it after the credentials.
int dumpable_unlike_after_setuid() {
  return std::atoi(fs::read_file("/proc/sys/fs/suid_dumpable").c_str()) == 0 ? 1 : 0;
}

// Puts the calling process in a state different from a fresh fork in every attribute this
// module handles, then dumps it.
std::string set_up_original_and_dump(json* dumped) {
  struct sigaction action {};
  action.sa_sigaction = on_siginfo;
  action.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&action.sa_mask);
  sigaddset(&action.sa_mask, SIGUSR2);
  CHECK_SYS(sigaction(SIGUSR1, &action, nullptr));
  CHECK_SYS(signal(SIGALRM, on_signal) == SIG_ERR ? -1 : 0);
  CHECK_SYS(signal(SIGPIPE, SIG_IGN) == SIG_ERR ? -1 : 0);

  itimerval real{{5, 0}, {100, 0}};
  CHECK_SYS(setitimer(ITIMER_REAL, &real, nullptr));
  itimerval virt{{0, 0}, {50, 250000}};
  CHECK_SYS(setitimer(ITIMER_VIRTUAL, &virt, nullptr));
  // Timers 0, 1, 2; 1 deleted to leave a gap.
  sigevent event{};
  event.sigev_notify = SIGEV_SIGNAL;
  event.sigev_signo = SIGUSR1;
  event.sigev_value.sival_ptr = reinterpret_cast<void*>(0x1234);
  timer_t timer0, timer1, timer2;
  CHECK_SYS(timer_create(CLOCK_MONOTONIC, &event, &timer0));
  CHECK_SYS(timer_create(CLOCK_MONOTONIC, &event, &timer1));
  event.sigev_notify = SIGEV_THREAD_ID;
  event._sigev_un._tid = gettid();
  event.sigev_signo = SIGUSR2;
  CHECK_SYS(timer_create(CLOCK_REALTIME, &event, &timer2));
  CHECK_SYS(timer_delete(timer1));
  itimerspec armed{{1, 500}, {200, 0}};
  CHECK_SYS(timer_settime(timer0, 0, &armed, nullptr));

  static char alt_stack[65536];
  stack_t stack{alt_stack, 0, sizeof alt_stack};
  CHECK_SYS(sigaltstack(&stack, nullptr));

  rlimit nofile{512, 4096};
  CHECK_SYS(setrlimit(RLIMIT_NOFILE, &nofile));
  rlimit core{0, 0};
  CHECK_SYS(setrlimit(RLIMIT_CORE, &core));
  CHECK_SYS(personality(ADDR_NO_RANDOMIZE));
  CHECK_SYS(chdir("/tmp"));
  umask(027);
  CHECK_SYS(prctl(PR_SET_NAME, "attrs-original", 0, 0, 0));
  CHECK_SYS(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0));
  CHECK_SYS(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0));
  CHECK_SYS(prctl(PR_SET_TIMERSLACK, 123456, 0, 0, 0));

  gid_t groups[] = {5, 6, 70000};
  CHECK_SYS(setgroups(3, groups));
  CHECK_SYS(prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0));
  CHECK_SYS(setresgid(1001, 1002, 1003));
  CHECK_SYS(setresuid(2001, 2002, 2003));
  uint64_t working = cap_bit(CAP_SETUID) | cap_bit(CAP_SETGID) | cap_bit(CAP_SETPCAP) |
                     cap_bit(CAP_CHOWN) | cap_bit(CAP_DAC_READ_SEARCH) |
                     cap_bit(CAP_NET_BIND_SERVICE);
  if (!capset_sets(working, working, cap_bit(CAP_NET_BIND_SERVICE)))
    return std::string("capset: ") + std::strerror(errno);
  setfsgid(1004);
  setfsuid(2004);
  CHECK_SYS(prctl(PR_CAPBSET_DROP, CAP_SYS_MODULE, 0, 0, 0));
  CHECK_SYS(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0));
  // CAP_DAC_READ_SEARCH lets the in-process dump read its own root-owned /proc files.
  uint64_t final_caps = cap_bit(CAP_CHOWN) | cap_bit(CAP_DAC_READ_SEARCH);
  if (!capset_sets(final_caps, final_caps | cap_bit(CAP_NET_BIND_SERVICE),
                   cap_bit(CAP_NET_BIND_SERVICE)))
    return std::string("capset final: ") + std::strerror(errno);
  // After the uid changes, which reset them.
  CHECK_SYS(prctl(PR_SET_DUMPABLE, dumpable_unlike_after_setuid(), 0, 0, 0));
  CHECK_SYS(prctl(PR_SET_PDEATHSIG, SIGUSR2, 0, 0, 0));
  CHECK_SYS(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));

  *dumped = attrs::dump_process_attrs_with(getpid(), run_locally);
  return "";
}

// Timer values count down between dump and restore: compared apart, then removed.
std::string strip_running_values(json& dumped, const json& original) {
  for (const char* name : {"real", "virtual", "prof"}) {
    uint64_t now = dumped["itimers"][name]["value_us"];
    uint64_t then = original["itimers"][name]["value_us"];
    // setitimer adds one scheduler tick to a CPU-time timer (ITIMER_VIRTUAL/PROF) so that it
    // never fires early: allow for it (HZ >= 100).
    uint64_t tick_allowance = std::string(name) == "real" ? 0 : 10000;
    if ((then == 0) != (now == 0) || now > then + tick_allowance)
      return std::string("itimer ") + name + ": " + std::to_string(now) + " after " +
             std::to_string(then);
    dumped["itimers"][name].erase("value_us");
  }
  for (size_t i = 0; i < dumped["posix_timers"].size(); ++i) {
    uint64_t now = dumped["posix_timers"][i]["value_ns"];
    uint64_t then = original["posix_timers"].at(i)["value_ns"];
    if ((then == 0) != (now == 0) || now > then)
      return "posix timer " + std::to_string(i) + ": " + std::to_string(now) + " after " +
             std::to_string(then);
    dumped["posix_timers"][i].erase("value_ns");
  }
  return "";
}

TEST(SyscallBatchPointers, LayoutWritesRemoteAddressOfTarget) {
  SyscallBatch batch;
  uint32_t payload[4] = {1, 2, 3, 4};
  BatchArg target = batch.data(payload, sizeof payload);
  uint64_t header[2] = {4, 0};
  BatchArg holder = batch.data(header, sizeof header);
  batch.set_pointer(holder, 8, target);
  batch.add(SYS_getpid, {holder});
  RemoteAddr base(0x7f0000001000);
  std::vector<uint8_t> block = batch.layout(base);
  uint64_t pointer = 0;
  std::memcpy(&pointer, block.data() + batch.offset_of(holder) + 8, sizeof pointer);
  EXPECT_EQ(pointer, batch.address_of(target, base).value());
  uint64_t first = 0;
  std::memcpy(&first, block.data() + batch.offset_of(holder), sizeof first);
  EXPECT_EQ(first, 4u);
  EXPECT_THROW(batch.set_pointer(holder, 16, target), std::invalid_argument);
}

TEST(ProcTimers, ParsesEveryNotifyKind) {
  std::vector<attrs::ProcTimer> timers = attrs::parse_proc_timers(
      "ID: 7\nsignal: 10/0000000000001234\nnotify: signal/tid.42\nClockID: 1\n"
      "ID: 0\nsignal: 14/0000000000000000\nnotify: none/pid.41\nClockID: -6\n");
  ASSERT_EQ(timers.size(), 2u);
  EXPECT_EQ(timers[0].id, 7);
  EXPECT_EQ(timers[0].signal, 10);
  EXPECT_EQ(timers[0].sigev_value, 0x1234u);
  EXPECT_EQ(timers[0].notify, SIGEV_SIGNAL | SIGEV_THREAD_ID);
  EXPECT_EQ(timers[0].notify_pid, 42);
  EXPECT_EQ(timers[0].clock, CLOCK_MONOTONIC);
  EXPECT_EQ(timers[1].notify, SIGEV_NONE);
  EXPECT_EQ(timers[1].clock, -6);
  EXPECT_THROW(attrs::parse_proc_timers("signal: 1/0\n"), Error);
}

TEST(ProcessAttrs, DumpReadsWhatTheProcessSet) {
  std::string failure = in_child([] {
    json dumped;
    std::string setup = set_up_original_and_dump(&dumped);
    if (!setup.empty()) return setup;
    std::string problems;
    auto expect = [&](bool ok, const std::string& what) {
      if (!ok) problems += what + "; ";
    };
    const json& thread = dumped["thread"];
    expect(thread["comm"] == "attrs-original", "comm " + thread["comm"].dump());
    expect(thread["creds"]["uids"] == json({2001, 2002, 2003, 2004}),
           "uids " + thread["creds"]["uids"].dump());
    expect(thread["creds"]["gids"] == json({1001, 1002, 1003, 1004}),
           "gids " + thread["creds"]["gids"].dump());
    expect(thread["creds"]["groups"] == json({5, 6, 70000}),
           "groups " + thread["creds"]["groups"].dump());
    expect(
        thread["creds"]["caps"]["effective"] == (cap_bit(CAP_CHOWN) | cap_bit(CAP_DAC_READ_SEARCH)),
        "effective caps");
    expect(thread["creds"]["caps"]["ambient"] == cap_bit(CAP_NET_BIND_SERVICE), "ambient caps");
    expect((thread["creds"]["caps"]["bounding"].get<uint64_t>() & cap_bit(CAP_SYS_MODULE)) == 0,
           "bounding set still has CAP_SYS_MODULE");
    expect(thread["creds"]["securebits"] == SECBIT_KEEP_CAPS,
           "securebits " + thread["creds"]["securebits"].dump());
    expect(thread["no_new_privs"] == true, "no_new_privs");
    expect(thread["pdeath_signal"] == SIGUSR2, "pdeath_signal");
    expect(thread["timer_slack_ns"] == 123456, "timer slack");
    expect(thread["sigaltstack"]["size"] == 65536, "sigaltstack " + thread["sigaltstack"].dump());
    expect(dumped["cwd"] == "/tmp", "cwd " + dumped["cwd"].dump());
    expect(dumped["umask"] == 027, "umask");
    expect(dumped["personality"] == ADDR_NO_RANDOMIZE, "personality");
    expect(dumped["dumpable"] == dumpable_unlike_after_setuid(), "dumpable");
    expect(dumped["child_subreaper"] == true, "subreaper");
    expect(dumped["thp_disable"] == 1, "thp_disable");
    expect(dumped["rlimits"]["nofile"] == json({{"soft", 512}, {"hard", 4096}}),
           "nofile " + dumped["rlimits"]["nofile"].dump());
    expect(dumped["itimers"]["real"]["interval_us"] == 5000000, "itimer real interval");
    uint64_t real_left = dumped["itimers"]["real"]["value_us"];
    expect(real_left > 90000000 && real_left <= 100000000, "itimer real value");
    const json& timers = dumped["posix_timers"];
    expect(timers.size() == 2 && timers[0]["id"] == 0 && timers[1]["id"] == 2,
           "timer ids " + timers.dump());
    if (timers.size() == 2) {
      expect(timers[0]["sigev_value"] == 0x1234 && timers[0]["signal"] == SIGUSR1 &&
                 timers[0]["notify"] == SIGEV_SIGNAL && timers[0]["interval_ns"] == 1000000500,
             "timer 0 " + timers[0].dump());
      expect(timers[1]["notify"] == (SIGEV_SIGNAL | SIGEV_THREAD_ID) &&
                 timers[1]["notify_tid"] == gettid() && timers[1]["value_ns"] == 0 &&
                 timers[1]["clock"] == CLOCK_REALTIME,
             "timer 2 " + timers[1].dump());
    }
    bool found_usr1 = false;
    for (const json& action : dumped["sigactions"]) {
      if (action["signal"] == SIGUSR1) {
        found_usr1 = true;
        expect(action["handler"] == reinterpret_cast<uint64_t>(&on_siginfo), "SIGUSR1 handler");
        expect((action["flags"].get<uint64_t>() & (SA_SIGINFO | SA_RESTART)) ==
                   (SA_SIGINFO | SA_RESTART),
               "SIGUSR1 flags");
        expect(action["mask"] == (uint64_t{1} << (SIGUSR2 - 1)), "SIGUSR1 mask");
        expect(action["restorer"] != 0, "SIGUSR1 restorer");
      }
    }
    expect(found_usr1, "no SIGUSR1 sigaction");
    return problems;
  });
  EXPECT_EQ(failure, "");
}

TEST(ProcessAttrs, RestoreInFreshProcessGivesTheSameDump) {
  std::string dumped_text;
  std::string failure = in_child([&] {
    json dumped;
    std::string setup = set_up_original_and_dump(&dumped);
    return setup.empty() ? "JSON " + dumped.dump() : setup;
  });
  ASSERT_EQ(failure.rfind("JSON ", 0), 0u) << failure;
  json original = json::parse(failure.substr(5));

  failure = in_child([&] {
    json image = original;
    // The restorer recreates threads with their dumped tids; this fresh process has its own.
    for (json& timer : image["posix_timers"])
      if (timer["notify"].get<int>() & SIGEV_THREAD_ID) timer["notify_tid"] = gettid();
    restore_process_attrs_early(image);
    SyscallBatch batch;
    append_late_process_restore(image, batch);
    std::string failures = failed_steps(batch, run_locally(batch));
    if (!failures.empty()) return "restore batch: " + failures;
    json restored = attrs::dump_process_attrs_with(getpid(), run_locally);
    std::string timers = strip_running_values(restored, image);
    if (!timers.empty()) return timers;
    strip_running_values(image, image);
    // Asked in the same batch but restored with the memory (brk) and the thread (tid address),
    // not by the attributes.
    for (json* j : {&restored, &image}) {
      j->erase("brk");
      (*j)["thread"].erase("tid_address");
    }
    if (restored != image) {
      json patch = json::diff(image, restored);
      return "restored process differs: " + patch.dump();
    }
    return std::string();
  });
  EXPECT_EQ(failure, "");
}

TEST(ProcessAttrs, ThreadRestoreGivesTheSameThreadDump) {
  std::string failure = in_child([] {
    json dumped;
    std::string setup = set_up_original_and_dump(&dumped);
    if (!setup.empty()) return setup;
    return "JSON " + attrs::dump_thread_attrs_with(getpid(), gettid(), run_locally).dump();
  });
  ASSERT_EQ(failure.rfind("JSON ", 0), 0u) << failure;
  json original = json::parse(failure.substr(5));
  failure = in_child([&] {
    SyscallBatch batch;
    append_thread_restore(original, batch);
    std::string failures = failed_steps(batch, run_locally(batch));
    if (!failures.empty()) return "thread batch: " + failures;
    json restored = attrs::dump_thread_attrs_with(getpid(), gettid(), run_locally);
    if (restored != original)
      return "restored thread differs: " + json::diff(original, restored).dump();
    return std::string();
  });
  EXPECT_EQ(failure, "");
}

TEST(ProcessAttrs, CapabilityTheRestorerLacksIsAClearError) {
  std::string failure = in_child([] {
    json creds = attrs::dump_thread_attrs_with(getpid(), gettid(), run_locally)["creds"];
    uint64_t kept = cap_bit(CAP_SETUID) | cap_bit(CAP_SETGID) | cap_bit(CAP_SETPCAP);
    if (!capset_sets(kept, kept, 0)) return std::string("capset");
    creds["caps"]["permitted"] = kept | cap_bit(CAP_NET_ADMIN);
    SyscallBatch batch;
    try {
      attrs::append_creds_restore(creds, batch);
    } catch (const Error& e) {
      return std::string(e.what()).find("cap_net_admin") != std::string::npos
                 ? std::string()
                 : std::string("unclear error: ") + e.what();
    }
    return std::string("no error");
  });
  EXPECT_EQ(failure, "");
}

TEST(ProcessAttrs, HardLimitAboveOursIsClampedToOurs) {
  std::string failure = in_child([] {
    rlimit ours{};
    getrlimit(RLIMIT_NOFILE, &ours);
    if (ours.rlim_max == RLIM_INFINITY) return std::string();  // nothing to clamp against
    rlimit lowered{ours.rlim_max / 2, ours.rlim_max / 2};
    CHECK_SYS(setrlimit(RLIMIT_NOFILE, &lowered));
    rlimit msgqueue{};
    getrlimit(RLIMIT_MSGQUEUE, &msgqueue);
    attrs::restore_rlimits(json{{"nofile", {{"soft", 100}, {"hard", ours.rlim_max}}},
                                {"msgqueue", {{"soft", "unlimited"}, {"hard", "unlimited"}}}});
    rlimit now{};
    getrlimit(RLIMIT_NOFILE, &now);
    if (now.rlim_cur != 100 || now.rlim_max != lowered.rlim_max)
      return "nofile " + std::to_string(now.rlim_cur) + "/" + std::to_string(now.rlim_max);
    getrlimit(RLIMIT_MSGQUEUE, &now);
    rlimit expected = msgqueue.rlim_max == RLIM_INFINITY
                          ? rlimit{RLIM_INFINITY, RLIM_INFINITY}
                          : rlimit{msgqueue.rlim_max, msgqueue.rlim_max};
    if (now.rlim_cur != expected.rlim_cur || now.rlim_max != expected.rlim_max)
      return "msgqueue " + std::to_string(now.rlim_cur) + "/" + std::to_string(now.rlim_max);
    return std::string();
  });
  EXPECT_EQ(failure, "");
}

// Installs two filters (the second with SECCOMP_FILTER_FLAG_LOG) that allow everything but
// a given syscall.
std::string install_test_filters(bool with_nnp) {
  static sock_filter deny_uname[] = {BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
                                     BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_uname, 0, 1),
                                     BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
                                     BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
  static sock_filter deny_getppid[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EACCES),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
  sock_fprog first{4, deny_uname};
  sock_fprog second{4, deny_getppid};
  if (with_nnp) CHECK_SYS(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
  CHECK_SYS(::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &first));
  CHECK_SYS(::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_LOG, &second));
  return "";
}

// Forks a child that runs `prepare` then stops itself; seizes it and dumps its seccomp state.
json dump_seccomp_of_child(const std::function<std::string()>& prepare, std::string* failure) {
  pid_t child = fork();
  if (child == 0) {
    std::string result = prepare();
    if (!result.empty()) _exit(3);
    raise(SIGSTOP);
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, WUNTRACED);
  json seccomp;
  if (!WIFSTOPPED(status)) {
    *failure = "child did not stop, status " + std::to_string(status);
    return seccomp;
  }
  if (ptrace(PTRACE_SEIZE, child, 0, 0) != 0 || ptrace(PTRACE_INTERRUPT, child, 0, 0) != 0) {
    *failure = std::string("seize: ") + std::strerror(errno);
  } else {
    waitpid(child, &status, __WALL);
    try {
      seccomp = attrs::dump_seccomp(child, child);
    } catch (const std::exception& e) {
      *failure = e.what();
    }
  }
  kill(child, SIGKILL);
  waitpid(child, &status, __WALL);
  return seccomp;
}

TEST(Seccomp, FiltersRoundTripInOrderWithFlags) {
  std::string failure;
  json original = dump_seccomp_of_child([] { return install_test_filters(true); }, &failure);
  ASSERT_EQ(failure, "");
  ASSERT_EQ(original["mode"], SECCOMP_MODE_FILTER);
  ASSERT_EQ(original["filters"].size(), 2u);
  EXPECT_EQ(original["filters"][0]["flags"], 0);
  EXPECT_EQ(original["filters"][1]["flags"], SECCOMP_FILTER_FLAG_LOG);
  EXPECT_EQ(original["filters"][0]["program"][1][3], SYS_uname);
  EXPECT_EQ(original["filters"][1]["program"][1][3], SYS_getppid);

  json restored = dump_seccomp_of_child(
      [&] {
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return std::string("nnp");
        SyscallBatch batch;
        attrs::append_seccomp_restore(original, batch);
        std::string failures = failed_steps(batch, run_locally(batch));
        if (!failures.empty()) return failures;
        // The filters act: both syscalls are refused with their own errno.
        if (::syscall(SYS_getppid) != -1 || errno != EACCES) return std::string("getppid allowed");
        utsname name;
        if (uname(&name) != -1 || errno != EPERM) return std::string("uname allowed");
        return std::string();
      },
      &failure);
  ASSERT_EQ(failure, "");
  EXPECT_EQ(restored, original);
}

TEST(Seccomp, WithoutNoNewPrivsFiltersGoInBeforeTheFinalCapset) {
  // A root process that installed filters with CAP_SYS_ADMIN and then dropped it: the restore
  // must install the filters while it still holds CAP_SYS_ADMIN.
  std::string failure = in_child([] {
    uint64_t kept = cap_bit(CAP_CHOWN) | cap_bit(CAP_KILL);
    if (!capset_sets(kept, kept, 0)) return std::string("capset");
    json thread = attrs::dump_thread_attrs_with(getpid(), gettid(), run_locally);
    return "JSON " + thread.dump();
  });
  ASSERT_EQ(failure.rfind("JSON ", 0), 0u) << failure;
  json original = json::parse(failure.substr(5));
  // The in-process dump cannot read filters (no ptrace of oneself): take them from a child.
  std::string seize_failure;
  original["seccomp"] =
      dump_seccomp_of_child([] { return install_test_filters(false); }, &seize_failure);
  ASSERT_EQ(seize_failure, "");
  ASSERT_EQ(original["no_new_privs"], false);

  failure = in_child([&] {
    SyscallBatch batch;
    append_thread_restore(original, batch);
    std::string failures = failed_steps(batch, run_locally(batch));
    if (!failures.empty()) return "thread batch: " + failures;
    if (::syscall(SYS_getppid) != -1 || errno != EACCES) return std::string("filter not active");
    // (A whole thread dump would read the filters by ptrace, impossible on oneself.)
    attrs::DumpQueries queries;
    json restored;
    attrs::queue_creds_dump(getpid(), gettid(), queries, restored);
    queries.run(run_locally);
    if (restored["creds"] != original["creds"])
      return "creds differ: " + json::diff(original["creds"], restored["creds"]).dump();
    return std::string();
  });
  EXPECT_EQ(failure, "");
}

TEST(ProcessAttrs, DumpThroughRemoteSyscallsMatchesTheProcessOwnView) {
  int to_parent[2], from_parent[2];
  ASSERT_EQ(pipe(to_parent), 0);
  ASSERT_EQ(pipe(from_parent), 0);
  pid_t child = fork();
  if (child == 0) {
    close(to_parent[0]);
    close(from_parent[1]);
    json dumped;
    std::string setup = set_up_original_and_dump(&dumped);
    json thread = attrs::dump_thread_attrs_with(getpid(), gettid(), run_locally);
    std::string message =
        setup.empty() ? json{{"process", dumped}, {"thread", thread}}.dump() : "FAIL " + setup;
    message += "\n";
    if (write(to_parent[1], message.data(), message.size()) != static_cast<ssize_t>(message.size()))
      _exit(2);
    // Building the message may have moved the break (malloc grows or trims the heap), and
    // nothing allocates from here on: the remote dump must see this break.
    uint64_t break_now = reinterpret_cast<uintptr_t>(sbrk(0));
    if (write(to_parent[1], &break_now, sizeof break_now) != sizeof break_now) _exit(2);
    char c;
    // Dumped while blocked here; the read restarts after the injected batch.
    while (read(from_parent[0], &c, 1) != 1) {
    }
    _exit(c == 'x' ? 0 : 1);
  }
  close(to_parent[1]);
  close(from_parent[0]);
  std::string text;
  char buffer[4096];
  auto complete = [&] {
    size_t end = text.find('\n');
    return end != std::string::npos && text.size() >= end + 1 + sizeof(uint64_t);
  };
  while (!complete()) {
    ssize_t n = read(to_parent[0], buffer, sizeof buffer);
    if (n <= 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  close(to_parent[0]);
  ASSERT_EQ(text.rfind("FAIL", 0), std::string::npos) << text;
  ASSERT_TRUE(complete()) << text;
  size_t end_of_json = text.find('\n');
  uint64_t break_when_blocked = 0;
  std::memcpy(&break_when_blocked, text.data() + end_of_json + 1, sizeof break_when_blocked);
  json own_view = json::parse(text.substr(0, end_of_json));
  own_view["process"]["brk"] = break_when_blocked;
  usleep(20000);  // let it block in read()

  json remote_process;
  {
    PtraceAttachment attachment = PtraceAttachment::seize_and_interrupt(child);
    RemoteSyscalls remote(attachment);
    auto start = std::chrono::steady_clock::now();
    remote_process = dump_process_attrs(child, remote);
    auto end = std::chrono::steady_clock::now();
    RecordProperty(
        "dump_process_attrs_us",
        std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(end - start).count()));
  }
  release_and_expect_clean_exit(from_parent[1], child);

  json expected_process = own_view["process"];
  EXPECT_EQ(strip_running_values(remote_process, expected_process), "");
  strip_running_values(expected_process, expected_process);
  EXPECT_EQ(remote_process, expected_process)
      << json::diff(expected_process, remote_process).dump();
  // The thread part of the process dump is what a thread dump of the leader by itself gives.
  EXPECT_EQ(remote_process["thread"], own_view["thread"])
      << json::diff(own_view["thread"], remote_process["thread"]).dump();
}

TEST(ProcessAttrs, SecondThreadDumpedThroughItsOwnRemoteSyscalls) {
  int to_parent[2], from_parent[2];
  ASSERT_EQ(pipe(to_parent), 0);
  ASSERT_EQ(pipe(from_parent), 0);
  pid_t child = fork();
  if (child == 0) {
    close(to_parent[0]);
    close(from_parent[1]);
    static int report_fd, wait_fd;
    report_fd = to_parent[1];
    wait_fd = from_parent[0];
    pthread_t thread;
    auto body = [](void*) -> void* {
      static char alt_stack[32768];
      stack_t stack{alt_stack, 0, sizeof alt_stack};
      sigaltstack(&stack, nullptr);
      prctl(PR_SET_NAME, "second", 0, 0, 0);
      prctl(PR_SET_PDEATHSIG, SIGWINCH, 0, 0, 0);
      prctl(PR_SET_TIMERSLACK, 77777, 0, 0, 0);
      // A timer aimed at this thread: the process dump names it by its tid.
      sigevent event{};
      event.sigev_notify = SIGEV_THREAD_ID;
      event.sigev_signo = SIGURG;
      event._sigev_un._tid = gettid();
      int id = 0;
      ::syscall(SYS_timer_create, CLOCK_MONOTONIC, &event, &id);
      pid_t tid = gettid();
      if (write(report_fd, &tid, sizeof tid) != sizeof tid) _exit(2);
      char c;
      while (read(wait_fd, &c, 1) != 1) {
      }
      _exit(c == 'x' ? 0 : 1);
    };
    pthread_create(&thread, nullptr, body, nullptr);
    for (;;) pause();
  }
  close(to_parent[1]);
  close(from_parent[0]);
  pid_t tid = 0;
  ASSERT_EQ(read(to_parent[0], &tid, sizeof tid), static_cast<ssize_t>(sizeof tid));
  close(to_parent[0]);
  usleep(20000);
  json process, thread, leader_marker;
  std::string failure;
  try {
    PtraceAttachment leader = PtraceAttachment::seize_and_interrupt(child);
    PtraceAttachment second = PtraceAttachment::seize_and_interrupt(tid);
    RemoteSyscalls leader_remote(leader);
    RemoteSyscalls second_remote(second);
    process = dump_process_attrs(child, leader_remote);
    thread = dump_thread_attrs(tid, second_remote);
    leader_marker = dump_thread_attrs(child, leader_remote);
  } catch (const std::exception& e) {
    failure = e.what();
  }
  release_and_expect_clean_exit(from_parent[1], child);
  ASSERT_EQ(failure, "");

  // The leader's thread attributes are in the process's; its own record only says so, and its
  // thread batch stays empty (the process's late batch restores them).
  EXPECT_EQ(leader_marker, json({{"leader", true}}));
  SyscallBatch leader_batch;
  append_thread_restore(leader_marker, leader_batch);
  EXPECT_EQ(leader_batch.count(), 0u);
  EXPECT_EQ(thread["comm"], "second");
  EXPECT_EQ(thread["pdeath_signal"], SIGWINCH);
  EXPECT_EQ(thread["timer_slack_ns"], 77777);
  EXPECT_EQ(thread["sigaltstack"]["size"], 32768);
  EXPECT_EQ(thread["creds"], process["thread"]["creds"]);
  EXPECT_NE(process["thread"]["comm"], "second");
  EXPECT_EQ(process["thread"]["sigaltstack"]["flags"], SS_DISABLE);
  ASSERT_EQ(process["posix_timers"].size(), 1u);
  EXPECT_EQ(process["posix_timers"][0]["notify_tid"], tid);
  EXPECT_EQ(process["posix_timers"][0]["signal"], SIGURG);
}

TEST(ProcessAttrs, LateRestoreBatchRunsInATargetThroughRemoteSyscalls) {
  std::string failure = in_child([] {
    json dumped;
    std::string setup = set_up_original_and_dump(&dumped);
    return setup.empty() ? "JSON " + dumped.dump() : setup;
  });
  ASSERT_EQ(failure.rfind("JSON ", 0), 0u) << failure;
  json original = json::parse(failure.substr(5));
  std::string seize_failure;
  original["thread"]["seccomp"] =
      dump_seccomp_of_child([] { return install_test_filters(true); }, &seize_failure);
  ASSERT_EQ(seize_failure, "");

  int wake[2];
  ASSERT_EQ(pipe(wake), 0);
  pid_t target = fork();
  if (target == 0) {
    close(wake[1]);
    char c;
    while (read(wake[0], &c, 1) != 1) {
    }
    // The filters restored into this process refuse getppid with EACCES.
    _exit(::syscall(SYS_getppid) == -1 && errno == EACCES ? 0 : 1);
  }
  close(wake[0]);
  usleep(20000);
  for (json& timer : original["posix_timers"])
    if (timer["notify"].get<int>() & SIGEV_THREAD_ID) timer["notify_tid"] = target;
  json restored;
  std::string steps;
  try {
    PtraceAttachment attachment = PtraceAttachment::seize_and_interrupt(target);
    RemoteSyscalls remote(attachment);
    SyscallBatch batch;
    append_late_process_restore(original, batch);
    steps = failed_steps(batch, remote.run_batch(batch));
    restored = dump_process_attrs(target, remote);
  } catch (const std::exception& e) {
    steps = e.what();
  }
  release_and_expect_clean_exit(wake[1], target);
  ASSERT_EQ(steps, "");

  EXPECT_EQ(strip_running_values(restored, original), "");
  strip_running_values(original, original);
  EXPECT_EQ(restored["itimers"], original["itimers"]);
  EXPECT_EQ(restored["posix_timers"], original["posix_timers"]);
  EXPECT_EQ(restored["dumpable"], original["dumpable"]);
  // comm and timer slack of the leader are restored natively, before this batch.
  for (const char* early : {"comm", "timer_slack_ns"}) {
    restored["thread"].erase(early);
    original["thread"].erase(early);
  }
  EXPECT_EQ(restored["thread"], original["thread"])
      << json::diff(original["thread"], restored["thread"]).dump();
}

// The dump starts the leader's first injected syscall without waiting for it (it overlaps the
// memory dump). The seccomp filters are read by ptrace, which answers ESRCH until that syscall's
// stop: the attribute dump must wait for it. To make "not stopped yet" certain rather than a race,
// the target shares its only CPU with a real-time thread that spins until a deadline.
TEST(ProcessAttrs, DumpWaitsForTheUnawaitedSyscallBeforePtraceReads) {
  cpu_set_t ours;
  ASSERT_EQ(sched_getaffinity(0, sizeof ours, &ours), 0);
  if (CPU_COUNT(&ours) < 2) GTEST_SKIP() << "needs two CPUs (one is taken by a spinning thread)";
  int busy_cpu = -1;
  for (int cpu = 0; cpu < CPU_SETSIZE && busy_cpu < 0; ++cpu)
    if (CPU_ISSET(cpu, &ours)) busy_cpu = cpu;
  cpu_set_t busy_only, all_but_busy = ours;
  CPU_ZERO(&busy_only);
  CPU_SET(busy_cpu, &busy_only);
  CPU_CLR(busy_cpu, &all_but_busy);

  int ready[2], wake[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(wake), 0);
  pid_t target = fork();
  if (target == 0) {
    close(ready[0]);
    close(wake[1]);
    if (sched_setaffinity(0, sizeof busy_only, &busy_only) != 0) _exit(4);
    install_test_filters(true);
    if (write(ready[1], "r", 1) != 1) _exit(2);
    char c;
    while (read(wake[0], &c, 1) != 1) {
    }
    _exit(0);
  }
  close(ready[1]);
  close(wake[0]);
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  close(ready[0]);
  usleep(20000);  // let it block in read()
  ASSERT_EQ(sched_setaffinity(0, sizeof all_but_busy, &all_but_busy), 0);

  json dumped;
  std::string failure;
  std::atomic<int> spinner_state{0};  // 0 starting, 1 spinning, 2 could not become real-time
  std::atomic<int> spinner_errno{0};
  std::thread spinner;
  try {
    // Seized before the spinner starts: the stop needs the target to run.
    PtraceAttachment attachment = PtraceAttachment::seize_and_interrupt(target);
    RemoteSyscalls remote(attachment);
    spinner = std::thread([&] {
      sched_param fifo{};
      fifo.sched_priority = 1;
      if (sched_setaffinity(0, sizeof busy_only, &busy_only) != 0 ||
          sched_setscheduler(0, SCHED_FIFO, &fifo) != 0) {
        spinner_errno = errno;
        spinner_state = 2;
        return;
      }
      spinner_state = 1;
      // Well under the real-time throttling budget (950 ms per second).
      auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
      while (std::chrono::steady_clock::now() < until) {
      }
    });
    while (spinner_state == 0) std::this_thread::yield();
    if (spinner_state == 1) {
      remote.start_unawaited_syscall(SYS_getpid);
      dumped = dump_process_attrs(target, remote);
    }
  } catch (const std::exception& e) {
    failure = e.what();
  }
  if (spinner.joinable()) spinner.join();
  sched_setaffinity(0, sizeof ours, &ours);
  release_and_expect_clean_exit(wake[1], target);
  ASSERT_NE(spinner_state, 2) << "could not run a SCHED_FIFO thread: "
                              << std::strerror(spinner_errno);
  ASSERT_EQ(failure, "");
  EXPECT_EQ(dumped["thread"]["seccomp"]["filters"].size(), 2u) << dumped["thread"]["seccomp"];
}

}  // namespace
}  // namespace cryo::ckpt
