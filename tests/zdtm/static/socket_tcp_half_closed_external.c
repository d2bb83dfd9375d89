/* Half-closed TCP connections whose peer is outside the dumped tree: a helper process (double
 * forked into a session of its own, so neither the dump nor the harness counts it as part of the
 * tree) writes bytes and shuts its side, leaving the test's ends in CLOSE_WAIT with the bytes
 * unread: over IPv4, IPv6, and an IPv6 socket talking to an IPv4 peer (IPv4-mapped). After
 * restore each end is still in CLOSE_WAIT, reads every byte and then the end of the stream, and
 * the still open direction carries bytes and a FIN to the helper, which must see them and no
 * reset; the helper reports into OUT.peer.
 *
 * Only the dump and two-rounds modes: after a dump that leaves the tree running the original
 * finishes the conversation, and the images hold connections its real peer has closed since. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtmtst.h"

#define CONNECTIONS 3
#define PAYLOAD 10000

struct connection {
  const char* name;
  int listen_family;
  const char* listen_ip;
  int client_family;
  const char* connect_ip;
  int listener, client, peer;
  struct sockaddr_storage address;
  socklen_t address_len;
};

static struct connection connections[CONNECTIONS] = {
    {"IPv4", AF_INET, "127.0.0.1", AF_INET, "127.0.0.1", -1, -1, -1, {0}, 0},
    {"IPv6", AF_INET6, "::1", AF_INET6, "::1", -1, -1, -1, {0}, 0},
    {"IPv4-mapped", AF_INET, "127.0.0.1", AF_INET6, "::ffff:127.0.0.1", -1, -1, -1, {0}, 0},
};

static socklen_t make_address(int family, const char* ip, int port, struct sockaddr_storage* ss) {
  memset(ss, 0, sizeof *ss);
  if (family == AF_INET) {
    struct sockaddr_in* in = (struct sockaddr_in*)ss;
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    inet_pton(AF_INET, ip, &in->sin_addr);
    return sizeof *in;
  }
  struct sockaddr_in6* in6 = (struct sockaddr_in6*)ss;
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(port);
  inet_pton(AF_INET6, ip, &in6->sin6_addr);
  return sizeof *in6;
}

static int port_of(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  getsockname(fd, (struct sockaddr*)&ss, &len);
  return ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in*)&ss)->sin_port)
                                 : ntohs(((struct sockaddr_in6*)&ss)->sin6_port);
}

static char verdict_path[4096];

/* The peer outside the tree: sends the payload and its FIN on every connection, then expects
 * "back" and the end of the stream from each. Gives up when the directory of the test's output is
 * gone (the harness cleaned up after a failure), so that it never outlives the test; not the
 * output file itself, which appears only with the test's first line (READY). */
