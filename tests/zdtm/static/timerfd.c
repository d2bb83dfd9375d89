/* timerfds: a relative periodic timer keeps its interval and no more time left than it had; an
 * expired one-shot timer keeps its unread tick; an absolute CLOCK_REALTIME timer keeps its
 * expiry time. */
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "zdtmtst.h"

static uint64_t ns(struct timespec t) {
  return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  int periodic = timerfd_create(CLOCK_MONOTONIC, 0);
  struct itimerspec spec = {.it_value = {3600, 0}, .it_interval = {7, 5000}};
  if (periodic < 0 || timerfd_settime(periodic, 0, &spec, NULL) < 0) test_fail("periodic");
  int expired = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  struct itimerspec soon = {.it_value = {0, 1000}};
  if (expired < 0 || timerfd_settime(expired, 0, &soon, NULL) < 0) test_fail("one-shot");
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  struct itimerspec at = {.it_value = {now.tv_sec + 7200, 0}};
  int absolute = timerfd_create(CLOCK_REALTIME, 0);
  if (absolute < 0 || timerfd_settime(absolute, TFD_TIMER_ABSTIME, &at, NULL) < 0)
    test_fail("absolute");
  for (;;) { /* until the one-shot has expired */
    struct itimerspec left;
    timerfd_gettime(expired, &left);
    if (left.it_value.tv_sec == 0 && left.it_value.tv_nsec == 0) break;
    usleep(100);
  }
  test_ready();
  test_wait_for_sigterm();
  struct itimerspec left;
  if (timerfd_gettime(periodic, &left) < 0) test_fail("timerfd_gettime");
  if (ns(left.it_value) == 0 || ns(left.it_value) > 3600ull * 1000000000ull)
    test_fail("periodic timer has %llu ns left", (unsigned long long)ns(left.it_value));
  if (left.it_interval.tv_sec != 7 || left.it_interval.tv_nsec != 5000)
    test_fail("periodic interval lost");
  uint64_t ticks = 0;
  if (read(expired, &ticks, sizeof ticks) != sizeof ticks || ticks != 1)
    test_fail("expired one-shot: %llu ticks", (unsigned long long)ticks);
  if (timerfd_gettime(absolute, &left) < 0) test_fail("timerfd_gettime");
  clock_gettime(CLOCK_REALTIME, &now);
  int64_t off = (int64_t)(ns(now) + ns(left.it_value)) -
                (int64_t)((uint64_t)at.it_value.tv_sec * 1000000000ull);
  if (off > 1000000000 || off < -1000000000)
    test_fail("absolute timer moved by %lld ns", (long long)off);
  test_pass();
}
