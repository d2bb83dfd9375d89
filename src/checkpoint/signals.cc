// Signal dispositions (process-wide) and the alternate signal stack (per thread).
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>

#include "checkpoint/process_attrs_internal.h"
#include "common/error.h"

namespace cryo::ckpt::attrs {

namespace {

// struct sigaction as rt_sigaction takes it on x86_64 (not glibc's, whose mask is 128 bytes).
struct KernelSigaction {
  uint64_t handler;
  uint64_t flags;
  uint64_t restorer;
  uint64_t mask;
};
static_assert(sizeof(KernelSigaction) == 32);

constexpr int kMaxSignal = 64;
constexpr uint64_t kKernelSigsetSize = 8;

bool can_change(int signal) {
  return signal != SIGKILL && signal != SIGSTOP;
}

}  // namespace

void queue_sigactions_dump(DumpQueries& queries, json& out) {
  struct Query {
    int signal;
    size_t index;
    BatchArg result;
  };
  std::vector<Query> batch_queries;
  for (int signal = 1; signal <= kMaxSignal; ++signal) {
    if (!can_change(signal)) continue;
    BatchArg result = queries.batch().reserve(sizeof(KernelSigaction));
    size_t index =
        queries.add(SYS_rt_sigaction, {static_cast<uint64_t>(signal), 0, result, kKernelSigsetSize},
                    "rt_sigaction(" + std::to_string(signal) + ")");
    batch_queries.push_back(Query{signal, index, result});
  }
  queries.then([&out, batch_queries](const BatchOutput& output) {
    json sigactions = json::array();
    for (const Query& query : batch_queries) {
      output.checked_result(query.index);
      auto action = output.read<KernelSigaction>(query.result);
      // Default dispositions are what a restored process starts from; only the others are kept.
      if (action.handler == 0 && action.flags == 0 && action.mask == 0 && action.restorer == 0)
        continue;
      sigactions.push_back({{"signal", query.signal},
                            {"handler", action.handler},
                            {"flags", action.flags},
                            {"restorer", action.restorer},
                            {"mask", action.mask}});
    }
    out["sigactions"] = std::move(sigactions);
  });
}

void restore_sigactions(const json& sigactions) {
  KernelSigaction actions[kMaxSignal + 1] = {};
  for (const json& entry : sigactions) {
    int signal = entry.at("signal").get<int>();
    if (signal < 1 || signal > kMaxSignal || !can_change(signal))
      throw Error("sigaction of invalid signal " + std::to_string(signal) + " in the image");
    actions[signal] =
        KernelSigaction{entry.at("handler").get<uint64_t>(), entry.at("flags").get<uint64_t>(),
                        entry.at("restorer").get<uint64_t>(), entry.at("mask").get<uint64_t>()};
  }
  // Every signal is set, the default ones too: the restoring process is a fork of cryo and
  // inherited cryo's own dispositions.
  for (int signal = 1; signal <= kMaxSignal; ++signal) {
    if (!can_change(signal)) continue;
    if (::syscall(SYS_rt_sigaction, signal, &actions[signal], nullptr, kKernelSigsetSize) != 0)
      throw_errno("rt_sigaction(" + std::to_string(signal) + ")");
  }
}

void queue_sigaltstack_dump(DumpQueries& queries, json& out) {
  BatchArg result = queries.batch().reserve(sizeof(stack_t));
  size_t index = queries.add(SYS_sigaltstack, {0, result}, "sigaltstack");
  queries.then([&out, result, index](const BatchOutput& output) {
    output.checked_result(index);
    auto stack = output.read<stack_t>(result);
    out["sigaltstack"] = {{"sp", reinterpret_cast<uint64_t>(stack.ss_sp)},
                          {"flags", stack.ss_flags},
                          {"size", stack.ss_size}};
  });
}

void append_sigaltstack_restore(const json& sigaltstack, SyscallBatch& batch) {
  int flags = sigaltstack.at("flags").get<int>();
  if (flags & SS_DISABLE) return;  // a new thread starts without one
  stack_t stack{};
  stack.ss_sp = reinterpret_cast<void*>(sigaltstack.at("sp").get<uint64_t>());
  // SS_ONSTACK only reports that the thread was running on the stack when dumped.
  stack.ss_flags = flags & ~SS_ONSTACK;
  stack.ss_size = sigaltstack.at("size").get<size_t>();
  add_step(batch, SYS_sigaltstack, {batch.data(&stack, sizeof stack), 0}, "sigaltstack");
}

}  // namespace cryo::ckpt::attrs
