/* A memfd both held as an fd and mapped MAP_SHARED (and also shared with a child through the
 * mapping): after restore the fd and the mappings must be one object again, so that a write
 * through any of them is seen through the others. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "zdtm_files.h"

#define SIZE (64 * 1024)

/* Inode of the mapping at `addr` per /proc/self/maps, or 0. */
static unsigned long mapping_inode(void* addr) {
  FILE* maps = fopen("/proc/self/maps", "r");
  if (!maps) return 0;
  char line[512];
  unsigned long found = 0;
  while (fgets(line, sizeof line, maps)) {
    unsigned long start, end, inode;
    if (sscanf(line, "%lx-%lx %*s %*s %*s %lu", &start, &end, &inode) == 3 &&
        start == (unsigned long)addr) {
      found = inode;
      break;
    }
  }
  fclose(maps);
  return found;
}

int main(int argc, char** argv) {
  zf_init(argc, argv);
  int memfd = memfd_create("zdtm-mapped", 0);
  zf_setup(memfd >= 0, "memfd_create");
  zf_setup(ftruncate(memfd, SIZE) == 0, "ftruncate");
  unsigned char* map = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  zf_setup(map != MAP_FAILED, "mmap");
  test_fill_random(map, SIZE, 77);
  zf_setup(pwrite(memfd, "through-fd", 10, 100) == 10, "pwrite");
  zf_setup(lseek(memfd, 1234, SEEK_SET) == 1234, "lseek");

  /* A child sharing the mapping (not the fd): it reports what it sees through a pipe. */
  int to_child[2], from_child[2];
  zf_setup(pipe(to_child) == 0 && pipe(from_child) == 0, "pipe");
  pid_t child = fork();
  zf_setup(child >= 0, "fork");
  if (child == 0) {
    close(memfd);
    close(to_child[1]);
    close(from_child[0]);
    char c;
    while (read(to_child[0], &c, 1) == 1) {
      /* Reply with the byte at offset 200 of the mapping. */
      if (write(from_child[1], &map[200], 1) != 1) _exit(1);
    }
    _exit(0);
  }
  close(to_child[0]);
  close(from_child[1]);

  zf_ready_and_wait();

  struct stat st;
  zf_check(fstat(memfd, &st) == 0 && st.st_size == SIZE, "memfd size");
  zf_check(mapping_inode(map) == (unsigned long)st.st_ino,
           "the mapping (inode %lu) and the fd (inode %lu) are one object", mapping_inode(map),
           (unsigned long)st.st_ino);
  zf_check(memcmp(map + 100, "through-fd", 10) == 0, "bytes written through the fd before dump");
  unsigned char expected[SIZE];
  test_fill_random(expected, SIZE, 77);
  memcpy(expected + 100, "through-fd", 10);
  zf_check(memcmp(map, expected, SIZE) == 0, "mapping content");
  zf_check(lseek(memfd, 0, SEEK_CUR) == 1234, "fd offset");
  /* Written through the fd now: the mapping sees it. */
  zf_check(pwrite(memfd, "after", 5, 300) == 5 && memcmp(map + 300, "after", 5) == 0,
           "write through the fd seen in the mapping");
  /* Written through the mapping: the fd and the child's mapping see it. */
  map[200] = 0xA5;
  unsigned char got = 0;
  zf_check(pread(memfd, &got, 1, 200) == 1 && got == 0xA5, "mapping write seen through the fd");
  got = 0;
  zf_check(write(to_child[1], "?", 1) == 1 && read(from_child[0], &got, 1) == 1 && got == 0xA5,
           "mapping write seen by the child (0x%02x)", got);
  close(to_child[1]);
  int status = 0;
  zf_check(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "child exit");
  zf_finish();
}
