/* Small per-process and per-thread state: personality, comm of the process and of a second
 * thread, umask, cwd, pdeath signal, dumpable, no_new_privs, child subreaper, THP disable,
 * timer slack. All the same after restore. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtmtst.h"

struct state {
  unsigned long persona;
  char comm[16];
  mode_t umask;
  char cwd[4096];
  int pdeath, dumpable, nnp, subreaper, thp, slack;
};

static void read_state(struct state* s) {
  memset(s, 0, sizeof *s);
  s->persona = (unsigned long)personality(0xffffffff);
  prctl(PR_GET_NAME, s->comm, 0, 0, 0);
  s->umask = umask(0);
  umask(s->umask);
  if (!getcwd(s->cwd, sizeof s->cwd)) test_fail("getcwd");
  prctl(PR_GET_PDEATHSIG, &s->pdeath, 0, 0, 0);
  s->dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
  s->nnp = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
  prctl(PR_GET_CHILD_SUBREAPER, &s->subreaper, 0, 0, 0);
  s->thp = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
  s->slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
}

static pthread_barrier_t barrier;
static char thread_comm_after[16];
static int thread_pdeath_after;

static void* second_thread(void* arg) {
  (void)arg;
  prctl(PR_SET_NAME, "zdtm-worker", 0, 0, 0);
  prctl(PR_SET_PDEATHSIG, SIGWINCH, 0, 0, 0);
  pthread_barrier_wait(&barrier); /* set up */
  pthread_barrier_wait(&barrier); /* main thread got SIGTERM */
  prctl(PR_GET_NAME, thread_comm_after, 0, 0, 0);
  prctl(PR_GET_PDEATHSIG, &thread_pdeath_after, 0, 0, 0);
  return NULL;
}

static void on_usr2(int sig) {
  (void)sig;
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  /* The restored process's parent may go away; the pdeath signal must not kill the test. */
  signal(SIGUSR2, on_usr2);
  if (personality(ADDR_NO_RANDOMIZE) == -1) test_fail("personality");
  prctl(PR_SET_NAME, "zdtm-misc", 0, 0, 0);
  umask(0027);
  if (chdir("/usr/share") != 0) test_fail("chdir");
  if (prctl(PR_SET_PDEATHSIG, SIGUSR2, 0, 0, 0)) test_fail("pdeathsig");
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) test_fail("dumpable");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) test_fail("no_new_privs");
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) test_fail("subreaper");
  if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)) test_fail("thp disable");
  if (prctl(PR_SET_TIMERSLACK, 200000, 0, 0, 0)) test_fail("timer slack");
  pthread_barrier_init(&barrier, NULL, 2);
  pthread_t thread;
  if (pthread_create(&thread, NULL, second_thread, NULL)) test_fail("pthread_create");
  pthread_barrier_wait(&barrier);
  struct state before;
  read_state(&before);
  test_ready();
  test_wait_for_sigterm();
  pthread_barrier_wait(&barrier);
  pthread_join(thread, NULL);

  struct state after;
  read_state(&after);
  if (after.persona != before.persona) test_fail("personality %#lx", after.persona);
  if (strcmp(after.comm, before.comm)) test_fail("comm '%s'", after.comm);
  if (after.umask != before.umask) test_fail("umask %o", after.umask);
  if (strcmp(after.cwd, before.cwd)) test_fail("cwd '%s'", after.cwd);
  if (after.pdeath != before.pdeath) test_fail("pdeath signal %d", after.pdeath);
  if (after.dumpable != before.dumpable) test_fail("dumpable %d", after.dumpable);
  if (after.nnp != before.nnp) test_fail("no_new_privs %d", after.nnp);
  if (after.subreaper != before.subreaper) test_fail("subreaper %d", after.subreaper);
  if (after.thp != before.thp) test_fail("thp_disable %d", after.thp);
  if (after.slack != before.slack) test_fail("timer slack %d", after.slack);
  if (strcmp(thread_comm_after, "zdtm-worker")) test_fail("thread comm '%s'", thread_comm_after);
  if (thread_pdeath_after != SIGWINCH) test_fail("thread pdeath signal %d", thread_pdeath_after);
  test_pass();
}
