/* TCP connections in LAST_ACK and CLOSING whose peer is outside the dumped tree. A helper
 * process (double forked into a session of its own, outside the tree) accepts two connections
 * with a tiny receive buffer and reads nothing, so the test's bytes pile up unsent behind its
 * closed window, with the test's FIN queued after them:
 *  - LAST_ACK: the helper shut its side first (the test's end is in CLOSE_WAIT), then the test
 *    fills the window and shuts its side;
 *  - CLOSING: the test fills the window and shuts its side (FIN_WAIT1, the FIN not sent), then
 *    the helper shuts its side (simultaneous close).
 * After restore each end must still be in its state; then the helper reads every byte and the end
 * of each stream, with no reset, and reports into OUT.peer; the test reads the end of the stream
 * on both.
 *
 * Only the dump and two-rounds modes: after a dump that leaves the tree running the original
 * finishes the conversation (as socket_tcp_half_closed_external). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtmtst.h"

enum { LAST_ACK_CONNECTION, CLOSING_CONNECTION, CONNECTIONS };
static const char* const names[CONNECTIONS] = {"LAST_ACK", "CLOSING"};

static char verdict_path[4096], go_path[4096];

static unsigned char pattern(int connection, size_t i) {
  return (unsigned char)(i * 7 + i / 251 + (size_t)connection * 13);
}

/* The peer outside the tree. `commands`: 'a' = accept the next connection (tiny receive buffer)
 * and answer 'k'; 's' = shut the write side of connection N (the next byte) and answer 'k'. Then,
 * once the test has created OUT.go (holding the byte counts), reads both streams to their end.
 * Gives up when the directory of the test's output is gone (the harness cleaned up after a
 * failure). Not the output file itself: that appears only with the test's first line (READY),
 * which may come after the helper's first look, and the helper would end (resetting both
 * connections, as it closes them with bytes unread) before the dump. */
static __attribute__((noreturn)) void helper(int listener, int commands, int answers,
                                             const char* output_dir) {
  int peers[CONNECTIONS];
  int accepted = 0;
  char command;
  pid_t self = getpid();
  if (write(answers, &self, sizeof self) != sizeof self)
    test_write_verdict_and_exit(verdict_path, "FAIL: answer");
  while (read(commands, &command, 1) == 1) {
    if (command == 'a') {
      peers[accepted] = accept(listener, NULL, NULL);
      if (peers[accepted] < 0)
        test_write_verdict_and_exit(verdict_path, "FAIL: accept: %s", strerror(errno));
      ++accepted;
    } else if (command == 's') {
      char which;
      if (read(commands, &which, 1) != 1)
        test_write_verdict_and_exit(verdict_path, "FAIL: command");
      if (shutdown(peers[(int)which], SHUT_WR) < 0)
        test_write_verdict_and_exit(verdict_path, "FAIL: shutdown");
    } else if (command == 'e') {
      break;
    }
    if (write(answers, "k", 1) != 1) test_write_verdict_and_exit(verdict_path, "FAIL: answer");
  }
  close(listener);
  close(commands);
  close(answers);
  /* Nothing is read before the restored test asks for it: the window stays closed. */
  size_t expected[CONNECTIONS];
  for (;;) {
    FILE* go = fopen(go_path, "r");
    if (go) {
      int n = fscanf(go, "%zu %zu", &expected[0], &expected[1]);
      fclose(go);
      if (n == 2) break;
    }
    if (access(output_dir, F_OK) != 0) _exit(1);
    usleep(10000);
  }
  static unsigned char buffer[65536];
  for (int c = 0; c < CONNECTIONS; ++c) {
    size_t got = 0;
    for (;;) {
      struct pollfd p = {.fd = peers[c], .events = POLLIN};
      int n = poll(&p, 1, 1000);
      if (n < 0 && errno != EINTR)
        test_write_verdict_and_exit(verdict_path, "FAIL: poll: %s", strerror(errno));
      if (access(output_dir, F_OK) != 0) _exit(1);
      if (n <= 0) continue;
      ssize_t r = read(peers[c], buffer, sizeof buffer);
      if (r < 0)
        test_write_verdict_and_exit(verdict_path,
                                    "FAIL: %s: the peer's read failed after %zu bytes: %s",
                                    names[c], got, strerror(errno));
      if (r == 0) break;
      for (ssize_t i = 0; i < r; ++i)
        if (buffer[i] != pattern(c, got + (size_t)i))
          test_write_verdict_and_exit(verdict_path, "FAIL: %s: byte %zu differs", names[c],
                                      got + (size_t)i);
      got += (size_t)r;
    }
    if (got != expected[c])
      test_write_verdict_and_exit(verdict_path,
                                  "FAIL: %s: the peer got %zu bytes, %zu were written", names[c],
                                  got, expected[c]);
    int error = 0;
    socklen_t len = sizeof error;
    getsockopt(peers[c], SOL_SOCKET, SO_ERROR, &error, &len);
    if (error != 0)
      test_write_verdict_and_exit(verdict_path, "FAIL: %s: the peer's socket has error %d",
                                  names[c], error);
  }
  test_write_verdict_and_exit(verdict_path, "PASS");
}

