// Interval timers (ITIMER_REAL/VIRTUAL/PROF) and POSIX timers of a process.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "checkpoint/process_attrs_internal.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/strings.h"

#ifndef PR_TIMER_CREATE_RESTORE_IDS
#define PR_TIMER_CREATE_RESTORE_IDS 77
#define PR_TIMER_CREATE_RESTORE_IDS_OFF 0
#define PR_TIMER_CREATE_RESTORE_IDS_ON 1
#endif

namespace cryo::ckpt::attrs {

namespace {

struct IntervalTimerKind {
  int which;
  const char* name;
};
constexpr IntervalTimerKind kIntervalTimers[] = {
    {ITIMER_REAL, "real"}, {ITIMER_VIRTUAL, "virtual"}, {ITIMER_PROF, "prof"}};

uint64_t to_us(const timeval& tv) {
  return static_cast<uint64_t>(tv.tv_sec) * 1000000 + static_cast<uint64_t>(tv.tv_usec);
}
timeval from_us(uint64_t us) {
  return timeval{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
}
uint64_t to_ns(const timespec& ts) {
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000 + static_cast<uint64_t>(ts.tv_nsec);
}
timespec from_ns(uint64_t ns) {
  return timespec{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
}

long parse_long(std::string_view text, int base, const std::string& what) {
  std::string s(trim(text));
  char* end = nullptr;
  errno = 0;
  long value = std::strtol(s.c_str(), &end, base);
  if (s.empty() || errno != 0 || *end != '\0')
    throw Error("cannot parse " + what + ": '" + s + "'");
  return value;
}

}  // namespace

void queue_itimers_dump(DumpQueries& queries, json& out) {
  struct Query {
    const char* name;
    size_t index;
    BatchArg result;
  };
  std::vector<Query> batch_queries;
  for (const IntervalTimerKind& kind : kIntervalTimers) {
    BatchArg result = queries.batch().reserve(sizeof(itimerval));
    size_t index = queries.add(SYS_getitimer, {static_cast<uint64_t>(kind.which), result},
                               std::string("getitimer(") + kind.name + ")");
    batch_queries.push_back(Query{kind.name, index, result});
  }
  queries.then([&out, batch_queries](const BatchOutput& output) {
    json itimers = json::object();
    for (const Query& query : batch_queries) {
      output.checked_result(query.index);
      auto timer = output.read<itimerval>(query.result);
      itimers[query.name] = {{"value_us", to_us(timer.it_value)},
                             {"interval_us", to_us(timer.it_interval)}};
    }
    out["itimers"] = std::move(itimers);
  });
}

// /proc/PID/timers, one block per timer:
//   ID: 3 / signal: 10/00000000deadbeef / notify: signal/tid.1234 / ClockID: 1
// "notify" is the kind without SIGEV_THREAD_ID ("signal", "none"), then "tid" when
// SIGEV_THREAD_ID was set, else "pid".
std::vector<ProcTimer> parse_proc_timers(const std::string& text) {
  std::vector<ProcTimer> timers;
  for (const std::string& line : split(text, '\n')) {
    if (trim(line).empty()) continue;
    size_t colon = line.find(':');
    if (colon == std::string::npos) throw Error("unexpected line in timers: '" + line + "'");
    std::string key = line.substr(0, colon);
    std::string value(trim(std::string_view(line).substr(colon + 1)));
    if (key == "ID") {
      timers.emplace_back();
      timers.back().id = static_cast<int>(parse_long(value, 10, "timer id"));
      continue;
    }
    if (timers.empty()) throw Error("timers: '" + key + "' before any ID");
    ProcTimer& timer = timers.back();
    if (key == "signal") {
      size_t slash = value.find('/');
      if (slash == std::string::npos) throw Error("timers: bad signal line '" + value + "'");
      timer.signal = static_cast<int>(parse_long(value.substr(0, slash), 10, "timer signal"));
      timer.sigev_value = std::strtoull(value.c_str() + slash + 1, nullptr, 16);
    } else if (key == "notify") {
      size_t slash = value.find('/');
      size_t dot = value.find('.', slash);
      if (slash == std::string::npos || dot == std::string::npos)
        throw Error("timers: bad notify line '" + value + "'");
      std::string kind = value.substr(0, slash);
      std::string target = value.substr(slash + 1, dot - slash - 1);
      if (kind == "signal")
        timer.notify = SIGEV_SIGNAL;
      else if (kind == "none")
        timer.notify = SIGEV_NONE;
      else
        throw Error("timers: unsupported notify kind '" + kind + "'");
      if (target == "tid") timer.notify |= SIGEV_THREAD_ID;
      timer.notify_pid = static_cast<pid_t>(parse_long(value.substr(dot + 1), 10, "notify pid"));
    } else if (key == "ClockID") {
      timer.clock = static_cast<int>(parse_long(value, 10, "timer clock"));
    }
  }
  return timers;
}

void queue_posix_timers_dump(pid_t pid, DumpQueries& queries, json& out) {
  std::vector<ProcTimer> timers =
      parse_proc_timers(fs::read_file("/proc/" + std::to_string(pid) + "/timers"));
  std::sort(timers.begin(), timers.end(),
            [](const ProcTimer& a, const ProcTimer& b) { return a.id < b.id; });
  struct Query {
    ProcTimer timer;
    pid_t notify_tid;
    size_t index;
    BatchArg result;
  };
  std::vector<Query> batch_queries;
  for (const ProcTimer& timer : timers) {
    // A thread-directed timer names its thread as the process itself sees it.
    pid_t notify_tid = (timer.notify & SIGEV_THREAD_ID) ? innermost_tid(pid, timer.notify_pid) : 0;
    BatchArg result = queries.batch().reserve(sizeof(itimerspec));
    size_t index = queries.add(SYS_timer_gettime, {static_cast<uint64_t>(timer.id), result},
                               "timer_gettime(" + std::to_string(timer.id) + ")");
    batch_queries.push_back(Query{timer, notify_tid, index, result});
  }
  queries.then([&out, batch_queries](const BatchOutput& output) {
    json posix_timers = json::array();
    for (const Query& query : batch_queries) {
      output.checked_result(query.index);
      auto spec = output.read<itimerspec>(query.result);
      posix_timers.push_back({{"id", query.timer.id},
                              {"clock", query.timer.clock},
                              {"signal", query.timer.signal},
                              {"sigev_value", query.timer.sigev_value},
                              {"notify", query.timer.notify},
                              {"notify_tid", query.notify_tid},
                              {"value_ns", to_ns(spec.it_value)},
                              {"interval_ns", to_ns(spec.it_interval)}});
    }
    out["posix_timers"] = std::move(posix_timers);
  });
}

void append_timers_restore(const json& attrs, SyscallBatch& batch) {
  for (const IntervalTimerKind& kind : kIntervalTimers) {
    const json& timer = attrs.at("itimers").at(kind.name);
    uint64_t value_us = timer.at("value_us").get<uint64_t>();
    if (value_us == 0) continue;  // disarmed
    itimerval value{from_us(timer.at("interval_us").get<uint64_t>()), from_us(value_us)};
    add_step(batch, SYS_setitimer,
             {static_cast<uint64_t>(kind.which), batch.data(&value, sizeof value), 0},
             std::string("setitimer(") + kind.name + ")");
  }

  const json& posix_timers = attrs.at("posix_timers");
  if (posix_timers.empty()) return;
  // timer_create takes the id to use from its output argument while this mode is on (Linux
  // 6.14+), so every timer gets its dumped id whatever the gaps between them.
  add_step(batch, SYS_prctl, {PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_ON, 0, 0, 0},
           "prctl(PR_TIMER_CREATE_RESTORE_IDS, ON)");
  for (const json& timer : posix_timers) {
    int id = timer.at("id").get<int>();
    sigevent event{};
    event.sigev_value.sival_ptr = reinterpret_cast<void*>(timer.at("sigev_value").get<uint64_t>());
    event.sigev_signo = timer.at("signal").get<int>();
    event.sigev_notify = timer.at("notify").get<int>();
    if (event.sigev_notify & SIGEV_THREAD_ID)
      event._sigev_un._tid = timer.at("notify_tid").get<int>();
    add_step(batch, SYS_timer_create,
             {static_cast<uint64_t>(timer.at("clock").get<int>()), batch.data(&event, sizeof event),
              batch.data(&id, sizeof id)},
             "timer_create(id " + std::to_string(id) + ")");
  }
  add_step(batch, SYS_prctl,
           {PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_OFF, 0, 0, 0},
           "prctl(PR_TIMER_CREATE_RESTORE_IDS, OFF)");
  for (const json& timer : posix_timers) {
    uint64_t value_ns = timer.at("value_ns").get<uint64_t>();
    if (value_ns == 0) continue;  // created disarmed
    int id = timer.at("id").get<int>();
    itimerspec spec{from_ns(timer.at("interval_ns").get<uint64_t>()), from_ns(value_ns)};
    add_step(batch, SYS_timer_settime,
             {static_cast<uint64_t>(id), 0, batch.data(&spec, sizeof spec), 0},
             "timer_settime(id " + std::to_string(id) + ")");
  }
}

}  // namespace cryo::ckpt::attrs
