/* An inotify instance with watches 1 and 3 (2 removed) on directories next to the output file:
 * after restore the wds are the same and creations are reported. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtmtst.h"

int main(int argc, char** argv) {
  test_init(argc, argv);
  char a[PATH_MAX], b[PATH_MAX], c[PATH_MAX], file[2 * PATH_MAX];
  snprintf(a, sizeof a, "%s.watch-a", argv[1]);
  snprintf(b, sizeof b, "%s.watch-b", argv[1]);
  snprintf(c, sizeof c, "%s.watch-c", argv[1]);
  if (mkdir(a, 0755) < 0 || mkdir(b, 0755) < 0 || mkdir(c, 0755) < 0) test_fail("mkdir");
  int in = inotify_init1(IN_NONBLOCK);
  if (in < 0) test_fail("inotify_init1");
  if (inotify_add_watch(in, a, IN_CREATE) != 1 || inotify_add_watch(in, b, IN_CREATE) != 2 ||
      inotify_add_watch(in, c, IN_CREATE | IN_DELETE) != 3)
    test_fail("inotify_add_watch");
  inotify_rm_watch(in, 2);
  char buf[4096] __attribute__((aligned(8)));
  while (read(in, buf, sizeof buf) > 0) {
  }
  test_ready();
  test_wait_for_sigterm();
  /* A name not taken yet: the original may have run this part already (--leave-running). */
  char name[32];
  int f = -1;
  for (int i = 0; f < 0 && i < 1000; i++) {
    snprintf(name, sizeof name, "new-%d", i);
    snprintf(file, sizeof file, "%s/%s", c, name);
    f = open(file, O_CREAT | O_EXCL | O_WRONLY, 0644);
  }
  if (f < 0) test_fail("create in the watched dir");
  close(f);
  ssize_t n = read(in, buf, sizeof buf);
  if (n < (ssize_t)sizeof(struct inotify_event)) test_fail("no event after restore (%zd)", n);
  struct inotify_event* e = (struct inotify_event*)buf;
  if (e->wd != 3 || e->mask != IN_CREATE || strcmp(e->name, name) != 0)
    test_fail("first event: wd %d mask %x", e->wd, e->mask);
  if (inotify_add_watch(in, a, IN_CREATE | IN_MASK_CREATE) >= 0 || errno != EEXIST)
    test_fail("the first directory is no longer watched");
  /* The directories stay: with --leave-running the images are restored after this run (the
   * driver removes its work directory). */
  test_pass();
}
