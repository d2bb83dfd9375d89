/* A process tree talking over a stream socketpair with epoll: parent and child each send a stream
 * of consecutive 32-bit counters as fast as the other side reads (non-blocking, EPOLLIN and
 * EPOLLOUT), through dump and restore while bytes are in flight. On SIGTERM the parent shuts its
 * side; the child answers with a marker and the number of counters it received, then closes. The
 * parent checks that every counter arrived once and in order both ways and that the child counted
 * exactly as many as the parent sent: no byte lost or duplicated end to end. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtmtst.h"

#define END_MARKER 0xffffffffu

static volatile sig_atomic_t stopping;
static void on_term(int sig) {
  (void)sig;
  stopping = 1;
}

/* One direction of the counter stream: what was sent, what arrived (with a partial word). */
struct stream {
  uint32_t next_to_send;
  uint32_t next_expected;
  unsigned char partial[4];
  size_t partial_len;
  unsigned char out[4096];
  size_t out_len, out_off;
};

static void fill_out(struct stream* s) {
  if (s->out_off < s->out_len) return;
  for (size_t i = 0; i < sizeof s->out / 4; i++) {
    uint32_t v = s->next_to_send++;
    memcpy(s->out + 4 * i, &v, 4);
  }
  s->out_len = sizeof s->out;
  s->out_off = 0;
}

/* Sends what fits; returns -1 on an error other than EAGAIN. */
static int pump_out(int fd, struct stream* s) {
  for (;;) {
    fill_out(s);
    ssize_t n = send(fd, s->out + s->out_off, s->out_len - s->out_off, MSG_DONTWAIT);
    if (n < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
    s->out_off += (size_t)n;
  }
}

/* Receives what is there, checking each counter; returns 1 at the end of the stream, 0 when
 * nothing more is there now. A word equal to END_MARKER is handed to `on_marker` (the rest of the
 * stream goes there too). Fails the test on a counter out of order. */
static int pump_in(int fd, struct stream* s, int (*on_marker)(uint32_t word, void* arg), void* arg,
                   int* marker_seen) {
  unsigned char buf[8192];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) return 1;
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return 0;
      return -1;
    }
    for (ssize_t i = 0; i < n; i++) {
      s->partial[s->partial_len++] = buf[i];
      if (s->partial_len < 4) continue;
      uint32_t v;
      memcpy(&v, s->partial, 4);
      s->partial_len = 0;
      if (*marker_seen || v == END_MARKER) {
        *marker_seen = 1;
        if (on_marker) on_marker(v, arg);
        continue;
      }
      if (v != s->next_expected) return -2;
      s->next_expected++;
    }
  }
}

static int child_main(int fd) {
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = 7};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) return 10;
  struct stream s = {0};
  int marker = 0;
  for (;;) {
    struct epoll_event got;
    int n = epoll_wait(ep, &got, 1, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n != 1 || got.data.u32 != 7) return 11;
    if (got.events & EPOLLIN) {
      int r = pump_in(fd, &s, NULL, NULL, &marker);
      if (r < 0) return 12;
      if (r == 1) break; /* the parent shut its side */
    }
    if ((got.events & EPOLLOUT) && pump_out(fd, &s) < 0) return 13;
  }
  /* Finish the word in flight, then the marker and the count of counters received. */
  while (s.out_off < s.out_len) {
    ssize_t n = send(fd, s.out + s.out_off, s.out_len - s.out_off, 0);
    if (n <= 0) return 14;
    s.out_off += (size_t)n;
  }
  uint32_t trailer[2] = {END_MARKER, s.next_expected};
  if (send(fd, trailer, sizeof trailer, 0) != (ssize_t)sizeof trailer) return 15;
  close(fd);
  return 0;
}

struct trailer {
  int words;
  uint32_t count;
};
static int on_trailer(uint32_t word, void* arg) {
  struct trailer* t = arg;
  if (t->words++ == 1) t->count = word;
  return 0;
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) test_fail("socketpair");
  pid_t child = fork();
  if (child < 0) test_fail("fork");
  if (child == 0) {
    close(sv[0]);
    _exit(child_main(sv[1]));
  }
  close(sv[1]);
  int fd = sv[0];
  struct sigaction sa = {.sa_handler = on_term};
  sigaction(SIGTERM, &sa, NULL);
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigprocmask(SIG_UNBLOCK, &term, NULL); /* test_init blocked it for test_wait_for_sigterm */
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.u64 = 0x1234567890ull};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) test_fail("epoll_ctl");
  struct stream s = {0};
  struct trailer t = {0};
  int marker = 0, ready = 0;
  for (;;) {
    struct epoll_event got;
    int n = epoll_wait(ep, &got, 1, 100);
    if (n < 0 && errno != EINTR) test_fail("epoll_wait: %s", strerror(errno));
    if (n == 1 && got.data.u64 != 0x1234567890ull) test_fail("epoll data changed");
    /* Edge-triggered: drain both ways on every wakeup. */
    int r = pump_in(fd, &s, on_trailer, &t, &marker);
    if (r < -1) test_fail("counter from the child out of order: expected %u", s.next_expected);
    if (r == -1) test_fail("recv: %s", strerror(errno));
    if (stopping) break;
    if (pump_out(fd, &s) < 0) test_fail("send: %s", strerror(errno));
    if (ready) usleep(500); /* keeps the pair from taking a whole core while it waits */
    if (!ready && s.next_to_send > 100000 && s.next_expected > 100000) {
      ready = 1;
      test_ready();
    }
  }
  /* Finish the buffer in flight so the child sees whole counters, then shut our side. */
  while (s.out_off < s.out_len) {
    ssize_t n = send(fd, s.out + s.out_off, s.out_len - s.out_off, 0);
    if (n < 0 && errno == EAGAIN) {
      pump_in(fd, &s, on_trailer, &t, &marker);
      usleep(1000);
      continue;
    }
    if (n <= 0) test_fail("send at the end: %s", strerror(errno));
    s.out_off += (size_t)n;
  }
  uint32_t sent = s.next_to_send;
  if (shutdown(fd, SHUT_WR) < 0) test_fail("shutdown");
  for (;;) {
    int r = pump_in(fd, &s, on_trailer, &t, &marker);
    if (r == 1) break;
    if (r < -1) test_fail("counter from the child out of order: expected %u", s.next_expected);
    if (r == -1) test_fail("recv: %s", strerror(errno));
    usleep(1000);
  }
  int status;
  if (waitpid(child, &status, 0) != child) test_fail("waitpid");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) test_fail("child status %#x", status);
  if (t.words != 2) test_fail("trailer of %d words", t.words);
  if (t.count != sent) test_fail("child received %u counters, parent sent %u", t.count, sent);
  test_msg("%u counters to the child, %u back, all in order", sent, s.next_expected);
  test_pass();
}
