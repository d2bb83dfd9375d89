// Measures this machine's ceilings, so that every benchmark can print its own figures next to what
// the hardware and kernel allow in the same run: memcpy, process_vm_readv, tmpfs and disk write,
// zstd level 1 on one thread and on all cores.
//
//   ceilings [--size-mib N] [--disk-dir DIR] [--json]
//   ceilings --export-parts FILE   (JSON: what each per-byte part of an export costs on FILE's
//   bytes)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxh_x86dispatch.h>
#include <xxhash.h>
#include <zstd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Touched, page-backed memory so that no benchmark measures page faults by accident.
struct Buffer {
  explicit Buffer(size_t n) : size(n) {
    data = static_cast<char*>(mmap(nullptr, n, PROT_READ | PROT_WRITE,
                                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0));
    if (data == MAP_FAILED) cryo::throw_errno("mmap");
  }
  ~Buffer() { munmap(data, size); }
  char* data;
  size_t size;
};

// Data that compresses like process memory does (ratio ~4-6 with zstd -1): runs of zeros, small
// integers, text and random bytes.
void fill_memory_like(char* p, size_t n) {
  std::mt19937_64 rng(42);
  size_t i = 0;
  while (i < n) {
    size_t run = std::min<size_t>(n - i, 512 + rng() % 4096);
    switch (rng() % 5) {
      case 0:
        std::memset(p + i, 0, run);
        break;
      case 1:
        for (size_t k = 0; k < run; ++k) p[i + k] = static_cast<char>(rng() & 0xff);
        break;
      case 2:
        for (size_t k = 0; k < run; ++k) p[i + k] = "the quick brown fox jumps "[k % 26];
        break;
      default:
        for (size_t k = 0; k + 8 <= run; k += 8) {
          uint64_t v = rng() % 1000;
          std::memcpy(p + i + k, &v, 8);
        }
    }
    i += run;
  }
}

double bench_memcpy(Buffer& src, Buffer& dst) {
  std::memcpy(dst.data, src.data, src.size);  // warm
  auto t = Clock::now();
  const int reps = 3;
  for (int r = 0; r < reps; ++r) std::memcpy(dst.data, src.data, src.size);
  return reps * static_cast<double>(src.size) / seconds_since(t) / 1e9;
}

double bench_process_vm_readv(Buffer& src, size_t chunk = 4 << 20) {
  int ready[2];
  if (pipe(ready) < 0) cryo::throw_errno("pipe");
  pid_t child = fork();
  if (child < 0) cryo::throw_errno("fork");
  if (child == 0) {
    // Own private copies of the pages, as a real target has: no copy-on-write sharing with us.
    for (size_t off = 0; off < src.size; off += 4096) src.data[off] ^= 1;
    (void)!write(ready[1], "r", 1);
    pause();
    _exit(0);
  }
  char c;
  (void)!read(ready[0], &c, 1);
  // After fork our old pages are copy-on-write shared: write into fresh ones.
  Buffer dst(src.size);
  close(ready[0]);
  close(ready[1]);
  auto t = Clock::now();
  const int reps = 3;
  for (int r = 0; r <= reps; ++r) {
    if (r == 1) t = Clock::now();  // the first pass warms up
    for (size_t off = 0; off < src.size; off += chunk) {
      struct iovec local = {dst.data + off, std::min(chunk, src.size - off)};
      struct iovec remote = {src.data + off, local.iov_len};
      if (process_vm_readv(child, &local, 1, &remote, 1, 0) < 0) {
        kill(child, SIGKILL);
        waitpid(child, nullptr, 0);
        cryo::throw_errno("process_vm_readv");
      }
    }
  }
  double gbps = reps * static_cast<double>(src.size) / seconds_since(t) / 1e9;
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  return gbps;
}

