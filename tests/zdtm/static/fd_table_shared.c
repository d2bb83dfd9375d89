/* Fd tables shared by CLONE_FILES: two children made with clone(CLONE_FILES) share the parent's
 * table, one of them has a child of its own made by fork (its own copy of the table), and another
 * child of the parent has its own table too. After restore the sharers must share one table with
 * the parent again (kcmp KCMP_FILES, and an fd the parent opens afterwards is seen by them, one it
 * closes is gone for them), each fd once, while the other two keep tables of their own. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "zdtm_files.h"

#define PROBE_FD 77  /* opened by the parent after restore: sharers see it */
#define OPENED_FD 60 /* opened by a sharer before the dump: the parent sees it */
#define CLOSED_FD 61 /* closed by the parent after restore: gone for the sharers */

struct sharer {
  int command[2]; /* parent -> sharer: a byte asks it to check its fds */
  int answer[2];  /* sharer -> parent: the result, or during setup its child's pid */
  pid_t pid;
};

static struct sharer sharers[2];

static int kcmp_files(pid_t a, pid_t b) {
  return (int)syscall(SYS_kcmp, a, b, KCMP_FILES, 0, 0);
}

static void sleep_forever(void) {
  for (;;) pause();
}

/* A sharer answers each command with 'y' when the probe fd is there and the closed one gone. */
static int sharer_main(void* arg) {
  struct sharer* self = arg;
  if (self == &sharers[0]) {
    /* An fd opened by a sharer is in the parent's table too. */
    int fd = open("/dev/null", O_RDONLY);
    if (fd < 0 || dup2(fd, OPENED_FD) != OPENED_FD) _exit(1);
    close(fd);
    /* A child made by fork copies the shared table: its own from then on. */
    pid_t child = fork();
    if (child == 0) sleep_forever();
    if (write(self->answer[1], &child, sizeof child) != sizeof child) _exit(1);
  } else {
    pid_t none = 0;
    if (write(self->answer[1], &none, sizeof none) != sizeof none) _exit(1);
  }
  char c;
  while (read(self->command[0], &c, 1) == 1) {
    char verdict = fcntl(PROBE_FD, F_GETFD) >= 0 && fcntl(CLOSED_FD, F_GETFD) < 0 ? 'y' : 'n';
    if (write(self->answer[1], &verdict, 1) != 1) _exit(1);
  }
  _exit(0);
}

static int count_fds_of(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/fd", pid);
  DIR* dir = opendir(path);
  if (!dir) return -1;
  int n = 0;
  for (struct dirent* e; (e = readdir(dir)) != NULL;)
    if (e->d_name[0] != '.') n++;
  closedir(dir);
  return n - 1; /* without the directory's own fd */
}

int main(int argc, char** argv) {
  zf_init(argc, argv);
  static char stacks[2][64 * 1024];
  for (int i = 0; i < 2; i++) {
    zf_setup(pipe(sharers[i].command) == 0 && pipe(sharers[i].answer) == 0, "pipe");
  }
  int closed = open("/dev/null", O_RDONLY);
  zf_setup(closed >= 0 && dup2(closed, CLOSED_FD) == CLOSED_FD, "open the fd closed later");
  close(closed);
  for (int i = 0; i < 2; i++) {
    sharers[i].pid =
        clone(sharer_main, stacks[i] + sizeof stacks[i], CLONE_FILES | SIGCHLD, &sharers[i]);
    zf_setup(sharers[i].pid > 0, "clone CLONE_FILES");
  }
  pid_t grandchild = 0, none;
  zf_setup(read(sharers[0].answer[0], &grandchild, sizeof grandchild) == sizeof grandchild,
           "read the grandchild's pid");
  zf_setup(read(sharers[1].answer[0], &none, sizeof none) == sizeof none, "sharer started");
  pid_t own_table = fork();
  if (own_table == 0) sleep_forever();
  zf_setup(own_table > 0, "fork");
  zf_setup(fcntl(OPENED_FD, F_GETFD) >= 0, "the sharer's fd is in the parent's table");
  int fds_before = count_fds_of(getpid());

  zf_ready_and_wait();

  pid_t self = getpid();
  for (int i = 0; i < 2; i++)
    zf_check(kcmp_files(self, sharers[i].pid) == 0, "sharer %d shares the parent's fd table", i);
  zf_check(kcmp_files(self, grandchild) > 0, "the sharer's forked child has its own fd table");
  zf_check(kcmp_files(self, own_table) > 0, "the forked child has its own fd table");
  zf_check(kcmp_files(sharers[0].pid, grandchild) > 0,
           "the grandchild's table is not the sharer's");
  zf_check(fcntl(OPENED_FD, F_GETFD) >= 0, "the fd opened by a sharer is still there");
  zf_check(count_fds_of(self) == fds_before, "the table holds %d fds, had %d", count_fds_of(self),
           fds_before);
  zf_check(count_fds_of(sharers[0].pid) == fds_before, "a sharer sees %d fds, the table had %d",
           count_fds_of(sharers[0].pid), fds_before);

  /* Through the table itself: what the parent opens and closes now, the sharers see. */
  int probe = open("/dev/null", O_RDONLY);
  zf_setup(probe >= 0 && dup2(probe, PROBE_FD) == PROBE_FD, "open the probe fd");
  close(probe);
  close(CLOSED_FD);
  for (int i = 0; i < 2; i++) {
    char c = 'c', verdict = 0;
    zf_check(write(sharers[i].command[1], &c, 1) == 1, "ask sharer %d", i);
    zf_check(read(sharers[i].answer[0], &verdict, 1) == 1 && verdict == 'y',
             "sharer %d sees the parent's fd changes (verdict %c)", i, verdict ? verdict : '?');
  }

  pid_t ours[] = {sharers[0].pid, sharers[1].pid, own_table};
  kill(grandchild, SIGKILL);
  for (int i = 0; i < 3; i++) {
    kill(ours[i], SIGKILL);
    waitpid(ours[i], NULL, 0);
  }
  zf_finish();
}
