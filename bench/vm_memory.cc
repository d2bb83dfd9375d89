// What fresh memory costs on this machine, the facts behind the archive's buffer arenas
// (archive_io.cc, BufferArena) and docs/PERFORMANCE.md:
// - a new 4 KiB mapping's first access, after MADV_POPULATE_WRITE, against the same in 2 MiB
//   pages and against a second pass over the same mapping;
// - populating memory that was freed a moment ago, against memory freed `rest` seconds ago (a VM
//   with virtio-balloon free page reporting hands free blocks of 2 MiB and more back to its host
//   after ~2 s, and gets them back at the next touch).
// Usage: vm_memory [MIB] [REST_SECONDS]. Prints milliseconds and MiB per ms.
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>

namespace {

constexpr size_t kHugePage = 2 << 20;

double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

// An anonymous mapping of `size` bytes, 2 MiB-aligned, in huge pages or in 4 KiB pages.
class Mapping {
 public:
  Mapping(size_t size, bool huge) : size_(size), mapped_size_(size + kHugePage) {
    void* p =
        ::mmap(nullptr, mapped_size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error(std::string("mmap: ") + std::strerror(errno));
    mapped_ = static_cast<char*>(p);
    data_ = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(mapped_) + kHugePage - 1) &
                                    ~(uintptr_t{kHugePage} - 1));
    ::madvise(data_, size_, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  }
  ~Mapping() { ::munmap(mapped_, mapped_size_); }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  double populate_ms() {
    double t0 = now_ms();
    if (::madvise(data_, size_, MADV_POPULATE_WRITE) < 0)
      throw std::runtime_error(std::string("MADV_POPULATE_WRITE: ") + std::strerror(errno));
    return now_ms() - t0;
  }
  double write_ms(int value) {
    double t0 = now_ms();
    std::memset(data_, value, size_);
    return now_ms() - t0;
  }

 private:
  size_t size_;
  size_t mapped_size_;
  char* mapped_;
  char* data_;
};

void row(const char* what, double ms, size_t mib) {
  std::printf("  %-58s %8.2f ms %8.1f MiB/ms\n", what, ms, ms > 0 ? mib / ms : 0.0);
}

}  // namespace

int main(int argc, char** argv) {
  size_t mib = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 32;
  unsigned rest = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 3;
  size_t size = mib << 20;
  try {
    std::printf("fresh memory, %zu MiB\n", mib);
    for (bool huge : {false, true}) {
      // Warm: the same physical memory was in use a moment ago.
      { Mapping(size, huge).write_ms(1); }
      Mapping m(size, huge);
      double populate = m.populate_ms();
      double first = m.write_ms(1);
      double second = m.write_ms(2);
      std::string page = huge ? "2 MiB pages" : "4 KiB pages";
      row(("populate, " + page + ", memory freed just before").c_str(), populate, mib);
      row(("first write after populate, " + page).c_str(), first, mib);
      row(("second write, " + page).c_str(), second, mib);
    }
    {
      Mapping warm(size, true);
      warm.write_ms(1);
    }
    std::this_thread::sleep_for(std::chrono::seconds(rest));
    Mapping cold(size, true);
    double populate = cold.populate_ms();
    row(("populate, 2 MiB pages, memory freed " + std::to_string(rest) + " s before").c_str(),
        populate, mib);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vm_memory: %s\n", e.what());
    return 1;
  }
  return 0;
}
