/* A typical event loop: blocked in epoll_wait on a periodic timerfd and a signalfd for SIGTERM
 * while it is dumped. After restore the event loop goes on (epoll_wait is retried after EINTR),
 * SIGTERM is read through the signalfd (with the data of its registration), and the timer keeps
 * ticking. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "zdtmtst.h"

enum { kTimerData = 0x71, kSignalData = 0x51 };

int main(int argc, char** argv) {
  test_init(argc, argv); /* blocks SIGTERM: it can only arrive through the signalfd */
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  int sfd = signalfd(-1, &term, SFD_NONBLOCK);
  int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  struct itimerspec every = {.it_value = {0, 20000000}, .it_interval = {0, 20000000}};
  if (sfd < 0 || tfd < 0 || timerfd_settime(tfd, 0, &every, NULL) < 0) test_fail("setup");
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = kTimerData};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev) < 0) test_fail("add timerfd");
  ev.data.u64 = kSignalData;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev) < 0) test_fail("add signalfd");
  test_ready();
  uint64_t ticks_before_term = 0, ticks_after_term = 0;
  int terminated = 0;
  while (!terminated || ticks_after_term == 0) {
    struct epoll_event got[2];
    int n = epoll_wait(ep, got, 2, -1);
    /* epoll_wait is never restarted: the stop of the dump (ptrace or freezer) ends it with
     * EINTR, as any event loop expects. */
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) test_fail("epoll_wait: %m");
    for (int i = 0; i < n; i++) {
      if (got[i].data.u64 == kTimerData) {
        uint64_t t = 0;
        if (read(tfd, &t, sizeof t) != sizeof t) continue;
        if (terminated)
          ticks_after_term += t;
        else
          ticks_before_term += t;
      } else if (got[i].data.u64 == kSignalData) {
        struct signalfd_siginfo si;
        if (read(sfd, &si, sizeof si) != sizeof si || si.ssi_signo != SIGTERM)
          test_fail("signalfd gave no SIGTERM");
        terminated = 1;
      } else {
        test_fail("unknown epoll data %llx", (unsigned long long)got[i].data.u64);
      }
    }
  }
  if (ticks_before_term == 0) test_fail("the timer never ticked before SIGTERM");
  test_pass();
}