double bench_write(const std::string& dir, Buffer& src, bool sync) {
  std::string path = dir + "/cryo-ceiling-" + std::to_string(getpid());
  cryo::UniqueFd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) cryo::throw_errno("open " + path);
  auto t = Clock::now();
  const size_t chunk = 4 << 20;
  for (size_t off = 0; off < src.size; off += chunk) {
    size_t n = std::min(chunk, src.size - off);
    if (write(fd.get(), src.data + off, n) != static_cast<ssize_t>(n)) {
      unlink(path.c_str());
      cryo::throw_errno("write " + path);
    }
  }
  if (sync) fsync(fd.get());
  double gbps = static_cast<double>(src.size) / seconds_since(t) / 1e9;
  unlink(path.c_str());
  return gbps;
}

double bench_zstd(Buffer& src, int workers, double* ratio) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 1);
  if (workers > 0) ZSTD_CCtx_setParameter(cctx, ZSTD_c_nbWorkers, workers);
  std::vector<char> out(ZSTD_compressBound(src.size));
  auto t = Clock::now();
  size_t n = ZSTD_compress2(cctx, out.data(), out.size(), src.data, src.size);
  double secs = seconds_since(t);
  ZSTD_freeCCtx(cctx);
  if (ZSTD_isError(n)) throw cryo::Error(std::string("zstd: ") + ZSTD_getErrorName(n));
  *ratio = static_cast<double>(src.size) / static_cast<double>(n);
  return static_cast<double>(src.size) / secs / 1e9;
}

// XXH3-64 over the buffer in pieces of `chunk`, one thread (as the dump checksums each image),
// through libxxhash's run-time dispatch (AVX2/AVX-512), as the dump does since session 4.
double bench_xxh3(Buffer& src, size_t chunk) {
  XXH3_state_t* state = XXH3_createState();
  uint64_t sink = 0;
  auto t = Clock::now();
  const int reps = 3;
  for (int r = 0; r < reps; ++r) {
    XXH3_64bits_reset(state);
    for (size_t off = 0; off < src.size; off += chunk)
      XXH3_64bits_update(state, src.data + off, std::min(chunk, src.size - off));
    sink ^= XXH3_64bits_digest(state);
  }
  double gbps = reps * static_cast<double>(src.size) / seconds_since(t) / 1e9;
  XXH3_freeState(state);
  if (sink == 42) std::printf(" ");  // keeps the hash from being optimised away
  return gbps;
}

// zstd level 1 on one thread, in independent frames of `frame` bytes without frame checksum (as
// the export compresses), from memory to memory.
double bench_zstd_frames(Buffer& src, size_t frame, double* ratio) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 1);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 0);
  Buffer out(ZSTD_compressBound(frame));
  size_t compressed = 0;
  auto t = Clock::now();
  for (size_t off = 0; off < src.size; off += frame) {
    size_t n =
        ZSTD_compress2(cctx, out.data, out.size, src.data + off, std::min(frame, src.size - off));
    if (ZSTD_isError(n)) {
      ZSTD_freeCCtx(cctx);
      throw cryo::Error(std::string("zstd: ") + ZSTD_getErrorName(n));
    }
    compressed += n;
  }
  double secs = seconds_since(t);
  ZSTD_freeCCtx(cctx);
  *ratio = static_cast<double>(src.size) / static_cast<double>(compressed);
  return static_cast<double>(src.size) / secs / 1e9;
}

