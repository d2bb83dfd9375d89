// Helper of ckpt_memory.sh:
//   ckpt_memory hold MIB ZERO_PERCENT OUTFILE   holds MIB MiB of touched memory (random data, with
//                                               ZERO_PERCENT of the pages zero), writes READY to
//                                               OUTFILE and waits; on SIGTERM checks the memory
//                                               and writes PASS or FAIL.
//   ckpt_memory ceilings MIB DIR                 prints this machine's ceilings measured now:
//                                               memcpy, process_vm_readv, write to a file in DIR
//                                               (from memory, and from a small buffer on 1 and 2
//                                               threads), populate, pread, and process_vm_writev
//                                               into fresh memory of another process (1 and 2
//                                               threads).
//   ckpt_memory tree N OUTFILE                  a tree of N small processes (this one and N-1
//                                               children), READY, then on SIGTERM checks that
//                                               every child is still there and writes PASS/FAIL.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

volatile sig_atomic_t got_term = 0;

uint8_t* populated(size_t size) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                 -1, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    exit(2);
  }
  return static_cast<uint8_t*>(p);
}

void fill(uint8_t* p, size_t size, int zero_percent) {
  uint64_t x = 88172645463325252ull;
  for (size_t page = 0; page < size / 4096; ++page) {
    uint64_t* words = reinterpret_cast<uint64_t*>(p + page * 4096);
    if (static_cast<int>(page % 100) < zero_percent) {
      words[0] = 0;  // touched, but all zero
      continue;
    }
    for (int i = 0; i < 512; ++i) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      words[i] = x;
    }
  }
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void append(const char* path, const char* text) {
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0 || write(fd, text, strlen(text)) < 0) exit(2);
  close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5 && argc != 4) {
    fprintf(stderr, "usage: %s hold MIB ZERO_PERCENT OUTFILE | ceilings MIB DIR | tree N OUTFILE\n",
            argv[0]);
    return 2;
  }
  std::string mode = argv[1];
  size_t size = std::stoul(argv[2]) << 20;
  if (mode == "hold") {
    int zero_percent = std::atoi(argv[3]);
    uint8_t* memory = populated(size);
    fill(memory, size, zero_percent);
    uint8_t* copy = nullptr;
    struct sigaction sa {};
    sa.sa_handler = [](int) { got_term = 1; };
    sigaction(SIGTERM, &sa, nullptr);
    append(argv[4], "READY\n");
    while (!got_term) pause();
    copy = static_cast<uint8_t*>(malloc(size));
    fill(copy, size, zero_percent);
    append(argv[4], memcmp(copy, memory, size) == 0 ? "PASS\n" : "FAIL: memory differs\n");
    return 0;
  }
  if (mode == "tree") {
    int count = std::atoi(argv[2]);
    struct sigaction sa {};
    sa.sa_handler = [](int) { got_term = 1; };
    sigaction(SIGTERM, &sa, nullptr);
    // SIGTERM is only let in by sigsuspend: one arriving between a check and the wait is not lost.
    sigset_t term, others;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, &others);
    std::vector<pid_t> children;
    for (int i = 1; i < count; ++i) {
      pid_t child = fork();
      if (child < 0) exit(2);
      if (child == 0) {
        while (!got_term) sigsuspend(&others);
        _exit(0);
      }
      children.push_back(child);
    }
    append(argv[3], "READY\n");
    while (!got_term) sigsuspend(&others);
    int exited = 0;
    for (pid_t child : children) {
      kill(child, SIGTERM);
      int status = 0;
      if (waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        ++exited;
    }
    append(argv[3], exited == count - 1 ? "PASS\n" : "FAIL: children lost\n");
    return 0;
  }
  if (mode == "ceilings") {
    uint8_t* src = populated(size);
    fill(src, size, 0);
    // The reader is forked before the destination exists: writes into memory shared with a
    // child since fork would measure copy-on-write faults instead.
    pid_t child = fork();
    if (child == 0) {
      pause();
      _exit(0);
    }
    uint8_t* dst = populated(size);
    auto t0 = std::chrono::steady_clock::now();
    memcpy(dst, src, size);
    printf("ceiling memcpy            %6.2f GB/s\n", size / seconds_since(t0) / 1e9);
    t0 = std::chrono::steady_clock::now();
    for (size_t off = 0; off < size; off += 4 << 20) {
      iovec local{dst + off, std::min<size_t>(4 << 20, size - off)};
      iovec remote{src + off, local.iov_len};
      if (process_vm_readv(child, &local, 1, &remote, 1, 0) !=
          static_cast<ssize_t>(local.iov_len)) {
        perror("process_vm_readv");
        return 2;
      }
    }
    printf("ceiling process_vm_readv  %6.2f GB/s\n", size / seconds_since(t0) / 1e9);
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);

    std::string path = std::string(argv[3]) + "/ceiling-write.tmp";
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    t0 = std::chrono::steady_clock::now();
    for (size_t off = 0; off < size; off += 4 << 20)
      if (write(fd, src + off, std::min<size_t>(4 << 20, size - off)) < 0) return 2;
    printf("ceiling write to %-8s %6.2f GB/s\n", argv[3], size / seconds_since(t0) / 1e9);
    close(fd);
    fd = open(path.c_str(), O_RDONLY);
    t0 = std::chrono::steady_clock::now();
    uint8_t* fresh = populated(size);
    printf("ceiling populate (MAP_POPULATE) %6.2f GB/s\n", size / seconds_since(t0) / 1e9);
    t0 = std::chrono::steady_clock::now();
    for (size_t off = 0; off < size; off += 4 << 20)
      if (pread(fd, fresh + off, std::min<size_t>(4 << 20, size - off), static_cast<off_t>(off)) <
          0)
        return 2;
    printf("ceiling pread into populated memory %6.2f GB/s\n", size / seconds_since(t0) / 1e9);
    close(fd);
    unlink(path.c_str());

    // The dump's writer writes from a small buffer that stays in the CPU caches; tmpfs takes one
    // writer at a time per file, so two threads write two files.
    for (int threads : {1, 2}) {
      std::vector<std::thread> writers;
      t0 = std::chrono::steady_clock::now();
      for (int w = 0; w < threads; ++w)
        writers.emplace_back([&, w] {
          std::string name = path + std::to_string(w);
          int out = open(name.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
          const size_t chunk = 2 << 20;
          uint8_t* buffer = populated(chunk);
          memcpy(buffer, src, chunk);
          for (size_t off = 0; off < size / threads; off += chunk)
            if (out < 0 || write(out, buffer, chunk) != static_cast<ssize_t>(chunk)) {
              perror("write");
              break;
            }
          close(out);
          munmap(buffer, chunk);
        });
      for (std::thread& t : writers) t.join();
      printf("ceiling write to %-8s from a 2 MiB buffer, %d thread(s), %d file(s) %6.2f GB/s\n",
             argv[3], threads, threads, size / seconds_since(t0) / 1e9);
      for (int w = 0; w < threads; ++w) unlink((path + std::to_string(w)).c_str());
    }

    // Restore writes pages into not yet populated memory of the restored process.
    for (int threads : {1, 2}) {
      void* area = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      pid_t target = fork();
      if (target == 0) {
        pause();
        _exit(0);
      }
      munmap(area, size);
      std::vector<std::thread> writers;
      t0 = std::chrono::steady_clock::now();
      for (int w = 0; w < threads; ++w)
        writers.emplace_back([&, w] {
          const size_t chunk = 2 << 20;
          for (size_t off = w * chunk; off < size; off += threads * chunk) {
            iovec local{src + off, std::min(chunk, size - off)};
            iovec remote{static_cast<uint8_t*>(area) + off, local.iov_len};
            if (process_vm_writev(target, &local, 1, &remote, 1, 0) !=
                static_cast<ssize_t>(local.iov_len)) {
              perror("process_vm_writev");
              break;
            }
          }
        });
      for (std::thread& t : writers) t.join();
      printf("ceiling process_vm_writev into fresh memory, %d thread(s) %6.2f GB/s\n", threads,
             size / seconds_since(t0) / 1e9);
      kill(target, SIGKILL);
      waitpid(target, nullptr, 0);
    }
    return 0;
  }
  fprintf(stderr, "unknown mode %s\n", mode.c_str());
  return 2;
}