static void ask(int commands, int answers, const char* command, size_t size) {
  char answer;
  if (write(commands, command, size) != (ssize_t)size || read(answers, &answer, 1) != 1)
    test_fail("talking to the helper");
}

/* Writes the pattern until the socket's buffer is full (the peer's window is closed). */
static size_t fill(int fd, int connection) {
  static unsigned char chunk[4096];
  size_t written = 0;
  int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  for (;;) {
    for (size_t i = 0; i < sizeof chunk; ++i) chunk[i] = pattern(connection, written + i);
    ssize_t n = write(fd, chunk, sizeof chunk);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      /* Full: wait a little for what is in flight to settle, then try once more. */
      usleep(100000);
      n = write(fd, chunk, sizeof chunk);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    }
    if (n < 0) test_fail("%s: write: %s", names[connection], strerror(errno));
    written += (size_t)n;
  }
  fcntl(fd, F_SETFL, flags);
  return written;
}

static void wait_for_state(int fd, int state, int connection) {
  int now;
  while ((now = test_tcp_state(fd)) != state) {
    if (now == TCP_CLOSE) test_fail("%s: the connection closed during setup", names[connection]);
    usleep(1000);
  }
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  snprintf(verdict_path, sizeof verdict_path, "%s.peer", argv[1]);
  snprintf(go_path, sizeof go_path, "%s.go", argv[1]);
  char output_dir[4096];
  snprintf(output_dir, sizeof output_dir, "%s", argv[1]);
  dirname(output_dir);
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof address;
  int tiny = 2048;
  if (listener < 0 || setsockopt(listener, SOL_SOCKET, SO_RCVBUF, &tiny, sizeof tiny) < 0 ||
      bind(listener, (struct sockaddr*)&address, len) < 0 || listen(listener, 2) < 0 ||
      getsockname(listener, (struct sockaddr*)&address, &len) < 0)
    test_fail("listen: %s", strerror(errno));
  int commands[2], answers[2];
  if (pipe(commands) < 0 || pipe(answers) < 0) test_fail("pipe");
  if (test_fork_outside_tree() == 0) {
    close(commands[1]);
    close(answers[0]);
    helper(listener, commands[0], answers[1], output_dir);
  }
  close(listener);
  close(commands[0]);
  close(answers[1]);
  pid_t helper_pid;
  if (read(answers[0], &helper_pid, sizeof helper_pid) != sizeof helper_pid)
    test_fail("the helper's pid");

  int sockets[CONNECTIONS];
  size_t written[CONNECTIONS];
  int sndbuf = 65536;
  for (int c = 0; c < CONNECTIONS; ++c) {
    sockets[c] = socket(AF_INET, SOCK_STREAM, 0);
    if (sockets[c] < 0 ||
        setsockopt(sockets[c], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf) < 0 ||
        connect(sockets[c], (struct sockaddr*)&address, sizeof address) < 0)
      test_fail("%s: connect: %s", names[c], strerror(errno));
    ask(commands[1], answers[0], "a", 1);
  }
  /* LAST_ACK: the peer's FIN first, then ours behind the unsent bytes. */
  ask(commands[1], answers[0], "s\0", 2);
  wait_for_state(sockets[LAST_ACK_CONNECTION], TCP_CLOSE_WAIT, LAST_ACK_CONNECTION);
  written[LAST_ACK_CONNECTION] = fill(sockets[LAST_ACK_CONNECTION], LAST_ACK_CONNECTION);
  if (shutdown(sockets[LAST_ACK_CONNECTION], SHUT_WR) < 0) test_fail("shutdown");
  wait_for_state(sockets[LAST_ACK_CONNECTION], TCP_LAST_ACK, LAST_ACK_CONNECTION);
  /* CLOSING: ours first (not sent: behind the unsent bytes), then the peer's. */
  written[CLOSING_CONNECTION] = fill(sockets[CLOSING_CONNECTION], CLOSING_CONNECTION);
  if (shutdown(sockets[CLOSING_CONNECTION], SHUT_WR) < 0) test_fail("shutdown");
  wait_for_state(sockets[CLOSING_CONNECTION], TCP_FIN_WAIT1, CLOSING_CONNECTION);
  ask(commands[1], answers[0], "s\1", 2);
  wait_for_state(sockets[CLOSING_CONNECTION], TCP_CLOSING, CLOSING_CONNECTION);
  if (write(commands[1], "e", 1) != 1) test_fail("ending the helper's setup");
  close(commands[1]);
  close(answers[0]);

  test_ready();
  test_wait_for_sigterm();

  static const int states[CONNECTIONS] = {TCP_LAST_ACK, TCP_CLOSING};
  /* A wrong state is reported with what the peer saw, once it has read everything. */
  char state_failure[256] = "";
  for (int c = 0; c < CONNECTIONS && !state_failure[0]; ++c) {
    if (test_tcp_state(sockets[c]) == states[c]) continue;
    int error = 0;
    socklen_t error_len = sizeof error;
    getsockopt(sockets[c], SOL_SOCKET, SO_ERROR, &error, &error_len);
    snprintf(state_failure, sizeof state_failure, "%s: state %d after restore (socket error: %s)",
             names[c], test_tcp_state(sockets[c]), strerror(error));
  }
  for (int c = 0; c < CONNECTIONS && !state_failure[0]; ++c) {
    char byte;
    ssize_t n = read(sockets[c], &byte, 1);
    if (n != 0)
      snprintf(state_failure, sizeof state_failure,
               "%s: expected the end of the stream, read returned %zd (%s)", names[c], n,
               n < 0 ? strerror(errno) : "data");
  }
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", go_path);
  FILE* go = fopen(tmp, "w");
  if (!go) test_fail("creating %s", tmp);
  fprintf(go, "%zu %zu\n", written[0], written[1]);
  fclose(go);
  rename(tmp, go_path);
  /* The helper's verdict (no time limit of its own: the harness bounds the test). */
  struct stat st;
  while (stat(verdict_path, &st) != 0) {
    if (kill(helper_pid, 0) != 0 && stat(verdict_path, &st) != 0)
      test_fail("%s%sthe peer outside the tree ended without a verdict", state_failure,
                state_failure[0] ? "; " : "");
    usleep(10000);
  }
  char verdict[512] = {0};
  FILE* f = fopen(verdict_path, "r");
  if (!f || !fgets(verdict, sizeof verdict, f)) test_fail("reading the helper's verdict");
  fclose(f);
  if (state_failure[0]) test_fail("%s; the peer outside the tree: %s", state_failure, verdict);
  if (strncmp(verdict, "PASS", 4) != 0) test_fail("the peer outside the tree: %s", verdict);
  test_pass();
}
