// Address spaces: the VMAs of a process (/proc/PID/smaps), which of their pages hold data
// (pagemap), copying those pages into the page image in large runs, and the description the
// restorer rebuilds the address space from.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/image/image_file.h"

namespace cryo::ckpt {

using json = nlohmann::json;

inline constexpr uint64_t kPageSize = 4096;

enum class VmaKind {
  kAnon,
  kFilePrivate,
  kFileShared,
  kSharedAnon,
  kSysvShm,  // a System V shared memory attachment (ipc.h): re-attached, contents not in pages
  kVdso,
  kVvar,
  kVvarVclock,
  kVsyscall
};
const char* vma_kind_name(VmaKind kind);
VmaKind vma_kind_from_name(const std::string& name);

struct Vma {
  uint64_t start = 0;
  uint64_t end = 0;
  int prot = 0;
  bool shared = false;
  uint64_t offset = 0;  // file offset (or offset in the shared memory object)
  std::string dev;
  uint64_t inode = 0;
  std::string path;  // empty for anonymous memory; [heap], [stack]... for special ones
  std::vector<std::string> vm_flags;  // two-letter VmFlags of smaps
  VmaKind kind = VmaKind::kAnon;

  uint64_t size() const { return end - start; }
  bool has_flag(const char* flag) const;
};

// kWithFlags reads /proc/PID/smaps (VmFlags filled), kWithoutFlags the cheaper /proc/PID/maps.
enum class VmaDetail { kWithFlags, kWithoutFlags };
std::vector<Vma> read_vmas(pid_t pid, VmaDetail detail = VmaDetail::kWithFlags);
json vma_to_json(const Vma& vma);
Vma vma_from_json(const json& j);

// A run of consecutive dumped pages: `pages` pages at `vaddr`, stored at `offset` in the payload
// of page image number `image` of the process (mm "pages_images": pages-PID.img, pages-PID.1.img,
// ...), or of shmem-INODE.img, where vaddr is the offset inside the object and image is 0.
struct PageRun {
  uint64_t vaddr;
  uint64_t pages;
  uint64_t offset;
  uint32_t image = 0;
};
json runs_to_json(const std::vector<PageRun>& runs);
std::vector<PageRun> runs_from_json(const json& j);

// Objects of the whole tree that several processes may map, each dumped once.
struct TreeMemory {
  std::map<uint64_t, json> shmem;  // shared anonymous memory / memfds by inode (shmem.img)
  // Mapped files deleted since they were mapped, by (dev, inode): their content is saved
  // (mapped-ghosts.img, like the ghost files of open fds).
  std::map<std::pair<uint64_t, uint64_t>, json> deleted_files;
};
inline constexpr const char* kMappedGhostsImage = "mapped-ghosts.img";

// At most this many page images per process (one per CPU up to it).
inline constexpr size_t kMaxPageImages = 4;

struct MemoryDumpCounters {
  uint64_t pages_scanned = 0;
  uint64_t pages_written = 0;
  uint64_t read_us = 0;
  uint64_t write_us = 0;
};

// Dumps the memory of a stopped process: returns mm-PID.img's content (VMAs, page runs, the
// mm fields of /proc/PID/stat, auxv, exe) and writes its page images through `sink`: into a sink
// with parallel outputs (a directory), up to one per CPU (pages-PID.img, pages-PID.1.img...),
// each written by a thread of its own and holding only the pages that are not zero; into a
// streaming sink, one pages-PID.img of a size known up front (zero pages are in it, in no run).
// Shared anonymous memory is dumped once per object into shmem-INODE.img, mapped deleted files into
// mapped-ghost-N.img (`tree` remembers which ones are done), before pages-PID.img (one output
// open at a time). Mappings of devices other than /dev/zero are refused.
json dump_memory(pid_t pid, ImageSink& sink, MemoryDumpCounters& counters, TreeMemory& tree);

// Gives the page copy's buffers back (zeroed, to the buffer pool: common/buffer_pool.h) once a
// dump is over; the next dump takes them again.
void release_page_copy_buffers();

}  // namespace cryo::ckpt
