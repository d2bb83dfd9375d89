/* Interval timers: a periodic ITIMER_REAL keeps firing after restore with its interval, and the
 * CPU-time timers keep their interval and have not gained time. */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "zdtmtst.h"

static volatile sig_atomic_t alarms;
static void on_alarm(int sig) {
  (void)sig;
  alarms++;
}

static long long us(struct timeval tv) {
  return tv.tv_sec * 1000000LL + tv.tv_usec;
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_alarm;
  action.sa_flags = SA_RESTART;
  sigaction(SIGALRM, &action, NULL);
  /* The kernel adds one scheduler tick to a CPU-time timer each time it is set (its HZ decides
   * how much): measure it here. */
  struct itimerval probe = {{0, 0}, {100, 0}}, probed;
  if (setitimer(ITIMER_VIRTUAL, &probe, NULL) || getitimer(ITIMER_VIRTUAL, &probed))
    test_fail("probe setitimer");
  long long tick = us(probed.it_value) - 100000000LL;
  if (tick < 1000) tick = 10000;
  /* A CPU-time timer may show up to two ticks more each time it is set (the tick above, and CPU
   * time of the thread group not yet folded into the sample it was set against): once here and
   * once per restore, two restores in the two-rounds mode; plus two ticks of slack. The timers
   * must not have gained more than that (a restore that re-armed them from the values set here
   * instead of the dumped ones would only be caught if it also ignored consumed CPU time). */
  long long allowed_gain = 8 * tick;
  struct itimerval real = {{0, 20000}, {0, 20000}};
  struct itimerval virt = {{3, 0}, {100, 0}};
  struct itimerval prof = {{0, 500000}, {200, 0}};
  if (setitimer(ITIMER_REAL, &real, NULL) || setitimer(ITIMER_VIRTUAL, &virt, NULL) ||
      setitimer(ITIMER_PROF, &prof, NULL))
    test_fail("setitimer");
  test_ready();
  test_wait_for_sigterm();

  struct itimerval now;
  getitimer(ITIMER_REAL, &now);
  if (us(now.it_interval) != 20000) test_fail("real interval %lld us", us(now.it_interval));
  if (us(now.it_value) <= 0 || us(now.it_value) > 20000)
    test_fail("real value %lld us", us(now.it_value));
  getitimer(ITIMER_VIRTUAL, &now);
  if (us(now.it_interval) != 3000000) test_fail("virtual interval %lld us", us(now.it_interval));
  if (us(now.it_value) <= 0 || us(now.it_value) > 100000000LL + allowed_gain)
    test_fail("virtual value %lld us (tick %lld us)", us(now.it_value), tick);
  getitimer(ITIMER_PROF, &now);
  if (us(now.it_interval) != 500000) test_fail("prof interval %lld us", us(now.it_interval));
  if (us(now.it_value) <= 0 || us(now.it_value) > 200000000LL + allowed_gain)
    test_fail("prof value %lld us (tick %lld us)", us(now.it_value), tick);
  /* The periodic real timer still fires. */
  sig_atomic_t seen = alarms;
  struct timespec pause = {0, 10000000};
  for (int i = 0; i < 500 && alarms < seen + 3; i++) nanosleep(&pause, NULL);
  if (alarms < seen + 3) test_fail("ITIMER_REAL stopped firing (%d alarms)", (int)alarms);
  test_pass();
}
