/* POSIX timers: ids with a gap between them, a periodic signal timer, a one-shot SIGEV_NONE timer,
 * a thread-directed timer and a disarmed one. After restore the ids, clocks, signals, values and
 * intervals are the same (as /proc/self/timers and timer_gettime show), the gap is still a gap
 * and the periodic timer keeps firing. Raw syscalls: the kernel ids are what is restored. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "zdtmtst.h"

static volatile sig_atomic_t ticks;
static void on_usr1(int sig, siginfo_t* info, void* context) {
  (void)sig;
  (void)context;
  if (info->si_code == SI_TIMER && info->si_value.sival_int == 77) ticks++;
}

static int create(clockid_t clock, int notify, int signo, int value) {
  struct sigevent event;
  memset(&event, 0, sizeof event);
  event.sigev_notify = notify;
  event.sigev_signo = signo;
  event.sigev_value.sival_int = value;
  if (notify & SIGEV_THREAD_ID) event._sigev_un._tid = gettid();
  int id = -1;
  if (syscall(SYS_timer_create, clock, &event, &id) != 0)
    test_fail("timer_create: %s", strerror(errno));
  return id;
}

static void arm(int id, long value_ns, long interval_ns) {
  struct itimerspec spec = {{interval_ns / 1000000000, interval_ns % 1000000000},
                            {value_ns / 1000000000, value_ns % 1000000000}};
  if (syscall(SYS_timer_settime, id, 0, &spec, NULL) != 0) test_fail("timer_settime %d", id);
}

static long long ns(struct timespec ts) {
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void read_proc_timers(char* out, size_t size) {
  int fd = open("/proc/self/timers", O_RDONLY);
  if (fd < 0) test_fail("open /proc/self/timers");
  ssize_t n = read(fd, out, size - 1);
  close(fd);
  out[n > 0 ? n : 0] = 0;
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_sigaction = on_usr1;
  action.sa_flags = SA_SIGINFO | SA_RESTART;
  sigaction(SIGUSR1, &action, NULL);

  int periodic = create(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGUSR1, 77);
  int doomed = create(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGUSR2, 1);
  int quiet = create(CLOCK_BOOTTIME, SIGEV_NONE, 0, 0);
  int directed = create(CLOCK_REALTIME, SIGEV_SIGNAL | SIGEV_THREAD_ID, SIGUSR2, 5);
  int cpu = create(CLOCK_PROCESS_CPUTIME_ID, SIGEV_NONE, 0, 0);
  if (syscall(SYS_timer_delete, doomed) != 0) test_fail("timer_delete");
  arm(periodic, 10000000, 10000000);
  arm(quiet, 300000000000L, 0);
  arm(cpu, 50000000000L, 7000000);
  char before[4096];
  read_proc_timers(before, sizeof before);
  test_ready();
  test_wait_for_sigterm();

  char after[4096];
  read_proc_timers(after, sizeof after);
  if (strcmp(before, after) != 0) test_fail("/proc/self/timers changed:\n%s---\n%s", before, after);
  struct itimerspec spec;
  if (syscall(SYS_timer_gettime, doomed, &spec) == 0 || errno != EINVAL)
    test_fail("deleted timer %d exists again", doomed);
  if (syscall(SYS_timer_gettime, periodic, &spec) != 0) test_fail("periodic timer lost");
  if (ns(spec.it_interval) != 10000000) test_fail("periodic interval %lld", ns(spec.it_interval));
  if (syscall(SYS_timer_gettime, quiet, &spec) != 0) test_fail("SIGEV_NONE timer lost");
  if (ns(spec.it_value) <= 0 || ns(spec.it_value) > 300000000000LL)
    test_fail("SIGEV_NONE value %lld", ns(spec.it_value));
  if (syscall(SYS_timer_gettime, directed, &spec) != 0) test_fail("thread timer lost");
  if (ns(spec.it_value) != 0) test_fail("disarmed timer armed: %lld", ns(spec.it_value));
  if (syscall(SYS_timer_gettime, cpu, &spec) != 0) test_fail("CPU-time timer lost");
  if (ns(spec.it_interval) != 7000000 || ns(spec.it_value) <= 0 ||
      ns(spec.it_value) > 50010000000LL)
    test_fail("CPU-time timer %lld/%lld", ns(spec.it_value), ns(spec.it_interval));
  sig_atomic_t seen = ticks;
  struct timespec pause = {0, 10000000};
  for (int i = 0; i < 500 && ticks < seen + 3; i++) nanosleep(&pause, NULL);
  if (ticks < seen + 3) test_fail("periodic timer stopped firing");
  test_pass();
}
