/* Regular files: offsets, O_APPEND, a dup'ed pair sharing one offset, a second open with its own
 * offset, close-on-exec per fd. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>

#include "zdtm_files.h"

int main(int argc, char** argv) {
  zf_init(argc, argv);
  char path[8192];
  zf_scratch_path(path, sizeof path, "file_offsets");
  int rw = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  zf_setup(rw >= 0, "open");
  zf_setup(write(rw, "0123456789abcdef", 16) == 16, "write");
  zf_setup(lseek(rw, 4, SEEK_SET) == 4, "lseek");
  int dup_rw = dup(rw);
  int append = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
  int reader = open(path, O_RDONLY);
  zf_setup(dup_rw >= 0 && append >= 0 && reader >= 0, "open/dup");
  zf_setup(lseek(reader, 7, SEEK_SET) == 7, "lseek reader");

  zf_ready_and_wait();

  zf_check(lseek(rw, 0, SEEK_CUR) == 4, "offset of the O_RDWR fd");
  char buf[8] = {0};
  zf_check(read(dup_rw, buf, 2) == 2 && memcmp(buf, "45", 2) == 0, "read through the dup");
  zf_check(lseek(rw, 0, SEEK_CUR) == 6, "dup'ed fds share their offset");
  zf_check(lseek(reader, 0, SEEK_CUR) == 7, "own offset of the second open");
  zf_check((fcntl(rw, F_GETFL) & O_ACCMODE) == O_RDWR, "O_RDWR kept");
  int fl = fcntl(append, F_GETFL);
  zf_check((fl & O_ACCMODE) == O_WRONLY && (fl & O_APPEND), "O_WRONLY|O_APPEND kept");
  zf_check((fcntl(append, F_GETFD) & FD_CLOEXEC) != 0, "close-on-exec kept");
  zf_check((fcntl(rw, F_GETFD) & FD_CLOEXEC) == 0, "no close-on-exec where there was none");
  /* The file may have grown since the dump (a --leave-running original appended too). */
  struct stat before, after;
  zf_check(fstat(rw, &before) == 0, "fstat");
  zf_check(write(append, "X", 1) == 1, "write O_APPEND");
  zf_check(fstat(rw, &after) == 0 && after.st_size == before.st_size + 1,
           "O_APPEND wrote at the end");
  zf_check(pread(reader, buf, 1, after.st_size - 1) == 1 && buf[0] == 'X', "appended byte");
  zf_finish();
}
