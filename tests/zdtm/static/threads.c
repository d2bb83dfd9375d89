/* Threads: each keeps distinct values in general-purpose and vector registers (xmm/ymm set with
 * inline asm and compared after), its own TLS (fs_base), its TID and its signal mask; one more
 * thread is blocked in a futex wait (pthread_cond_wait) and must wake up after restore; all are
 * joined at the end (clear_child_tid). */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "zdtmtst.h"

#define NTHREADS 4

static __thread uint64_t tls_value;
static atomic_int ready_count;
static atomic_int stop;
static pid_t tids[NTHREADS];
static char failures[NTHREADS][128];

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int released;
static int waiter_woke;

static void* spinner(void* arg) {
  int index = (int)(intptr_t)arg;
  tids[index] = (pid_t)syscall(SYS_gettid);
  tls_value = 0x1000 + (uint64_t)index;
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGUSR1 + (index % 2) * (SIGUSR2 - SIGUSR1));
  sigaddset(&mask, SIGRTMIN + index);
  pthread_sigmask(SIG_BLOCK, &mask, NULL);
  uint64_t pattern = 0x0101010101010101ull * (uint64_t)(index + 1);
  uint64_t r12_out = 0, xmm_lo = 0, ymm_hi = 0;
  atomic_fetch_add(&ready_count, 1);
  /* Keep values in r12, xmm7 and the upper half of ymm7 while spinning; check them after. */
  __asm__ volatile(
      "mov %[pat], %%r12\n"
      "movq %[pat], %%xmm7\n"
      "vpbroadcastq %%xmm7, %%ymm7\n"
      "1:\n"
      "pause\n"
      "cmpl $0, %[stop]\n"
      "je 1b\n"
      "mov %%r12, %[r12]\n"
      "movq %%xmm7, %[lo]\n"
      "vextracti128 $1, %%ymm7, %%xmm6\n"
      "movq %%xmm6, %[hi]\n"
      : [r12] "=m"(r12_out), [lo] "=m"(xmm_lo), [hi] "=m"(ymm_hi)
      : [pat] "r"(pattern), [stop] "m"(stop)
      : "r12", "xmm6", "xmm7", "memory");
  if (r12_out != pattern || xmm_lo != pattern || ymm_hi != pattern)
    snprintf(failures[index], sizeof failures[index],
             "thread %d: registers r12 %lx xmm %lx ymm-high %lx", index, (unsigned long)r12_out,
             (unsigned long)xmm_lo, (unsigned long)ymm_hi);
  else if (tls_value != 0x1000 + (uint64_t)index)
    snprintf(failures[index], sizeof failures[index], "thread %d: TLS %lx", index,
             (unsigned long)tls_value);
  else if (syscall(SYS_gettid) != tids[index])
    snprintf(failures[index], sizeof failures[index], "thread %d: tid changed", index);
  else {
    sigset_t now;
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    if (!sigismember(&now, SIGRTMIN + index) ||
        !sigismember(&now, SIGUSR1 + (index % 2) * (SIGUSR2 - SIGUSR1)))
      snprintf(failures[index], sizeof failures[index], "thread %d: signal mask lost", index);
  }
  return NULL;
}

static void* waiter(void* arg) {
  (void)arg;
  pthread_mutex_lock(&lock);
  atomic_fetch_add(&ready_count, 1);
  while (!released) pthread_cond_wait(&cond, &lock);
  waiter_woke = 1;
  pthread_mutex_unlock(&lock);
  return NULL;
}

static int cpu_has_avx2(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2");
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  if (!cpu_has_avx2()) test_fail("this test needs AVX2");
  pthread_t threads[NTHREADS], wait_thread;
  for (int i = 0; i < NTHREADS; i++) pthread_create(&threads[i], NULL, spinner, (void*)(intptr_t)i);
  pthread_create(&wait_thread, NULL, waiter, NULL);
  while (atomic_load(&ready_count) < NTHREADS + 1) usleep(1000);
  usleep(10000);
  pid_t saved[NTHREADS];
  memcpy(saved, tids, sizeof saved);
  tls_value = 0xabc;
  test_ready();
  test_wait_for_sigterm();
  atomic_store(&stop, 1);
  for (int i = 0; i < NTHREADS; i++) pthread_join(threads[i], NULL);
  pthread_mutex_lock(&lock);
  released = 1;
  pthread_cond_signal(&cond);
  pthread_mutex_unlock(&lock);
  pthread_join(wait_thread, NULL);
  for (int i = 0; i < NTHREADS; i++)
    if (failures[i][0]) test_fail("%s", failures[i]);
  if (!waiter_woke) test_fail("the futex waiter did not wake");
  if (memcmp(saved, tids, sizeof saved) != 0) test_fail("tids changed");
  if (tls_value != 0xabc) test_fail("main thread TLS lost");
  test_pass();
}
