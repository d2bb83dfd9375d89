/* Helpers of the zdtm-style checkpoint test programs.
 *
 * A program sets up its state, calls test_ready(), then test_wait_for_sigterm() (it may be dumped
 * and restored meanwhile), verifies its state and ends with test_pass() or test_fail(). Results go
 * to the file named by argv[1] (opened by path each time, so the test does not depend on its fds
 * being restored): "READY", then "PASS" or "FAIL: reason". */
#ifndef ZDTMTST_H
#define ZDTMTST_H

#include <stddef.h>
#include <stdint.h>

void test_init(int argc, char** argv);
void test_msg(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void test_ready(void);
/* Blocks until SIGTERM arrives (other signals keep their own handling). */
void test_wait_for_sigterm(void);
void test_pass(void) __attribute__((noreturn));
void test_fail(const char* fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Deterministic pseudo-random bytes (xorshift) for filling and checking memory. */
void test_fill_random(void* buf, size_t size, uint64_t seed);
/* Offset of the first byte that differs from test_fill_random(seed), or (size_t)-1. */
size_t test_check_random(const void* buf, size_t size, uint64_t seed);
/* The kernel's TCP state of socket `fd` (TCP_ESTABLISHED, ...); fails the test if unreadable. */
int test_tcp_state(int fd);
/* Forks a helper outside the dumped tree (a grandchild in a session of its own, reparented away
 * from the test): returns 0 in the helper, and in the test once the helper exists. */
int test_fork_outside_tree(void);
/* For a helper process outside the dumped tree: writes one line to `path` (through path.tmp and
 * a rename, so a reader never sees half of it) and exits. */
void test_write_verdict_and_exit(const char* path, const char* fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

#endif
