/* A deleted file held both as an fd and mapped (MAP_SHARED, and MAP_PRIVATE with a changed
 * page): after restore the fd and the mappings must be one file again (same inode), so that a
 * write through the fd shows in the shared mapping and a store into the shared mapping is read
 * through the fd; the content and the private copy must be intact. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "zdtm_files.h"

#define PAGES 8
#define PAGE 4096

/* The file behind a mapping, by /proc/self/map_files (stat follows the link to the file). */
static int stat_mapping(void* start, size_t size, struct stat* st) {
  char path[128];
  snprintf(path, sizeof path, "/proc/self/map_files/%lx-%lx", (unsigned long)start,
           (unsigned long)start + size);
  return stat(path, st);
}

int main(int argc, char** argv) {
  zf_init(argc, argv);
  char path[8300];
  zf_scratch_path(path, sizeof path, "mapped-and-held");
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0640);
  zf_setup(fd >= 0, "create");
  static unsigned char content[PAGES * PAGE];
  test_fill_random(content, sizeof content, 33);
  zf_setup(write(fd, content, sizeof content) == sizeof content, "write");
  unsigned char* shared = mmap(NULL, sizeof content, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  unsigned char* priv = mmap(NULL, sizeof content, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  zf_setup(shared != MAP_FAILED && priv != MAP_FAILED, "mmap");
  zf_setup(unlink(path) == 0, "unlink");
  memcpy(shared + PAGE, "stored through the shared mapping", 33);
  memset(priv + 5 * PAGE, 0xa5, PAGE); /* a private copy of page 5 */
  zf_setup(lseek(fd, 123, SEEK_SET) == 123, "lseek");

  zf_ready_and_wait();

  static unsigned char expected[PAGES * PAGE];
  test_fill_random(expected, sizeof expected, 33);
  memcpy(expected + PAGE, "stored through the shared mapping", 33);
  zf_check(memcmp(shared, expected, sizeof expected) == 0, "shared mapping content");
  static unsigned char through_fd[PAGES * PAGE];
  zf_check(pread(fd, through_fd, sizeof through_fd, 0) == sizeof through_fd &&
               memcmp(through_fd, expected, sizeof expected) == 0,
           "file content read through the fd");
  memset(expected + 5 * PAGE, 0xa5, PAGE);
  zf_check(memcmp(priv, expected, sizeof expected) == 0, "private mapping content");
  zf_check(lseek(fd, 0, SEEK_CUR) == 123, "fd offset");

  struct stat of_fd, of_shared, of_priv;
  zf_check(fstat(fd, &of_fd) == 0 && of_fd.st_nlink == 0, "the fd's file is still deleted");
  zf_check(stat_mapping(shared, sizeof content, &of_shared) == 0 &&
               stat_mapping(priv, sizeof content, &of_priv) == 0,
           "stat of the mappings' files");
  zf_check(of_fd.st_dev == of_shared.st_dev && of_fd.st_ino == of_shared.st_ino,
           "the fd and the shared mapping are one file (inodes %lu and %lu)",
           (unsigned long)of_fd.st_ino, (unsigned long)of_shared.st_ino);
  zf_check(of_fd.st_dev == of_priv.st_dev && of_fd.st_ino == of_priv.st_ino,
           "the fd and the private mapping are one file (inodes %lu and %lu)",
           (unsigned long)of_fd.st_ino, (unsigned long)of_priv.st_ino);

  /* One object: writes go both ways. */
  zf_check(pwrite(fd, "written through the fd", 22, 3 * PAGE) == 22, "pwrite");
  zf_check(memcmp(shared + 3 * PAGE, "written through the fd", 22) == 0,
           "a write through the fd shows in the shared mapping");
  memcpy(shared + 6 * PAGE, "stored after restore", 20);
  char back[20];
  zf_check(pread(fd, back, sizeof back, 6 * PAGE) == sizeof back &&
               memcmp(back, "stored after restore", 20) == 0,
           "a store into the shared mapping is read through the fd");
  zf_finish();
}
