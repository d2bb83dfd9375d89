/* A pseudo-terminal inside the tree: the parent holds the master; a child opened the slave as
 * the controlling terminal of its own session, set its termios and window size, and put a
 * grandchild's group in the foreground. Bytes are queued in both directions (a whole line and a
 * partial one typed into the master, a line written by the slave). After restore: the same pty
 * index (unless another process took it meanwhile), the same settings, the same queued bytes
 * with the same line boundaries, the same controlling terminal, session and foreground group. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "zdtmtst.h"

#define OUTPUT "written by the slave\n"
#define OUTPUT_SEEN "written by the slave\r\n" /* ONLCR */
#define TYPED "a whole line\npartial"

static struct termios wanted_termios(void) {
  struct termios t;
  memset(&t, 0, sizeof t);
  t.c_iflag = ICRNL | IXON;
  t.c_oflag = OPOST | ONLCR;
  t.c_cflag = CS8 | CREAD;
  t.c_lflag = ICANON | ISIG | IEXTEN; /* no echo */
  t.c_cc[VINTR] = 3;
  t.c_cc[VERASE] = 8; /* not the default 0x7f */
  t.c_cc[VKILL] = 21;
  t.c_cc[VEOF] = 4;
  t.c_cc[VMIN] = 1;
  cfsetispeed(&t, B9600);
  cfsetospeed(&t, B9600);
  return t;
}

static int same_termios(const struct termios* a, const struct termios* b) {
  return a->c_iflag == b->c_iflag && a->c_oflag == b->c_oflag && a->c_cflag == b->c_cflag &&
         a->c_lflag == b->c_lflag && a->c_cc[VERASE] == b->c_cc[VERASE] &&
         a->c_cc[VINTR] == b->c_cc[VINTR] && cfgetispeed(a) == cfgetispeed(b);
}

