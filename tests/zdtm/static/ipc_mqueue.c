/* POSIX message queues in the test's own IPC namespace: queues keep their attributes, modes and
 * messages (priority order, FIFO within a priority); fds on them keep their access mode and
 * O_NONBLOCK; a queue no fd holds is there too; the namespace's raised fs.mqueue.msg_max lets a
 * queue larger than the default limit be created again. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <sched.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtmtst.h"

#define MAXMSG 16 /* above the default fs.mqueue.msg_max of 10 */

static void write_sysctl(const char* path, const char* value) {
  int fd = open(path, O_WRONLY);
  if (fd < 0 || write(fd, value, strlen(value)) != (ssize_t)strlen(value))
    test_fail("writing %s: %m", path);
  close(fd);
}

static void expect(mqd_t q, const char* text, unsigned priority) {
  char buf[256];
  unsigned got = 0;
  ssize_t n = mq_receive(q, buf, sizeof buf, &got);
  if (n != (ssize_t)strlen(text) || memcmp(buf, text, (size_t)n) != 0 || got != priority)
    test_fail("expected '%s' (%u), got %zd bytes '%.*s' (%u): %m", text, priority, n,
              n > 0 ? (int)n : 0, buf, got);
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  if (unshare(CLONE_NEWIPC) != 0) test_fail("unshare CLONE_NEWIPC: %m");
  write_sysctl("/proc/sys/fs/mqueue/msg_max", "20");
  struct mq_attr attr = {.mq_maxmsg = MAXMSG, .mq_msgsize = 256};
  mqd_t rw = mq_open("/zdtm-first", O_CREAT | O_EXCL | O_RDWR, 0640, &attr);
  if (rw < 0) test_fail("mq_open first: %m");
  mqd_t reader = mq_open("/zdtm-first", O_RDONLY | O_NONBLOCK);
  if (reader < 0) test_fail("mq_open reader: %m");
  struct mq_attr small = {.mq_maxmsg = 4, .mq_msgsize = 32};
  mqd_t other = mq_open("/zdtm-second", O_CREAT | O_EXCL | O_WRONLY, 0600, &small);
  if (other < 0) test_fail("mq_open second: %m");
  if (mq_send(rw, "one", 3, 1) || mq_send(rw, "two", 3, 5) || mq_send(rw, "three", 5, 5) ||
      mq_send(rw, "four", 4, 3) || mq_send(rw, "five", 4, 0))
    test_fail("mq_send: %m");
  if (mq_send(other, "kept", 4, 2)) test_fail("mq_send second: %m");
  close(other);
  if (fchown(rw, 1111, 2222) != 0) test_fail("fchown: %m");

  test_ready();
  test_wait_for_sigterm();

  struct mq_attr now;
  if (mq_getattr(rw, &now) != 0) test_fail("mq_getattr: %m");
  if (now.mq_maxmsg != MAXMSG || now.mq_msgsize != 256 || now.mq_curmsgs != 5 ||
      (now.mq_flags & O_NONBLOCK))
    test_fail("first queue: maxmsg %ld msgsize %ld curmsgs %ld flags %lx", now.mq_maxmsg,
              now.mq_msgsize, now.mq_curmsgs, now.mq_flags);
  if (mq_getattr(reader, &now) != 0 || !(now.mq_flags & O_NONBLOCK))
    test_fail("the reader lost O_NONBLOCK");
  if ((fcntl(reader, F_GETFL) & O_ACCMODE) != O_RDONLY) test_fail("the reader is not read-only");
  if (mq_send(reader, "x", 1, 0) == 0 || errno != EBADF) test_fail("the reader can send");
  struct stat st;
  if (fstat(rw, &st) != 0 || (st.st_mode & 0777) != 0640 || st.st_uid != 1111 || st.st_gid != 2222)
    test_fail("first queue: mode %o uid %u gid %u", st.st_mode, st.st_uid, st.st_gid);
  expect(reader, "two", 5);
  expect(rw, "three", 5);
  expect(reader, "four", 3);
  expect(reader, "one", 1);
  expect(reader, "five", 0);
  char buf[256];
  if (mq_receive(reader, buf, sizeof buf, NULL) >= 0 || errno != EAGAIN)
    test_fail("more messages than were sent");
  /* The same queue by name, and the one no fd held. */
  if (mq_send(rw, "again", 5, 4) != 0) test_fail("mq_send after restore: %m");
  mqd_t by_name = mq_open("/zdtm-first", O_RDONLY | O_NONBLOCK);
  if (by_name < 0) test_fail("mq_open by name after restore: %m");
  expect(by_name, "again", 4);
  mqd_t second = mq_open("/zdtm-second", O_RDONLY | O_NONBLOCK);
  if (second < 0) test_fail("the second queue is gone: %m");
  if (mq_getattr(second, &now) != 0 || now.mq_maxmsg != 4 || now.mq_msgsize != 32)
    test_fail("second queue attributes differ");
  expect(second, "kept", 2);
  test_pass();
}
