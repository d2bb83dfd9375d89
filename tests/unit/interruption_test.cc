// Termination signals held by DeferredTermination: recorded, turned into an error at the next
// safe point, and the process ends by them afterwards. Each case runs in a child process (the
// recorded signal is process-wide and never forgotten).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "common/error.h"
#include "common/interruption.h"

namespace cryo {
namespace {

bool is_default(int sig) {
  struct sigaction now {};
  ::sigaction(sig, nullptr, &now);
  return now.sa_handler == SIG_DFL;
}

TEST(Interruption, HeldSignalBecomesAnErrorThenEndsTheProcess) {
  EXPECT_EXIT(
      {
        {
          DeferredTermination hold;
          ::kill(::getpid(), SIGTERM);  // delivered before kill() returns: recorded, not fatal
          ::kill(::getpid(), SIGINT);   // the first one wins
          if (deferred_termination_signal() != SIGTERM) std::_Exit(10);
          try {
            throw_if_interrupted();
            std::_Exit(11);
          } catch (const Error& e) {
            if (std::string(e.what()) != "interrupted by SIGTERM" || e.sys_errno() != EINTR)
              std::_Exit(12);
          }
        }
        if (!is_default(SIGTERM) || !is_default(SIGPIPE)) std::_Exit(13);
        raise_deferred_termination();
        std::_Exit(14);  // not reached: SIGTERM ends the process
      },
      ::testing::KilledBySignal(SIGTERM), "");
}

TEST(Interruption, NothingHeldNothingRaised) {
  EXPECT_EXIT(
      {
        {
          DeferredTermination outer;
          DeferredTermination inner;  // nested: the handlers stay until the outer one ends
        }
        throw_if_interrupted();
        raise_deferred_termination();
        std::_Exit(is_default(SIGINT) ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(Interruption, SigpipeIsIgnoredWhileHeld) {
  EXPECT_EXIT(
      {
        int p[2];
        if (::pipe(p) != 0) std::_Exit(20);
        ::close(p[0]);
        {
          DeferredTermination hold;
          if (::write(p[1], "x", 1) != -1 || errno != EPIPE) std::_Exit(21);
        }
        std::_Exit(deferred_termination_signal() == 0 ? 0 : 22);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace cryo
