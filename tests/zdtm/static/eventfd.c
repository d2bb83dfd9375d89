/* An eventfd with a 64-bit counter and a semaphore eventfd (non-blocking) keep their counters
 * and flags across dump and restore. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "zdtmtst.h"

int main(int argc, char** argv) {
  test_init(argc, argv);
  const uint64_t big = (uint64_t)1 << 40;
  int counter = eventfd(0, 0);
  int sem = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
  if (counter < 0 || sem < 0) test_fail("eventfd");
  if (write(counter, &big, sizeof big) != sizeof big) test_fail("write");
  test_ready();
  test_wait_for_sigterm();
  if (!(fcntl(sem, F_GETFL) & O_NONBLOCK)) test_fail("semaphore eventfd lost O_NONBLOCK");
  uint64_t value = 0;
  for (int i = 0; i < 3; i++)
    if (read(sem, &value, sizeof value) != sizeof value || value != 1)
      test_fail("semaphore read %d gave %llu", i, (unsigned long long)value);
  if (read(sem, &value, sizeof value) >= 0) test_fail("semaphore not empty after 3 reads");
  if (read(counter, &value, sizeof value) != sizeof value || value != big)
    test_fail("counter %llu, expected %llu", (unsigned long long)value, (unsigned long long)big);
  test_pass();
}
