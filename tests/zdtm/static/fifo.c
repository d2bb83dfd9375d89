/* A FIFO opened by path for reading (O_NONBLOCK) and writing, with bytes queued. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>

#include "zdtm_files.h"

#define DATA "fifo bytes"

int main(int argc, char** argv) {
  zf_init(argc, argv);
  char path[8192];
  zf_scratch_path(path, sizeof path, "fifo");
  unlink(path);
  zf_setup(mkfifo(path, 0600) == 0, "mkfifo");
  int reader = open(path, O_RDONLY | O_NONBLOCK);
  int writer = open(path, O_WRONLY);
  zf_setup(reader >= 0 && writer >= 0, "open");
  zf_setup(write(writer, DATA, sizeof DATA - 1) == sizeof DATA - 1, "write");

  zf_ready_and_wait();

  struct stat st, path_st;
  zf_check(fstat(reader, &st) == 0 && S_ISFIFO(st.st_mode), "a FIFO");
  zf_check(stat(path, &path_st) == 0 && path_st.st_ino == st.st_ino, "the FIFO at its path");
  zf_check((fcntl(reader, F_GETFL) & O_NONBLOCK) != 0, "reader O_NONBLOCK");
  zf_check((fcntl(writer, F_GETFL) & O_NONBLOCK) == 0, "writer blocking");
  char buf[64] = {0};
  ssize_t n = read(reader, buf, sizeof buf);
  zf_check(n == sizeof DATA - 1 && memcmp(buf, DATA, n) == 0, "queued bytes: \"%s\"", buf);
  zf_check(write(writer, "z", 1) == 1 && read(reader, buf, 1) == 1 && buf[0] == 'z',
           "writer and reader still connected");
  zf_finish();
}
