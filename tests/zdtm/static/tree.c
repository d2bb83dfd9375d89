/* A process tree: a child in its own process group with a grandchild, a child in its own
 * session, and a zombie child. After restore every PID, parent, process group and session must
 * be the same, and the zombie must still hold its exit code. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtmtst.h"

struct proc {
  pid_t pid, ppid, pgid, sid;
  char state;
};

static int read_stat(pid_t pid, struct proc* out) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE* f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char* p = strrchr(buf, ')');
  if (!p) return -1;
  out->pid = pid;
  return sscanf(p + 2, "%c %d %d %d", &out->state, &out->ppid, &out->pgid, &out->sid) == 4 ? 0 : -1;
}

static void sleep_forever(void) {
  for (;;) pause();
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  int sync_pipe[2], session_pipe[2];
  if (pipe(sync_pipe) || pipe(session_pipe)) test_fail("pipe");
  pid_t a = fork();
  if (a == 0) {
    setpgid(0, 0);
    pid_t g = fork();
    if (g == 0) sleep_forever();
    if (write(sync_pipe[1], &g, sizeof g) != sizeof g) _exit(1);
    sleep_forever();
  }
  pid_t b = fork();
  if (b == 0) {
    setsid();
    if (write(session_pipe[1], "s", 1) != 1) _exit(1);
    sleep_forever();
  }
  pid_t z = fork();
  if (z == 0) _exit(7);
  pid_t g;
  char s;
  if (read(sync_pipe[0], &g, sizeof g) != sizeof g || read(session_pipe[0], &s, 1) != 1)
    test_fail("sync");
  /* The zombie must exist before the dump. */
  struct proc zp;
  while (read_stat(z, &zp) == 0 && zp.state != 'Z') usleep(1000);
  pid_t pids[] = {getpid(), a, g, b, z};
  struct proc before[5];
  for (int i = 0; i < 5; i++)
    if (read_stat(pids[i], &before[i])) test_fail("stat of %d", pids[i]);
  test_ready();
  test_wait_for_sigterm();
  for (int i = 0; i < 5; i++) {
    struct proc now;
    if (read_stat(pids[i], &now)) test_fail("process %d is gone", pids[i]);
    if (now.ppid != before[i].ppid && i != 0)
      test_fail("process %d: parent %d, was %d", pids[i], now.ppid, before[i].ppid);
    if (now.pgid != before[i].pgid)
      test_fail("process %d: group %d, was %d", pids[i], now.pgid, before[i].pgid);
    if (now.sid != before[i].sid)
      test_fail("process %d: session %d, was %d", pids[i], now.sid, before[i].sid);
    if ((now.state == 'Z') != (i == 4)) test_fail("process %d: state %c", pids[i], now.state);
  }
  int status;
  if (waitpid(z, &status, WNOHANG) != z) test_fail("zombie not waitable");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 7) test_fail("zombie status %x", status);
  kill(g, SIGKILL);
  kill(a, SIGKILL);
  kill(b, SIGKILL);
  if (waitpid(a, &status, 0) != a || waitpid(b, &status, 0) != b) test_fail("children not reaped");
  test_pass();
}
