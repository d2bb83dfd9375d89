/* Needs --file-locks (tests/zdtm/static/file_locks.opts). A POSIX write lock on a range, a
 * flock and an OFD read lock, each on a file next to the output file: after restore a child
 * (another lock owner) conflicts with each of them. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtmtst.h"

static int make_file(const char* out, const char* suffix, char* path) {
  snprintf(path, PATH_MAX, "%s.%s", out, suffix);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || ftruncate(fd, 200) < 0) test_fail("create %s", path);
  return fd;
}

/* In a child: 0 when every lock conflicts as it should, else the number of the failed check. */
static int check_conflicts(const char* posix, const char* flocked, const char* ofd, pid_t owner) {
  int p = open(posix, O_RDWR);
  struct flock probe = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 50, .l_len = 1};
  if (fcntl(p, F_SETLK, &probe) == 0 || (errno != EAGAIN && errno != EACCES)) return 1;
  if (fcntl(p, F_GETLK, &probe) < 0 || probe.l_type != F_WRLCK || probe.l_pid != owner) return 2;
  int f = open(flocked, O_RDONLY);
  if (flock(f, LOCK_SH | LOCK_NB) == 0 || errno != EWOULDBLOCK) return 3;
  int o = open(ofd, O_RDWR);
  struct flock w = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 150, .l_len = 1};
  if (fcntl(o, F_OFD_SETLK, &w) == 0 || errno != EAGAIN) return 4;
  return 0;
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  char posix[PATH_MAX], flocked[PATH_MAX], ofd[PATH_MAX];
  int p = make_file(argv[1], "posix", posix);
  int f = make_file(argv[1], "flock", flocked);
  int o = make_file(argv[1], "ofd", ofd);
  struct flock range = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 100};
  if (fcntl(p, F_SETLK, &range) < 0) test_fail("F_SETLK");
  if (flock(f, LOCK_EX) < 0) test_fail("flock");
  struct flock shared = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 0};
  if (fcntl(o, F_OFD_SETLK, &shared) < 0) test_fail("F_OFD_SETLK");
  test_ready();
  test_wait_for_sigterm();
  pid_t child = fork();
  if (child == 0) _exit(check_conflicts(posix, flocked, ofd, getppid()));
  int status = 0;
  waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    test_fail("lock check %d failed after restore", WEXITSTATUS(status));
  /* The files stay for a restore after --leave-running (the driver removes its work directory). */
  test_pass();
}
