#include "common/phase_trace.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace cryo {

namespace {

const char* trace_path() {
  // Read once per process: the environment does not change under a running engine.
  static const char* path = ::getenv("CRYO_PHASE_TRACE");
  return path && *path ? path : nullptr;
}

// The first mark of every process that links this file: the dynamic loader and the static
// constructors are done, main() has not started.
__attribute__((constructor)) void mark_process_loaded() {
  if (trace_path()) phase_mark("process loaded (dynamic loader done)");
}

// The trace file stays open: a restore helper that moved to the container's root after its
// first mark can no longer reach the path. The fd is checked before each use (a forked monitor
// closes every fd it does not know, and the number may have been reused since).
int trace_fd(const char* path) {
  static int fd = -1;
  static dev_t device = 0;
  static ino_t inode = 0;
  struct stat st;
  if (fd >= 0 && ::fstat(fd, &st) == 0 && st.st_dev == device && st.st_ino == inode) return fd;
  fd = ::open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0 || ::fstat(fd, &st) < 0) return -1;
  device = st.st_dev;
  inode = st.st_ino;
  return fd;
}

}  // namespace

void phase_mark(std::string_view phase) {
  const char* path = trace_path();
  if (!path) return;
  struct timespec now;
  ::clock_gettime(CLOCK_REALTIME, &now);
  char prefix[64];
  int n = std::snprintf(prefix, sizeof prefix, "%lld %d ",
                        static_cast<long long>(now.tv_sec) * 1000000 + now.tv_nsec / 1000,
                        static_cast<int>(::getpid()));
  std::string line(prefix, static_cast<size_t>(n));
  line.append(phase);
  line += '\n';
  int fd = trace_fd(path);
  if (fd < 0) return;
  [[maybe_unused]] ssize_t ignored = ::write(fd, line.data(), line.size());
}

}  // namespace cryo
