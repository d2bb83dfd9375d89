/* System V semaphore sets in the test's own IPC namespace keep their ids, keys, owners, modes and
 * values; they work after restore (semop on a restored value). */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <sys/ipc.h>
#include <sys/sem.h>

#include "zdtmtst.h"

#define KEY 0x2a2a0101

union semun {
  int val;
  struct semid_ds* buf;
  unsigned short* array;
};

int main(int argc, char** argv) {
  test_init(argc, argv);
  if (unshare(CLONE_NEWIPC) != 0) test_fail("unshare CLONE_NEWIPC: %m");
  /* A set created and deleted first: the next ids are not the first ones. */
  int scratch = semget(IPC_PRIVATE, 1, 0600);
  if (scratch < 0 || semctl(scratch, 0, IPC_RMID) != 0) test_fail("scratch set: %m");
  int keyed = semget(KEY, 3, IPC_CREAT | 0640);
  int private_set = semget(IPC_PRIVATE, 2, 0600);
  if (keyed < 0 || private_set < 0) test_fail("semget: %m");
  unsigned short values[3] = {1, 5, 32000};
  unsigned short private_values[2] = {7, 0};
  union semun arg;
  arg.array = values;
  if (semctl(keyed, 0, SETALL, arg) != 0) test_fail("SETALL: %m");
  arg.array = private_values;
  if (semctl(private_set, 0, SETALL, arg) != 0) test_fail("SETALL: %m");
  struct semid_ds ds;
  arg.buf = &ds;
  if (semctl(keyed, 0, IPC_STAT, arg) != 0) test_fail("IPC_STAT: %m");
  ds.sem_perm.uid = 4321;
  ds.sem_perm.mode = 0606;
  if (semctl(keyed, 0, IPC_SET, arg) != 0) test_fail("IPC_SET: %m");

  test_ready();
  test_wait_for_sigterm();

  if (semget(KEY, 0, 0) != keyed) test_fail("key %#x: id changed", KEY);
  arg.buf = &ds;
  if (semctl(private_set, 0, IPC_STAT, arg) != 0)
    test_fail("private set %d is gone: %m", private_set);
  if (ds.sem_nsems != 2) test_fail("private set has %lu semaphores", (unsigned long)ds.sem_nsems);
  if (semctl(keyed, 0, IPC_STAT, arg) != 0) test_fail("IPC_STAT: %m");
  if (ds.sem_nsems != 3 || ds.sem_perm.uid != 4321 || (ds.sem_perm.mode & 0777) != 0606)
    test_fail("keyed set: nsems %lu uid %u mode %o", (unsigned long)ds.sem_nsems, ds.sem_perm.uid,
              ds.sem_perm.mode);
  unsigned short now[3] = {0};
  arg.array = now;
  if (semctl(keyed, 0, GETALL, arg) != 0) test_fail("GETALL: %m");
  for (int i = 0; i < 3; i++)
    if (now[i] != values[i]) test_fail("semaphore %d: %u, expected %u", i, now[i], values[i]);
  if (semctl(private_set, 0, GETVAL) != 7 || semctl(private_set, 1, GETVAL) != 0)
    test_fail("private set values differ");
  struct sembuf take = {1, -5, IPC_NOWAIT};
  if (semop(keyed, &take, 1) != 0) test_fail("semop -5 on a semaphore of 5: %m");
  if (semop(keyed, &take, 1) == 0 || errno != EAGAIN) test_fail("semop on 0 did not block");
  test_pass();
}
