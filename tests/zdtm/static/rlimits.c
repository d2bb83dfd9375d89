/* Resource limits: every limit is the same after restore, lowered ones and unlimited ones. */
#define _GNU_SOURCE
#include <string.h>
#include <sys/resource.h>

#include "zdtmtst.h"

int main(int argc, char** argv) {
  test_init(argc, argv);
  struct rlimit nofile = {300, 2000}, core = {0, 0}, stack = {4 << 20, 64 << 20},
                nproc = {5000, 6000}, as = {1ULL << 40, RLIM_INFINITY}, cpu = {3600, 7200};
  if (setrlimit(RLIMIT_NOFILE, &nofile) || setrlimit(RLIMIT_CORE, &core) ||
      setrlimit(RLIMIT_STACK, &stack) || setrlimit(RLIMIT_NPROC, &nproc) ||
      setrlimit(RLIMIT_CPU, &cpu))
    test_fail("setrlimit");
  struct rlimit current_as;
  getrlimit(RLIMIT_AS, &current_as);
  if (current_as.rlim_max == RLIM_INFINITY && setrlimit(RLIMIT_AS, &as)) test_fail("setrlimit AS");
  struct rlimit before[RLIM_NLIMITS];
  for (int r = 0; r < RLIM_NLIMITS; r++) getrlimit(r, &before[r]);
  test_ready();
  test_wait_for_sigterm();
  for (int r = 0; r < RLIM_NLIMITS; r++) {
    struct rlimit now;
    getrlimit(r, &now);
    if (now.rlim_cur != before[r].rlim_cur || now.rlim_max != before[r].rlim_max)
      test_fail("rlimit %d: %llu/%llu, was %llu/%llu", r, (unsigned long long)now.rlim_cur,
                (unsigned long long)now.rlim_max, (unsigned long long)before[r].rlim_cur,
                (unsigned long long)before[r].rlim_max);
  }
  test_pass();
}
