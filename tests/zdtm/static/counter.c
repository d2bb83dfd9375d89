/* The simplest process: counts in memory while it waits, and checks after restore that its
 * counter, its stack and a private anonymous region kept their values and that time moved on. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#include "zdtmtst.h"

static volatile unsigned long counter;

int main(int argc, char** argv) {
  test_init(argc, argv);
  size_t size = 4 << 20;
  unsigned char* region =
      mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (region == MAP_FAILED) test_fail("mmap");
  test_fill_random(region, size, 42);
  unsigned char on_stack[8192];
  test_fill_random(on_stack, sizeof on_stack, 7);
  struct timespec before;
  clock_gettime(CLOCK_MONOTONIC, &before);
  test_ready();
  /* Count while waiting: the restored process must go on from where it was. */
  unsigned long expected = 0;
  sigset_t none;
  sigemptyset(&none);
  while (1) {
    struct timespec pause = {0, 1000000};
    nanosleep(&pause, NULL);
    counter = counter + 1;
    expected++;
    if (counter != expected) test_fail("counter %lu, expected %lu", counter, expected);
    sigset_t pending;
    sigpending(&pending);
    if (sigismember(&pending, SIGTERM)) break;
  }
  test_wait_for_sigterm();
  size_t bad = test_check_random(region, size, 42);
  if (bad != (size_t)-1) test_fail("region differs at offset %zu", bad);
  bad = test_check_random(on_stack, sizeof on_stack, 7);
  if (bad != (size_t)-1) test_fail("stack differs at offset %zu", bad);
  struct timespec after;
  clock_gettime(CLOCK_MONOTONIC, &after);
  if (after.tv_sec < before.tv_sec) test_fail("CLOCK_MONOTONIC went back");
  test_pass();
}
