// Cost of dumping the attributes of one simple process (dump_process_attrs): total, and the part
// spent in the one batch round trip into the target. Prints figures; never a test.
//   attrs_dump_bench [rounds]
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "checkpoint/process_attrs.h"
#include "checkpoint/process_attrs_internal.h"
#include "checkpoint/ptrace.h"
#include "checkpoint/remote_syscall.h"

using namespace cryo::ckpt;
using Clock = std::chrono::steady_clock;

namespace {

double us_since(Clock::time_point start) {
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = argc > 1 ? std::atoi(argv[1]) : 50;
  pid_t child = fork();
  if (child == 0) {
    for (;;) pause();
  }
  usleep(20000);
  int exit_code = 0;
  try {
    PtraceAttachment attachment = PtraceAttachment::seize_and_interrupt(child);
    RemoteSyscalls remote(attachment);
    // First dump: includes mapping the scratch area and injecting the blob.
    auto start = Clock::now();
    nlohmann::json first = dump_process_attrs(child, remote);
    double first_us = us_since(start);

    std::vector<double> totals, round_trips, single_syscalls;
    size_t batch_entries = 0;
    for (int i = 0; i < rounds; ++i) {
      double round_trip_us = 0;
      start = Clock::now();
      attrs::dump_process_attrs_with(child, [&](const SyscallBatch& batch) {
        batch_entries = batch.count();
        auto run_start = Clock::now();
        auto block = remote.run_batch(batch);
        round_trip_us = us_since(run_start);
        return block;
      });
      totals.push_back(us_since(start));
      round_trips.push_back(round_trip_us);
      start = Clock::now();
      remote.syscall(SYS_getpid);
      single_syscalls.push_back(us_since(start));
    }
    std::printf("dump_process_attrs of a simple process (%zu batched syscalls, %d rounds)\n",
                batch_entries, rounds);
    std::printf("  first dump (maps scratch, injects blob): %8.1f us\n", first_us);
    std::printf("  median total:                            %8.1f us\n", median(totals));
    std::printf("  median batch round trip:                 %8.1f us\n", median(round_trips));
    std::printf("  median /proc, ptrace and parsing:        %8.1f us\n",
                median(totals) - median(round_trips));
    std::printf("  one injected syscall (for scale):        %8.1f us\n", median(single_syscalls));
    std::printf("  attributes JSON: %zu bytes\n", first.dump().size());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "attrs_dump_bench: %s\n", e.what());
    exit_code = 1;
  }
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  return exit_code;
}
