/* Pending signals survive: blocked standard and real-time signals queued to the process (shared
 * queue) and to one thread (its own queue), with their siginfo values. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "zdtmtst.h"

static atomic_int thread_ready;
static atomic_int thread_go;
static const char* thread_failure;

static void* thread_main(void* arg) {
  (void)arg;
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGRTMIN + 3);
  sigaddset(&mask, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &mask, NULL);
  atomic_store(&thread_ready, 1);
  while (!atomic_load(&thread_go)) usleep(1000);
  siginfo_t info;
  struct timespec zero = {0, 0};
  if (sigtimedwait(&mask, &info, &zero) != SIGUSR2)
    thread_failure = "thread's SIGUSR2 lost";
  else if (sigtimedwait(&mask, &info, &zero) != SIGRTMIN + 3 || info.si_value.sival_int != 303)
    thread_failure = "thread's real-time signal lost";
  else if (sigtimedwait(&mask, &info, &zero) != -1)
    thread_failure = "unexpected extra signal in the thread";
  return NULL;
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGUSR1);
  sigaddset(&mask, SIGRTMIN + 1);
  sigaddset(&mask, SIGRTMIN + 3);
  sigaddset(&mask, SIGUSR2);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  pthread_t thread;
  pthread_create(&thread, NULL, thread_main, NULL);
  while (!atomic_load(&thread_ready)) usleep(1000);
  pid_t tid = 0;
  /* Find the thread's tid through /proc (pthread has no portable way). */
  {
    char path[64];
    for (pid_t t = getpid() + 1; t < getpid() + 1000; t++) {
      snprintf(path, sizeof path, "/proc/%d/task/%d", getpid(), t);
      if (access(path, F_OK) == 0) {
        tid = t;
        break;
      }
    }
  }
  if (!tid) test_fail("thread not found");
  union sigval value;
  kill(getpid(), SIGUSR1);
  value.sival_int = 101;
  sigqueue(getpid(), SIGRTMIN + 1, value);
  value.sival_int = 102;
  sigqueue(getpid(), SIGRTMIN + 1, value);
  siginfo_t info;
  memset(&info, 0, sizeof info);
  info.si_signo = SIGRTMIN + 3;
  info.si_code = SI_QUEUE;
  info.si_pid = getpid();
  info.si_uid = getuid();
  info.si_value.sival_int = 303;
  syscall(SYS_rt_tgsigqueueinfo, getpid(), tid, SIGRTMIN + 3, &info);
  syscall(SYS_tgkill, getpid(), tid, SIGUSR2);
  test_ready();
  test_wait_for_sigterm();
  struct timespec zero = {0, 0};
  sigset_t shared;
  sigemptyset(&shared);
  sigaddset(&shared, SIGUSR1);
  sigaddset(&shared, SIGRTMIN + 1);
  if (sigtimedwait(&shared, &info, &zero) != SIGUSR1) test_fail("SIGUSR1 lost");
  if (sigtimedwait(&shared, &info, &zero) != SIGRTMIN + 1 || info.si_value.sival_int != 101)
    test_fail("first queued real-time signal lost");
  if (sigtimedwait(&shared, &info, &zero) != SIGRTMIN + 1 || info.si_value.sival_int != 102)
    test_fail("second queued real-time signal lost");
  atomic_store(&thread_go, 1);
  pthread_join(thread, NULL);
  if (thread_failure) test_fail("%s", thread_failure);
  test_pass();
}