static __attribute__((noreturn)) void helper(const char* output_dir) {
  unsigned char* payload = malloc(PAYLOAD);
  for (int i = 0; i < CONNECTIONS; ++i) {
    struct connection* c = &connections[i];
    c->peer = accept(c->listener, NULL, NULL);
    if (c->peer < 0)
      test_write_verdict_and_exit(verdict_path, "FAIL: %s: accept: %s", c->name, strerror(errno));
    close(c->listener);
    test_fill_random(payload, PAYLOAD, 40 + i);
    if (write(c->peer, payload, PAYLOAD) != PAYLOAD)
      test_write_verdict_and_exit(verdict_path, "FAIL: %s: write", c->name);
    if (shutdown(c->peer, SHUT_WR) < 0)
      test_write_verdict_and_exit(verdict_path, "FAIL: %s: shutdown", c->name);
  }
  char received[CONNECTIONS][16];
  size_t got[CONNECTIONS] = {0};
  int open_count = CONNECTIONS;
  int done[CONNECTIONS] = {0};
  while (open_count > 0) {
    struct pollfd fds[CONNECTIONS];
    for (int i = 0; i < CONNECTIONS; ++i)
      fds[i] = (struct pollfd){.fd = done[i] ? -1 : connections[i].peer, .events = POLLIN};
    int n = poll(fds, CONNECTIONS, 1000);
    if (n < 0 && errno != EINTR)
      test_write_verdict_and_exit(verdict_path, "FAIL: poll: %s", strerror(errno));
    if (access(output_dir, F_OK) != 0) _exit(1);
    for (int i = 0; i < CONNECTIONS && n > 0; ++i) {
      if (done[i] || fds[i].revents == 0) continue;
      ssize_t r = read(connections[i].peer, received[i] + got[i], sizeof received[i] - got[i]);
      if (r < 0)
        test_write_verdict_and_exit(verdict_path, "FAIL: %s: the peer's read failed: %s",
                                    connections[i].name, strerror(errno));
      if (r == 0) {
        if (got[i] != 4 || memcmp(received[i], "back", 4) != 0)
          test_write_verdict_and_exit(verdict_path,
                                      "FAIL: %s: the peer got %zu bytes before the end",
                                      connections[i].name, got[i]);
        /* Both FINs taken and acknowledged: the peer's connection ended cleanly (TIME_WAIT,
         * which the socket itself reports as CLOSE once a time-wait entry took over), with no
         * error pending (a reset would leave ECONNRESET). */
        int state = test_tcp_state(connections[i].peer), error = 0;
        socklen_t len = sizeof error;
        getsockopt(connections[i].peer, SOL_SOCKET, SO_ERROR, &error, &len);
        if ((state != TCP_TIME_WAIT && state != TCP_CLOSE) || error != 0)
          test_write_verdict_and_exit(verdict_path,
                                      "FAIL: %s: the peer ends in state %d with error %d",
                                      connections[i].name, state, error);
        done[i] = 1;
        --open_count;
      } else {
        got[i] += (size_t)r;
        if (got[i] == sizeof received[i])
          test_write_verdict_and_exit(verdict_path, "FAIL: too many bytes");
      }
    }
  }
  test_write_verdict_and_exit(verdict_path, "PASS");
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  snprintf(verdict_path, sizeof verdict_path, "%s.peer", argv[1]);
  char output_dir[4096];
  snprintf(output_dir, sizeof output_dir, "%s", argv[1]);
  dirname(output_dir);
  for (int i = 0; i < CONNECTIONS; ++i) {
    struct connection* c = &connections[i];
    c->listener = socket(c->listen_family, SOCK_STREAM, 0);
    struct sockaddr_storage ss;
    socklen_t len = make_address(c->listen_family, c->listen_ip, 0, &ss);
    if (c->listener < 0 || bind(c->listener, (struct sockaddr*)&ss, len) < 0 ||
        listen(c->listener, 1) < 0)
      test_fail("%s: listen: %s", c->name, strerror(errno));
    c->address_len =
        make_address(c->client_family, c->connect_ip, port_of(c->listener), &c->address);
  }
  if (test_fork_outside_tree() == 0) helper(output_dir);
  for (int i = 0; i < CONNECTIONS; ++i) {
    struct connection* c = &connections[i];
    c->client = socket(c->client_family, SOCK_STREAM, 0);
    if (connect(c->client, (struct sockaddr*)&c->address, c->address_len) < 0)
      test_fail("%s: connect: %s", c->name, strerror(errno));
    close(c->listener);
  }
  for (int i = 0; i < CONNECTIONS; ++i)
    while (test_tcp_state(connections[i].client) != TCP_CLOSE_WAIT) usleep(1000);
  test_ready();
  test_wait_for_sigterm();

  unsigned char* in = malloc(PAYLOAD + 1);
  for (int i = 0; i < CONNECTIONS; ++i) {
    struct connection* c = &connections[i];
    if (test_tcp_state(c->client) != TCP_CLOSE_WAIT)
      test_fail("%s: state %d after restore, not CLOSE_WAIT", c->name, test_tcp_state(c->client));
    size_t done = 0;
    while (done < PAYLOAD) {
      ssize_t n = read(c->client, in + done, PAYLOAD - done);
      if (n <= 0) test_fail("%s: read ended after %zu bytes (%zd)", c->name, done, n);
      done += (size_t)n;
    }
    if (test_check_random(in, PAYLOAD, 40 + i) != (size_t)-1)
      test_fail("%s: bytes differ", c->name);
    ssize_t n = read(c->client, in, 1);
    if (n != 0) test_fail("%s: expected the end of the stream, read returned %zd", c->name, n);
    if (write(c->client, "back", 4) != 4) test_fail("%s: write back: %s", c->name, strerror(errno));
    if (shutdown(c->client, SHUT_WR) < 0) test_fail("%s: shutdown", c->name);
  }
  /* The helper's verdict (no time limit of its own: the harness bounds the test). */
  struct stat st;
  while (stat(verdict_path, &st) != 0) usleep(10000);
  char verdict[512] = {0};
  FILE* f = fopen(verdict_path, "r");
  if (!f || !fgets(verdict, sizeof verdict, f)) test_fail("reading the helper's verdict");
  fclose(f);
  if (strncmp(verdict, "PASS", 4) != 0) test_fail("the peer outside the tree: %s", verdict);
  test_pass();
}
