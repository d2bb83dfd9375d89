/* An epoll set with an edge-triggered eventfd, a level-triggered pipe read end and a one-shot
 * pipe write end: after restore each reports its events with its data, and EPOLL_CTL_MOD works
 * on the same fd numbers. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "zdtmtst.h"

static int wait_for(int ep, uint64_t data, uint32_t events) {
  struct epoll_event got[8];
  int n = epoll_wait(ep, got, 8, 0);
  for (int i = 0; i < n; i++)
    if (got[i].data.u64 == data) return got[i].events == events;
  return 0;
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  int efd = eventfd(1, 0);
  int p[2];
  if (efd < 0 || pipe(p) < 0) test_fail("eventfd/pipe");
  if (write(p[1], "x", 1) != 1) test_fail("write");
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = 0xdead0001};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) < 0) test_fail("add eventfd");
  ev.events = EPOLLIN;
  ev.data.u64 = 0xbeef0002;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) < 0) test_fail("add read end");
  ev.events = EPOLLOUT | EPOLLONESHOT;
  ev.data.u64 = 3;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, p[1], &ev) < 0) test_fail("add write end");
  test_ready();
  test_wait_for_sigterm();
  struct epoll_event got[8];
  int n = epoll_wait(ep, got, 8, 0);
  if (n != 3) test_fail("%d registrations ready, expected 3", n);
  int seen = 0;
  for (int i = 0; i < n; i++) {
    if (got[i].data.u64 == 0xdead0001 && got[i].events == EPOLLIN) seen |= 1;
    if (got[i].data.u64 == 0xbeef0002 && got[i].events == EPOLLIN) seen |= 2;
    if (got[i].data.u64 == 3 && got[i].events == EPOLLOUT) seen |= 4;
  }
  if (seen != 7) test_fail("events/data not as registered (mask %d)", seen);
  if (!wait_for(ep, 0xbeef0002, EPOLLIN)) test_fail("level-triggered pipe not reported again");
  ev.events = EPOLLOUT;
  ev.data.u64 = 4;
  if (epoll_ctl(ep, EPOLL_CTL_MOD, p[1], &ev) < 0) test_fail("EPOLL_CTL_MOD of the write end");
  if (!wait_for(ep, 4, EPOLLOUT)) test_fail("modified registration not reported");
  if (epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) == 0 || errno != EEXIST)
    test_fail("the eventfd is not registered under its fd number");
  test_pass();
}
