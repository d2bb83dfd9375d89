/* A process holds a pidfd of its child: after restore the pidfd refers to the restored child
 * (fdinfo Pid is the child's pid, a signal sent through it kills the child, waitid(P_PIDFD)
 * reaps it) and keeps O_NONBLOCK. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtmtst.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

int main(int argc, char** argv) {
  test_init(argc, argv);
  pid_t child = fork();
  if (child == 0) {
    sigset_t none;
    sigemptyset(&none);
    for (;;) sigsuspend(&none);
  }
  int pidfd = (int)syscall(SYS_pidfd_open, child, O_NONBLOCK);
  if (pidfd < 0) test_fail("pidfd_open");
  test_ready();
  test_wait_for_sigterm();
  if (!(fcntl(pidfd, F_GETFL) & O_NONBLOCK)) test_fail("pidfd lost O_NONBLOCK");
  char path[64], info[4096] = {0}, expected[64];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", pidfd);
  FILE* f = fopen(path, "r");
  if (f == NULL) test_fail("open %s", path);
  size_t n = fread(info, 1, sizeof info - 1, f);
  fclose(f);
  info[n] = 0;
  snprintf(expected, sizeof expected, "Pid:\t%d\n", child);
  if (strstr(info, expected) == NULL) test_fail("pidfd does not refer to pid %d", child);
  if (syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) < 0) test_fail("pidfd_send_signal");
  siginfo_t si;
  memset(&si, 0, sizeof si);
  /* The pidfd is non-blocking: waitid says EAGAIN until the child has exited; poll waits. */
  struct pollfd exited = {.fd = pidfd, .events = POLLIN};
  if (poll(&exited, 1, -1) != 1) test_fail("poll on the pidfd");
  if (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED) < 0) test_fail("waitid P_PIDFD: %m");
  if (si.si_pid != child || si.si_code != CLD_KILLED || si.si_status != SIGKILL)
    test_fail("child %d ended with code %d status %d", si.si_pid, si.si_code, si.si_status);
  test_pass();
}
