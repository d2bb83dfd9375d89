// processes_with_semaphore_undo_lists(): what the dump's SEM_UNDO warning relies on. A process has
// an undo list once it made one semop with SEM_UNDO, even when its adjustments add up to zero
// again; a caller with threads of its own has one too, and must not make every process look so.
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "checkpoint/ipc.h"

namespace cryo::ckpt {
namespace {

TEST(SemaphoreUndoTest, AnUndoListIsFoundOnceAProcessUsedSemUndo) {
  int set = ::semget(IPC_PRIVATE, 1, 0600);
  ASSERT_GE(set, 0);
  int go[2], done[2];
  ASSERT_EQ(::pipe(go), 0);
  ASSERT_EQ(::pipe(done), 0);
  pid_t child = ::fork();
  if (child == 0) {
    char c;
    if (::read(go[0], &c, 1) != 1) ::_exit(1);
    sembuf up{0, 1, SEM_UNDO}, down{0, -1, SEM_UNDO};
    if (::semop(set, &up, 1) != 0 || ::semop(set, &down, 1) != 0) ::_exit(1);
    if (::write(done[1], "d", 1) != 1) ::_exit(1);
    for (;;) ::pause();
  }
  ASSERT_GT(child, 0);
  // A thread of the caller (pthread_create passes CLONE_SYSVSEM) gives the caller an undo list.
  std::thread([] {}).join();
  EXPECT_EQ(processes_with_semaphore_undo_lists({child}), std::vector<pid_t>{});
  char c;
  ASSERT_EQ(::write(go[1], "g", 1), 1);
  ASSERT_EQ(::read(done[0], &c, 1), 1);
  EXPECT_EQ(processes_with_semaphore_undo_lists({child, ::getpid()}),
            (std::vector<pid_t>{child, ::getpid()}))
      << "balanced SEM_UNDO operations keep the list; the caller's threads gave it one";
  EXPECT_EQ(::semctl(set, 0, GETVAL), 0);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  for (int fd : {go[0], go[1], done[0], done[1]}) ::close(fd);
  ::semctl(set, 0, IPC_RMID);
}

}  // namespace
}  // namespace cryo::ckpt
