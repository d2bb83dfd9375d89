#define _GNU_SOURCE
#include "zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static char out_path[4096];
static volatile sig_atomic_t got_sigterm;

static void on_sigterm(int sig) {
  (void)sig;
  got_sigterm = 1;
}

static void append_line(const char* text) {
  int fd = open(out_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) _exit(2);
  size_t len = strlen(text);
  if (write(fd, text, len) != (ssize_t)len) _exit(2);
  close(fd);
}

void test_init(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s OUTPUT-FILE\n", argv[0]);
    exit(2);
  }
  snprintf(out_path, sizeof out_path, "%s", argv[1]);
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  sigprocmask(SIG_BLOCK, &block, NULL);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigterm;
  sigaction(SIGTERM, &sa, NULL);
}

void test_msg(const char* fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  strcat(line, "\n");
  append_line(line);
}

void test_ready(void) {
  append_line("READY\n");
}

void test_wait_for_sigterm(void) {
  sigset_t mask;
  sigprocmask(SIG_BLOCK, NULL, &mask);
  sigdelset(&mask, SIGTERM);
  while (!got_sigterm) sigsuspend(&mask);
}

void test_pass(void) {
  append_line("PASS\n");
  exit(0);
}

void test_fail(const char* fmt, ...) {
  char line[1024] = "FAIL: ";
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + 6, sizeof line - 8, fmt, ap);
  va_end(ap);
  strcat(line, "\n");
  append_line(line);
  exit(1);
}

void test_fill_random(void* buf, size_t size, uint64_t seed) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  unsigned char* p = buf;
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    memcpy(p + i, &x, 8);
  }
  for (; i < size; i++) p[i] = (unsigned char)i;
}

size_t test_check_random(const void* buf, size_t size, uint64_t seed) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  const unsigned char* p = buf;
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    if (memcmp(p + i, &x, 8) != 0) return i;
  }
  for (; i < size; i++)
    if (p[i] != (unsigned char)i) return i;
  return (size_t)-1;
}

int test_tcp_state(int fd) {
  struct tcp_info info;
  socklen_t len = sizeof info;
  memset(&info, 0, sizeof info);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) < 0)
    test_fail("TCP_INFO of fd %d: %s", fd, strerror(errno));
  return info.tcpi_state;
}

void test_write_verdict_and_exit(const char* path, const char* fmt, ...) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE* f = fopen(tmp, "w");
  if (f) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fclose(f);
    rename(tmp, path);
  }
  _exit(0);
}

int test_fork_outside_tree(void) {
  pid_t child = fork();
  if (child < 0) test_fail("fork");
  if (child == 0) {
    if (setsid() < 0) _exit(1);
    pid_t grandchild = fork();
    if (grandchild < 0) _exit(1);
    if (grandchild == 0) return 0;
    _exit(0);
  }
  int status;
  if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    test_fail("starting the helper outside the tree");
  return 1;
}
