#include "common/interruption.h"

#include <signal.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <iostream>
#include <string>

#include "common/error.h"
#include "common/signal_names.h"

namespace cryo {

namespace {

constexpr std::array<int, 4> kHeldSignals = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

// Written by a signal handler (any thread of the process): a lock-free atomic.
std::atomic<int> recorded_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);

// Nested guards (a command that checkpoints several containers) install the handlers once.
int guard_depth = 0;
std::array<struct sigaction, kHeldSignals.size()> previous_held{};
struct sigaction previous_pipe {};

void record_signal(int sig) {
  int none = 0;
  recorded_signal.compare_exchange_strong(none, sig);
}

}  // namespace

DeferredTermination::DeferredTermination() {
  if (guard_depth++ > 0) return;
  struct sigaction record {};
  record.sa_handler = record_signal;
  // Restarted: a held signal must not turn a blocking syscall of the work into an error.
  record.sa_flags = SA_RESTART;
  sigfillset(&record.sa_mask);
  for (size_t i = 0; i < kHeldSignals.size(); ++i)
    if (::sigaction(kHeldSignals[i], &record, &previous_held[i]) < 0)
      throw_errno("sigaction " + signal_name(kHeldSignals[i]));
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  if (::sigaction(SIGPIPE, &ignore, &previous_pipe) < 0)
    throw_errno("sigaction " + signal_name(SIGPIPE));
}

DeferredTermination::~DeferredTermination() {
  if (--guard_depth > 0) return;
  for (size_t i = 0; i < kHeldSignals.size(); ++i)
    ::sigaction(kHeldSignals[i], &previous_held[i], nullptr);
  ::sigaction(SIGPIPE, &previous_pipe, nullptr);
}

int deferred_termination_signal() {
  return recorded_signal.load(std::memory_order_relaxed);
}

void throw_if_interrupted() {
  int sig = deferred_termination_signal();
  if (sig != 0) throw Error("interrupted by " + signal_name(sig), EINTR);
}

void raise_deferred_termination() {
  int sig = deferred_termination_signal();
  if (sig == 0) return;
  std::cout.flush();
  std::fflush(nullptr);
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  ::sigaction(sig, &default_action, nullptr);
  sigset_t only;
  sigemptyset(&only);
  sigaddset(&only, sig);
  ::pthread_sigmask(SIG_UNBLOCK, &only, nullptr);
  ::raise(sig);
}

}  // namespace cryo
