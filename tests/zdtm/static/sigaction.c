/* Signal dispositions: handlers with various flags and masks, ignored signals, defaults. After
 * restore every disposition (handler, flags, restorer, mask) is the same and handlers still run. */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "zdtmtst.h"

static volatile sig_atomic_t handled[65];

/* Signals 32 and 33 belong to glibc (thread cancellation, setxid): sigaction() refuses them. */
static int is_glibc_internal(int sig) {
  return sig == 32 || sig == 33;
}

static void on_signal(int sig) {
  handled[sig]++;
}
static void on_siginfo(int sig, siginfo_t* info, void* context) {
  (void)context;
  if (info->si_signo == sig) handled[sig]++;
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  const int flags_cycle[] = {
      0, SA_RESTART, SA_SIGINFO, SA_NODEFER | SA_RESTART, SA_RESETHAND, SA_SIGINFO | SA_ONSTACK};
  int n = 0;
  for (int sig = 1; sig < SIGRTMIN; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP || sig == SIGTERM || is_glibc_internal(sig)) continue;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    int flags = flags_cycle[n % 6];
    action.sa_flags = flags;
    if (flags & SA_SIGINFO)
      action.sa_sigaction = on_siginfo;
    else
      action.sa_handler = (n % 7 == 3) ? SIG_IGN : on_signal;
    sigemptyset(&action.sa_mask);
    sigaddset(&action.sa_mask, (sig % 30) + 1);
    if (n % 2) sigaddset(&action.sa_mask, SIGRTMIN + n % 8);
    if (sigaction(sig, &action, NULL) != 0) test_fail("sigaction %d", sig);
    n++;
  }
  struct sigaction rt;
  memset(&rt, 0, sizeof rt);
  rt.sa_sigaction = on_siginfo;
  rt.sa_flags = SA_SIGINFO | SA_RESTART;
  sigfillset(&rt.sa_mask);
  if (sigaction(SIGRTMAX - 1, &rt, NULL) != 0) test_fail("sigaction SIGRTMAX-1");

  struct sigaction before[65];
  for (int sig = 1; sig <= 64; sig++)
    if (!is_glibc_internal(sig)) sigaction(sig, NULL, &before[sig]);
  test_ready();
  test_wait_for_sigterm();

  for (int sig = 1; sig <= 64; sig++) {
    if (is_glibc_internal(sig)) continue;
    struct sigaction now;
    if (sigaction(sig, NULL, &now) != 0) test_fail("query %d", sig);
    if (now.sa_handler != before[sig].sa_handler) test_fail("signal %d: handler changed", sig);
    if (now.sa_flags != before[sig].sa_flags)
      test_fail("signal %d: flags %#x, were %#x", sig, now.sa_flags, before[sig].sa_flags);
    if (now.sa_restorer != before[sig].sa_restorer) test_fail("signal %d: restorer changed", sig);
    if (memcmp(&now.sa_mask, &before[sig].sa_mask, 8) != 0)
      test_fail("signal %d: mask changed", sig);
  }
  /* The handlers run and return through the restored sa_restorer. */
  raise(SIGUSR1);
  raise(SIGRTMAX - 1);
  if (before[SIGUSR1].sa_handler != SIG_IGN && !handled[SIGUSR1]) test_fail("SIGUSR1 not handled");
  if (!handled[SIGRTMAX - 1]) test_fail("SIGRTMAX-1 not handled");
  test_pass();
}