/* The session leader (child): its checks after restore; exit code 0 = pass. */
static int child_checks(int slave, pid_t grandchild) {
  if (tcgetsid(slave) != getpid()) return 10;
  if (tcgetpgrp(slave) != grandchild) return 11;
  /* The controlling terminal (/proc/self/stat tty_nr) is the slave, and /dev/tty opens. */
  int tty = open("/dev/tty", O_RDWR | O_NOCTTY);
  if (tty < 0) return 12;
  close(tty);
  char stat_text[512] = {0};
  int stat_fd = open("/proc/self/stat", O_RDONLY);
  if (stat_fd < 0 || read(stat_fd, stat_text, sizeof stat_text - 1) <= 0) return 13;
  close(stat_fd);
  unsigned long tty_nr = 0;
  if (sscanf(strrchr(stat_text, ')') + 2, "%*c %*d %*d %*d %lu", &tty_nr) != 1) return 13;
  struct stat st;
  if (fstat(slave, &st) != 0 || tty_nr != st.st_rdev) return 13;
  struct termios now, wanted = wanted_termios();
  if (tcgetattr(slave, &now) != 0 || !same_termios(&now, &wanted)) return 14;
  struct winsize ws;
  if (ioctl(slave, TIOCGWINSZ, &ws) != 0 || ws.ws_row != 33 || ws.ws_col != 101) return 15;
  return 0;
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) test_fail("posix_openpt: %m");
  char name[64];
  if (ptsname_r(master, name, sizeof name) != 0) test_fail("ptsname: %m");
  int to_child[2], from_child[2];
  if (pipe(to_child) != 0 || pipe(from_child) != 0) test_fail("pipe");
  pid_t child = fork();
  if (child < 0) test_fail("fork");
  if (child == 0) {
    close(master);
    if (setsid() < 0) _exit(2);
    int slave = open(name, O_RDWR); /* becomes the controlling terminal */
    if (slave < 0) _exit(3);
    struct termios t = wanted_termios();
    struct winsize ws = {.ws_row = 33, .ws_col = 101};
    if (tcsetattr(slave, TCSANOW, &t) != 0 || ioctl(slave, TIOCSWINSZ, &ws) != 0) _exit(4);
    int to_grandchild[2];
    if (pipe(to_grandchild) != 0) _exit(2);
    pid_t grandchild = fork();
    if (grandchild == 0) {
      /* The foreground group: the one that may read the terminal. Canonical reads after restore:
       * the whole line alone, then the partial one once the parent has ended it. */
      setpgid(0, 0);
      close(to_grandchild[1]);
      char go;
      if (read(to_grandchild[0], &go, 1) != 1) _exit(30);
      char buf[128];
      ssize_t n = read(slave, buf, sizeof buf);
      if (n != 13 || memcmp(buf, "a whole line\n", 13) != 0) _exit(31);
      if (write(from_child[1], "1", 1) != 1) _exit(32);
      n = read(slave, buf, sizeof buf);
      if (n != 8 || memcmp(buf, "partial\n", 8) != 0) _exit(33);
      _exit(0);
    }
    close(to_grandchild[0]);
    if (setpgid(grandchild, grandchild) != 0 && errno != EACCES) _exit(5);
    signal(SIGTTOU, SIG_IGN);
    if (tcsetpgrp(slave, grandchild) != 0) _exit(6);
    if (write(slave, OUTPUT, strlen(OUTPUT)) != (ssize_t)strlen(OUTPUT)) _exit(7);
    if (write(from_child[1], "r", 1) != 1) _exit(8);
    char c;
    if (read(to_child[0], &c, 1) != 1) _exit(9);
    int r = child_checks(slave, grandchild);
    if (r != 0) kill(grandchild, SIGKILL);
    close(from_child[1]);
    if (r == 0 && write(to_grandchild[1], "g", 1) != 1) r = 20;
    int status;
    if (waitpid(grandchild, &status, 0) != grandchild) r = r ? r : 21;
    if (r == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
      r = WIFEXITED(status) ? WEXITSTATUS(status) : 22;
    _exit(r);
  }
  close(to_child[0]);
  close(from_child[1]);
  char c;
  if (read(from_child[0], &c, 1) != 1) test_fail("the child did not set up the terminal");
  if (write(master, TYPED, strlen(TYPED)) != (ssize_t)strlen(TYPED)) test_fail("write master");
  /* The line discipline takes typed bytes in asynchronously: wait until the whole line is
   * readable on the slave (through a slave description of our own, kept across the dump). */
  int watcher = open(name, O_RDONLY | O_NOCTTY);
  if (watcher < 0) test_fail("open %s: %m", name);
  struct pollfd w = {watcher, POLLIN, 0};
  if (poll(&w, 1, -1) != 1) test_fail("poll the slave: %m");

  test_ready();
  test_wait_for_sigterm();

  char now[64];
  if (ptsname_r(master, now, sizeof now) != 0) test_fail("ptsname after restore: %m");
  struct stat st;
  if (strcmp(now, name) != 0 && stat(name, &st) != 0)
    test_fail("restored as %s although %s is free", now, name);
  /* The slave's output, queued for us. */
  char buf[128];
  struct pollfd p = {master, POLLIN, 0};
  if (poll(&p, 1, 0) != 1) test_fail("nothing queued on the master");
  ssize_t n = read(master, buf, sizeof buf);
  if (n != (ssize_t)strlen(OUTPUT_SEEN) || memcmp(buf, OUTPUT_SEEN, (size_t)n) != 0)
    test_fail("master read %zd bytes: '%.*s'", n, n > 0 ? (int)n : 0, buf);
  if (write(to_child[1], "g", 1) != 1) test_fail("write to child");
  if (read(from_child[0], &c, 1) == 1) {
    if (write(master, "\n", 1) != 1) test_fail("write newline");
  }
  int status;
  if (waitpid(child, &status, 0) != child) test_fail("waitpid");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    test_fail("the session leader's checks failed: status %#x", status);
  test_pass();
}
