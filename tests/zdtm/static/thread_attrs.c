/* Per-thread attributes in a process with two threads: credentials changed after the second
 * thread exists (glibc applies them to every thread), a seccomp filter synchronised to both
 * threads (TSYNC), and the second thread's own comm, sigaltstack and pdeath signal. After restore
 * each thread has them all again. Must run as root. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "zdtmtst.h"

struct thread_view {
  uid_t uid[3];
  gid_t gid[3];
  char comm[16];
  stack_t altstack;
  int pdeath;
  int getppid_errno;
};

static pthread_barrier_t barrier;
static struct thread_view worker_before, worker_after;
static char worker_stack[16384];

static void view(struct thread_view* v) {
  memset(v, 0, sizeof *v);
  getresuid(&v->uid[0], &v->uid[1], &v->uid[2]);
  getresgid(&v->gid[0], &v->gid[1], &v->gid[2]);
  prctl(PR_GET_NAME, v->comm, 0, 0, 0);
  sigaltstack(NULL, &v->altstack);
  prctl(PR_GET_PDEATHSIG, &v->pdeath, 0, 0, 0);
  v->getppid_errno = syscall(SYS_getppid) == -1 ? errno : 0;
}

static int same(const struct thread_view* a, const struct thread_view* b) {
  return memcmp(a->uid, b->uid, sizeof a->uid) == 0 && memcmp(a->gid, b->gid, sizeof a->gid) == 0 &&
         strcmp(a->comm, b->comm) == 0 && a->altstack.ss_sp == b->altstack.ss_sp &&
         a->altstack.ss_size == b->altstack.ss_size &&
         a->altstack.ss_flags == b->altstack.ss_flags && a->pdeath == b->pdeath &&
         a->getppid_errno == b->getppid_errno;
}

static void* worker(void* arg) {
  (void)arg;
  prctl(PR_SET_NAME, "zdtm-worker", 0, 0, 0);
  stack_t stack = {.ss_sp = worker_stack, .ss_size = sizeof worker_stack};
  sigaltstack(&stack, NULL);
  prctl(PR_SET_PDEATHSIG, SIGURG, 0, 0, 0);
  pthread_barrier_wait(&barrier); /* own attributes set */
  pthread_barrier_wait(&barrier); /* main changed creds and installed the filter */
  view(&worker_before);
  pthread_barrier_wait(&barrier); /* viewed */
  pthread_barrier_wait(&barrier); /* main got SIGTERM */
  view(&worker_after);
  return NULL;
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  signal(SIGURG, SIG_IGN);
  pthread_barrier_init(&barrier, NULL, 2);
  pthread_t thread;
  if (pthread_create(&thread, NULL, worker, NULL)) test_fail("pthread_create");
  pthread_barrier_wait(&barrier);
  /* glibc runs these in every thread. Keep CAP_DAC_OVERRIDE for the result file. */
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) || setresgid(3001, 3002, 3003) ||
      setresuid(4001, 4002, 4003))
    test_fail("set ids (run as root)");
  /* Only this thread's effective set: the worker keeps none. */
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct caps[2] = {{1u << CAP_DAC_OVERRIDE, 1u << CAP_DAC_OVERRIDE, 0},
                                           {0, 0, 0}};
  if (syscall(SYS_capset, &header, caps) != 0) _exit(3);
  struct sock_filter deny_getppid[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EACCES),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
  struct sock_fprog program = {4, deny_getppid};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) test_fail("no_new_privs");
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &program) != 0)
    test_fail("seccomp with TSYNC");
  pthread_barrier_wait(&barrier);
  pthread_barrier_wait(&barrier);
  struct thread_view main_before;
  view(&main_before);
  if (worker_before.getppid_errno != EACCES) test_fail("filter not synchronised before dump");
  test_ready();
  test_wait_for_sigterm();
  pthread_barrier_wait(&barrier);
  pthread_join(thread, NULL);
  struct thread_view main_after;
  view(&main_after);
  if (!same(&main_before, &main_after))
    test_fail("main thread: uid %u comm '%s' getppid errno %d", main_after.uid[1], main_after.comm,
              main_after.getppid_errno);
  if (!same(&worker_before, &worker_after))
    test_fail("worker: uid %u comm '%s' altstack %p pdeath %d getppid errno %d",
              worker_after.uid[1], worker_after.comm, worker_after.altstack.ss_sp,
              worker_after.pdeath, worker_after.getppid_errno);
  test_pass();
}
