/* System V message queues in the test's own IPC namespace keep their ids, keys, owners, limits
 * and messages (types, contents and order), with the namespace's raised msgmnb: the queue holds
 * more than the default limit. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <unistd.h>

#include "zdtmtst.h"

#define KEY 0x2a2a0201
#define COUNT 12
#define BIG 3000 /* 12 * 3000 bytes: above the default msgmnb of 16384 */

struct message {
  long type;
  char text[BIG];
};

static void set_msgmnb(const char* value) {
  int fd = open("/proc/sys/kernel/msgmnb", O_WRONLY);
  if (fd < 0 || write(fd, value, strlen(value)) != (ssize_t)strlen(value))
    test_fail("raising kernel.msgmnb: %m");
  close(fd);
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  if (unshare(CLONE_NEWIPC) != 0) test_fail("unshare CLONE_NEWIPC: %m");
  set_msgmnb("65536");
  int queue = msgget(KEY, IPC_CREAT | 0620);
  int empty = msgget(IPC_PRIVATE, 0600);
  if (queue < 0 || empty < 0) test_fail("msgget: %m");
  static struct message m;
  for (int i = 0; i < COUNT; i++) {
    m.type = 1 + i % 3;
    test_fill_random(m.text, BIG, (uint64_t)i + 100);
    if (msgsnd(queue, &m, (size_t)(BIG - i), IPC_NOWAIT) != 0) test_fail("msgsnd %d: %m", i);
  }
  struct msqid_ds ds;
  if (msgctl(queue, IPC_STAT, &ds) != 0) test_fail("IPC_STAT: %m");
  ds.msg_perm.gid = 777;
  ds.msg_qbytes = 60000;
  if (msgctl(queue, IPC_SET, &ds) != 0) test_fail("IPC_SET: %m");

  test_ready();
  test_wait_for_sigterm();

  if (msgget(KEY, 0) != queue) test_fail("key %#x: id changed", KEY);
  if (msgctl(empty, IPC_STAT, &ds) != 0 || ds.msg_qnum != 0) test_fail("empty queue: %m");
  if (msgctl(queue, IPC_STAT, &ds) != 0) test_fail("IPC_STAT: %m");
  if (ds.msg_qnum != COUNT || ds.msg_qbytes != 60000 || ds.msg_perm.gid != 777 ||
      (ds.msg_perm.mode & 0777) != 0620)
    test_fail("queue: qnum %lu qbytes %lu gid %u mode %o", (unsigned long)ds.msg_qnum,
              (unsigned long)ds.msg_qbytes, ds.msg_perm.gid, ds.msg_perm.mode);
  /* Type 2 first: selection by type still works, and in order within the type. */
  for (int i = 1; i < COUNT; i += 3) {
    ssize_t n = msgrcv(queue, &m, BIG, 2, IPC_NOWAIT);
    if (n != BIG - i || m.type != 2) test_fail("type-2 message %d: %zd bytes", i, n);
    char expected[BIG];
    test_fill_random(expected, BIG, (uint64_t)i + 100);
    if (memcmp(m.text, expected, (size_t)n) != 0) test_fail("message %d differs", i);
  }
  for (int i = 0; i < COUNT; i++) {
    if (i % 3 == 1) continue;
    ssize_t n = msgrcv(queue, &m, BIG, 0, IPC_NOWAIT);
    if (n != BIG - i || m.type != 1 + i % 3)
      test_fail("message %d: %zd bytes type %ld", i, n, m.type);
    char expected[BIG];
    test_fill_random(expected, BIG, (uint64_t)i + 100);
    if (memcmp(m.text, expected, (size_t)n) != 0) test_fail("message %d differs", i);
  }
  if (msgrcv(queue, &m, BIG, 0, IPC_NOWAIT) >= 0 || errno != ENOMSG)
    test_fail("more messages than were sent");
  test_pass();
}
