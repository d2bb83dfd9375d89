/* The alternate signal stack: after restore it is the same (address, size, SS_AUTODISARM) and a
 * SA_ONSTACK handler runs on it. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <string.h>

#include "zdtmtst.h"

#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31)
#endif

static char alt_stack[64 * 1024] __attribute__((aligned(16)));
static volatile uintptr_t handler_frame;

static void on_usr1(int sig) {
  (void)sig;
  int local;
  handler_frame = (uintptr_t)&local;
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  stack_t stack = {.ss_sp = alt_stack, .ss_flags = SS_AUTODISARM, .ss_size = sizeof alt_stack};
  if (sigaltstack(&stack, NULL) != 0) test_fail("sigaltstack");
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_usr1;
  action.sa_flags = SA_ONSTACK;
  sigemptyset(&action.sa_mask);
  if (sigaction(SIGUSR1, &action, NULL) != 0) test_fail("sigaction");
  test_ready();
  test_wait_for_sigterm();

  stack_t now;
  if (sigaltstack(NULL, &now) != 0) test_fail("sigaltstack query");
  if (now.ss_sp != alt_stack || now.ss_size != sizeof alt_stack)
    test_fail("stack %p+%zu, was %p+%zu", now.ss_sp, now.ss_size, (void*)alt_stack,
              sizeof alt_stack);
  if (now.ss_flags != (int)SS_AUTODISARM) test_fail("flags %#x", (unsigned)now.ss_flags);
  raise(SIGUSR1);
  if (handler_frame < (uintptr_t)alt_stack ||
      handler_frame >= (uintptr_t)alt_stack + sizeof alt_stack)
    test_fail("handler ran at %#lx, outside the alternate stack", (unsigned long)handler_frame);
  test_pass();
}
