/* A non-blocking signalfd for SIGUSR1 and SIGRTMIN+1 reads those signals after restore (the
 * SIGUSR1 sent before the dump is pending on the process and must be read too). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "zdtmtst.h"

int main(int argc, char** argv) {
  test_init(argc, argv);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGUSR1);
  sigaddset(&mask, SIGRTMIN + 1);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  int sfd = signalfd(-1, &mask, SFD_NONBLOCK);
  if (sfd < 0) test_fail("signalfd");
  raise(SIGUSR1);
  test_ready();
  test_wait_for_sigterm();
  if (!(fcntl(sfd, F_GETFL) & O_NONBLOCK)) test_fail("signalfd lost O_NONBLOCK");
  struct signalfd_siginfo si;
  if (read(sfd, &si, sizeof si) != sizeof si || si.ssi_signo != SIGUSR1)
    test_fail("pending SIGUSR1 not read through the signalfd");
  raise(SIGRTMIN + 1);
  if (read(sfd, &si, sizeof si) != sizeof si || si.ssi_signo != (unsigned)(SIGRTMIN + 1))
    test_fail("SIGRTMIN+1 not read through the signalfd");
  if (read(sfd, &si, sizeof si) >= 0 || errno != EAGAIN) test_fail("unexpected signal read");
  test_pass();
}
