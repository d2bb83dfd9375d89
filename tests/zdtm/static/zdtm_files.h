/* Helpers shared by the open-file zdtm programs (file_*, pipe_queued, fifo, dev_files), on top of
 * lib/zdtmtst.h: checks are collected so one run reports every problem, then one FAIL line. */
#pragma once

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "zdtmtst.h"

static char zf_failures[900];
static char zf_scratch_dir[4096] = "/tmp";

static inline void zf_init(int argc, char** argv) {
  test_init(argc, argv);
  /* Scratch files go next to the output file: the driver's work directory, removed by the
   * driver. They are not removed by the program, since the images of a --leave-running dump
   * still need them after the original has passed and exited. */
  const char* slash = strrchr(argv[1], '/');
  if (slash && slash != argv[1])
    snprintf(zf_scratch_dir, sizeof zf_scratch_dir, "%.*s", (int)(slash - argv[1]), argv[1]);
}

static inline void zf_ready_and_wait(void) {
  test_ready();
  test_wait_for_sigterm();
}

/* Records a failed check with its errno text. */
static inline __attribute__((format(printf, 2, 3))) void zf_check(int ok, const char* fmt, ...) {
  if (ok) return;
  int err = errno;
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  size_t used = strlen(zf_failures);
  snprintf(zf_failures + used, sizeof zf_failures - used, "%s%s (errno: %s)", used ? "; " : "", msg,
           strerror(err));
}

/* Setup failures end the test at once. */
static inline void zf_setup(int ok, const char* what) {
  if (!ok) test_fail("setup: %s: %s", what, strerror(errno));
}

static inline void zf_finish(void) {
  if (zf_failures[0]) test_fail("%s", zf_failures);
  test_pass();
}

/* A scratch path that exists before and after the restore. */
static inline void zf_scratch_path(char* out, size_t size, const char* name) {
  snprintf(out, size, "%s/scratch-%s-%d", zf_scratch_dir, name, (int)getpid());
}