// The export's irreducible per-byte work on the bytes of `path` (an uncompressed archive), each
// measured on one thread: reading another process's memory (process_vm_readv, 2 MiB batches as
// the dump reads), checksumming it (XXH3-64), compressing it (zstd -1 in 1 MiB frames). With
// every core busy and nothing else to do, an export cannot be faster than
// cores / (sum of the CPU seconds per byte of the three).
int export_parts(const std::string& path) {
  cryo::UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) cryo::throw_errno("open " + path);
  off_t size = lseek(fd.get(), 0, SEEK_END);
  if (size <= 0) throw cryo::Error(path + " is empty");
  Buffer src(static_cast<size_t>(size));
  for (size_t at = 0; at < src.size;) {
    ssize_t n = pread(fd.get(), src.data + at, src.size - at, static_cast<off_t>(at));
    if (n <= 0) cryo::throw_errno("read " + path);
    at += static_cast<size_t>(n);
  }
  double pvr = bench_process_vm_readv(src, 2 << 20);
  double xxh3 = bench_xxh3(src, 2 << 20);
  double ratio = 0;
  double zstd = bench_zstd_frames(src, 1 << 20, &ratio);
  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  double cpu_s_per_gb = 1 / pvr + 1 / xxh3 + 1 / zstd;
  std::printf(
      "{\"bytes\":%zu,\"process_vm_readv_gbps\":%.3f,\"xxh3_gbps\":%.3f,"
      "\"zstd1_frames_1thread_gbps\":%.3f,\"zstd1_frames_ratio\":%.3f,\"cores\":%u,"
      "\"cpu_s_per_gb\":%.4f,\"export_bound_gbps\":%.3f}\n",
      src.size, pvr, xxh3, zstd, ratio, cores, cpu_s_per_gb, cores / cpu_s_per_gb);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--export-parts") {
    try {
      return export_parts(argv[2]);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "ceilings: %s\n", e.what());
      return 1;
    }
  }
  size_t size_mib = 512;
  std::string disk_dir = "/var/tmp";
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--size-mib" && i + 1 < argc)
      size_mib = std::stoul(argv[++i]);
    else if (a == "--disk-dir" && i + 1 < argc)
      disk_dir = argv[++i];
    else if (a == "--json")
      json = true;
    else {
      std::fprintf(stderr, "usage: ceilings [--size-mib N] [--disk-dir DIR] [--json]\n");
      return 2;
    }
  }
  try {
    Buffer src(size_mib << 20), dst(size_mib << 20);
    fill_memory_like(src.data, src.size);
    double memcpy_gbps = bench_memcpy(src, dst);
    double pvr_gbps = bench_process_vm_readv(src);
    double tmpfs_gbps = bench_write("/dev/shm", src, false);
    double disk_gbps = bench_write(disk_dir, src, true);
    double ratio1 = 0, ratio_all = 0;
    double zstd1_gbps = bench_zstd(src, 0, &ratio1);
    unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    double zstd_all_gbps = bench_zstd(src, static_cast<int>(cores), &ratio_all);
    if (json) {
      std::printf(
          "{\"size_mib\":%zu,\"memcpy_gbps\":%.2f,\"process_vm_readv_gbps\":%.2f,"
          "\"tmpfs_write_gbps\":%.2f,\"disk_write_fsync_gbps\":%.2f,\"zstd1_1thread_gbps\":%.2f,"
          "\"zstd1_all_cores_gbps\":%.2f,\"zstd1_ratio\":%.2f,\"cores\":%u}\n",
          size_mib, memcpy_gbps, pvr_gbps, tmpfs_gbps, disk_gbps, zstd1_gbps, zstd_all_gbps, ratio1,
          cores);
    } else {
      std::printf("machine ceilings (%zu MiB, measured now)\n", size_mib);
      std::printf("  memcpy                      %6.2f GB/s\n", memcpy_gbps);
      std::printf("  process_vm_readv (4 MiB)    %6.2f GB/s\n", pvr_gbps);
      std::printf("  tmpfs write (/dev/shm)      %6.2f GB/s\n", tmpfs_gbps);
      std::printf("  disk write+fsync (%s)  %6.2f GB/s\n", disk_dir.c_str(), disk_gbps);
      std::printf("  zstd -1, 1 thread           %6.2f GB/s (ratio %.2f)\n", zstd1_gbps, ratio1);
      std::printf("  zstd -1, %u workers          %6.2f GB/s (ratio %.2f)\n", cores, zstd_all_gbps,
                  ratio_all);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ceilings: %s\n", e.what());
    return 1;
  }
  return 0;
}
