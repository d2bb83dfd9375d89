/* System V shared memory in the test's own IPC namespace: segments keep their ids, keys, owners,
 * modes and contents; attached segments are attached again at the same addresses (a real
 * attachment: shmdt works, a new shmat sees the same memory, the child and the parent still
 * share it); a segment removed while attached is still removed; one attached read-only stays
 * read-only; one whose attachment was partly unmapped and partly made read-only comes back so. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtmtst.h"

#define KEY_SHARED 0x2a2a0001
#define KEY_DETACHED 0x2a2a0002
#define SHARED_SIZE (5 * 4096 + 123)
#define DETACHED_SIZE (64 * 4096)
#define REMOVED_SIZE (2 * 4096)

static void on_segv(int sig) {
  (void)sig;
  _exit(7);
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  if (unshare(CLONE_NEWIPC) != 0) test_fail("unshare CLONE_NEWIPC: %m");

  int shared = shmget(KEY_SHARED, SHARED_SIZE, IPC_CREAT | 0600);
  int detached = shmget(KEY_DETACHED, DETACHED_SIZE, IPC_CREAT | 0640);
  int removed = shmget(IPC_PRIVATE, REMOVED_SIZE, 0600);
  int readonly = shmget(IPC_PRIVATE, 4096, 0600);
  if (shared < 0 || detached < 0 || removed < 0 || readonly < 0) test_fail("shmget: %m");

  char* shared_at = shmat(shared, NULL, 0);
  char* removed_at = shmat(removed, NULL, 0);
  if (shared_at == (void*)-1 || removed_at == (void*)-1) test_fail("shmat: %m");
  test_fill_random(shared_at, SHARED_SIZE, 11);
  test_fill_random(removed_at, REMOVED_SIZE, 13);
  {
    char* p = shmat(detached, NULL, 0);
    char* r = shmat(readonly, NULL, 0);
    if (p == (void*)-1 || r == (void*)-1) test_fail("shmat: %m");
    /* Sparse: only two pages written. */
    test_fill_random(p + 4096, 4096, 17);
    test_fill_random(p + 40 * 4096, 4096, 19);
    memcpy(r, "read only", 10);
    shmdt(p);
    shmdt(r);
  }
  char* readonly_at = shmat(readonly, NULL, SHM_RDONLY);
  if (readonly_at == (void*)-1) test_fail("shmat read-only: %m");
  /* 6 pages: the first and the last unmapped, the fourth read-only. */
  int split = shmget(IPC_PRIVATE, 6 * 4096, 0600);
  char* split_at = split < 0 ? (void*)-1 : shmat(split, NULL, 0);
  if (split_at == (void*)-1) test_fail("shmat split: %m");
  test_fill_random(split_at, 6 * 4096, 23);
  if (munmap(split_at, 4096) != 0 || munmap(split_at + 5 * 4096, 4096) != 0 ||
      mprotect(split_at + 3 * 4096, 4096, PROT_READ) != 0)
    test_fail("splitting the attachment: %m");
  if (shmctl(removed, IPC_RMID, NULL) != 0) test_fail("IPC_RMID: %m");
  struct shmid_ds ds;
  if (shmctl(detached, IPC_STAT, &ds) != 0) test_fail("IPC_STAT: %m");
  ds.shm_perm.uid = 1234;
  ds.shm_perm.gid = 2345;
  ds.shm_perm.mode = 0604;
  if (shmctl(detached, IPC_SET, &ds) != 0) test_fail("IPC_SET: %m");

  int to_child[2], from_child[2];
  if (pipe(to_child) != 0 || pipe(from_child) != 0) test_fail("pipe");
  pid_t child = fork();
  if (child < 0) test_fail("fork");
  if (child == 0) {
    /* Inherits the attachments; after restore writes into the shared segment when told. */
    char c;
    if (read(to_child[0], &c, 1) != 1) _exit(2);
    memcpy(shared_at + 4096, "written by the child", 21);
    _exit(write(from_child[1], "k", 1) == 1 ? 0 : 3);
  }

  test_ready();
  test_wait_for_sigterm();

  if (shmget(KEY_SHARED, 0, 0) != shared) test_fail("key %#x: id changed", KEY_SHARED);
  if (shmget(KEY_DETACHED, 0, 0) != detached) test_fail("key %#x: id changed", KEY_DETACHED);
  size_t bad = test_check_random(shared_at, SHARED_SIZE, 11);
  if (bad != (size_t)-1) test_fail("attached segment differs at %zu", bad);
  if (test_check_random(removed_at, REMOVED_SIZE, 13) != (size_t)-1)
    test_fail("removed segment's contents differ");
  if (memcmp(readonly_at, "read only", 10) != 0) test_fail("read-only segment's contents differ");
  {
    char expected[6 * 4096];
    test_fill_random(expected, sizeof expected, 23);
    if (memcmp(split_at + 4096, expected + 4096, 4 * 4096) != 0)
      test_fail("split attachment's contents differ");
    if (msync(split_at, 4096, MS_ASYNC) == 0 || msync(split_at + 5 * 4096, 4096, MS_ASYNC) == 0)
      test_fail("unmapped pages of the split attachment are mapped again");
    split_at[2 * 4096] = 'w'; /* still writable */
  }

  if (shmctl(detached, IPC_STAT, &ds) != 0) test_fail("IPC_STAT detached: %m");
  if (ds.shm_perm.uid != 1234 || ds.shm_perm.gid != 2345 || (ds.shm_perm.mode & 0777) != 0604)
    test_fail("owner/mode of the detached segment: %u %u %o", ds.shm_perm.uid, ds.shm_perm.gid,
              ds.shm_perm.mode);
  if (ds.shm_segsz != DETACHED_SIZE || ds.shm_nattch != 0)
    test_fail("detached segment: size %zu, nattch %lu", (size_t)ds.shm_segsz,
              (unsigned long)ds.shm_nattch);
  {
    char* p = shmat(detached, NULL, SHM_RDONLY);
    if (p == (void*)-1) test_fail("shmat detached after restore: %m");
    static const char zero[4096];
    if (test_check_random(p + 4096, 4096, 17) != (size_t)-1 ||
        test_check_random(p + 40 * 4096, 4096, 19) != (size_t)-1 || memcmp(p, zero, 4096) != 0)
      test_fail("detached segment's contents differ");
    shmdt(p);
  }
  /* parent + child */
  if (shmctl(shared, IPC_STAT, &ds) != 0 || ds.shm_nattch != 2)
    test_fail("shared segment: nattch %lu, expected 2", (unsigned long)ds.shm_nattch);
  if (shmctl(removed, IPC_STAT, &ds) != 0) test_fail("removed segment gone while attached: %m");
  if (!(ds.shm_perm.mode & SHM_DEST)) test_fail("removed segment is not marked removed");

  /* Same memory as the segment: the child's write shows here and in a new attachment. */
  if (write(to_child[1], "g", 1) != 1) test_fail("write to child");
  char c;
  if (read(from_child[0], &c, 1) != 1) test_fail("child did not answer");
  int status;
  if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    test_fail("child failed: %d", status);
  if (memcmp(shared_at + 4096, "written by the child", 21) != 0)
    test_fail("the child's write is not in the parent's attachment");
  char* again = shmat(shared, NULL, SHM_RDONLY);
  if (again == (void*)-1 || memcmp(again + 4096, "written by the child", 21) != 0)
    test_fail("a new attachment does not see the child's write");
  shmdt(again);

  /* Real attachments: shmdt works, and the removed segment disappears with its last detach. */
  if (shmdt(removed_at) != 0) test_fail("shmdt of the removed segment: %m");
  if (shmctl(removed, IPC_STAT, &ds) == 0 || errno != EINVAL)
    test_fail("the removed segment still exists after its last detach");
  if (shmdt(shared_at) != 0) test_fail("shmdt: %m");

  /* The read-only attachment and the read-only part of the split one refuse writes. */
  signal(SIGSEGV, on_segv);
  char* read_only_places[] = {readonly_at, split_at + 3 * 4096};
  for (int i = 0; i < 2; i++) {
    pid_t writer = fork();
    if (writer == 0) {
      read_only_places[i][0] = 'x';
      _exit(0);
    }
    if (waitpid(writer, &status, 0) != writer || !WIFEXITED(status) || WEXITSTATUS(status) != 7)
      test_fail("a write into read-only attachment %d did not fault", i);
  }
  test_pass();
}
