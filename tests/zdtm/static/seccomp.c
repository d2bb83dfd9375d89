/* Seccomp filters: two filters (the second with SECCOMP_FILTER_FLAG_LOG) under no_new_privs.
 * After restore both still act, in their order, and the kernel counts two filters. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "zdtmtst.h"

/* Refuses syscall `number` with `err`, allows everything else. */
#define DENY_FILTER(number, err)                                           \
  {                                                                        \
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)), \
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (number), 0, 1),               \
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (err)),              \
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)                       \
  }

static int status_field(const char* name) {
  FILE* f = fopen("/proc/self/status", "r");
  if (!f) test_fail("open status");
  char line[256];
  int value = -1;
  size_t len = strlen(name);
  while (fgets(line, sizeof line, f))
    if (strncmp(line, name, len) == 0 && line[len] == ':') value = atoi(line + len + 1);
  fclose(f);
  return value;
}

static void check_filters(void) {
  struct utsname name;
  if (uname(&name) != -1 || errno != EPERM) test_fail("uname not refused with EPERM");
  if (syscall(SYS_getppid) != -1 || errno != EACCES) test_fail("getppid not refused with EACCES");
  if (status_field("Seccomp") != SECCOMP_MODE_FILTER)
    test_fail("Seccomp %d", status_field("Seccomp"));
  if (status_field("Seccomp_filters") != 2)
    test_fail("Seccomp_filters %d", status_field("Seccomp_filters"));
  if (status_field("NoNewPrivs") != 1) test_fail("NoNewPrivs");
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  struct sock_filter deny_uname[] = DENY_FILTER(SYS_uname, EPERM);
  struct sock_filter deny_getppid[] = DENY_FILTER(SYS_getppid, EACCES);
  struct sock_fprog first = {4, deny_uname};
  struct sock_fprog second = {4, deny_getppid};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) test_fail("no_new_privs");
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &first) != 0) test_fail("seccomp 1");
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_LOG, &second) != 0)
    test_fail("seccomp 2");
  check_filters();
  test_ready();
  test_wait_for_sigterm();
  check_filters();
  test_pass();
}
