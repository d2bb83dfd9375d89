// The restorer: in each restoring process (a fork of the coordinator), the syscall batch that
// turns its address space into the dumped one, placed together with the blob in an area free in
// both layouts. The coordinator then runs it by ptrace (registers set to the blob's entry) and
// finishes the threads.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "checkpoint/image/image_file.h"
#include "checkpoint/memory.h"
#include "checkpoint/syscall_batch.h"

namespace cryo::ckpt {

using json = nlohmann::json;

// fds the batch uses, open in the restoring process.
struct RestorerFds {
  std::map<std::string, int> files;  // mapped files by path (opened for the needed access)
  std::map<uint64_t, int> shmem;     // shared anonymous memory objects by dumped inode
  int exe = -1;                      // the dumped executable, for PR_SET_MM_MAP
  std::vector<int> close_at_end;     // closed by the batch's last entries
};

// Where the prepared restorer lives; sent to the coordinator.
struct RestorerPlan {
  uint64_t area = 0;
  uint64_t area_size = 0;
  uint64_t block = 0;
  uint64_t block_size = 0;
  uint64_t stack_top = 0;
  // (index, expected result) of entries whose full success must be checked (preadv lengths).
  std::vector<std::pair<uint64_t, int64_t>> expected_results;
  std::vector<std::string> descriptions;  // one per entry, for error messages
  uint64_t pages_restored = 0;
  // The batch's pause (SyscallBatch::add_pause): the coordinator runs the entries before it, fills
  // the memory (fill_process_memory), then runs the rest.
  uint64_t fill_pause = 0;
};
json plan_to_json(const RestorerPlan& plan);
RestorerPlan plan_from_json(const json& j);

// Builds the batch for `core` and `mm`, lets `append_late` add the late process attributes
// (credentials, timers, seccomp last), and maps the area with blob and batch into this process.
// Call with all signals blocked.
RestorerPlan prepare_restorer(const json& core, const json& mm, const RestorerFds& fds,
                              const std::function<void(SyscallBatch&)>& append_late);

// Queues a thread's dumped pending signals again; run by the thread itself (the kernel lets only
// a thread queue signals with user codes to itself).
void append_thread_signals(pid_t pid, const json& thread, SyscallBatch& batch);

// Checks the batch results read back from the restored process, of its first `entries` entries
// (all by default); throws on the first failure.
void check_restorer_results(const RestorerPlan& plan, const std::vector<uint8_t>& block,
                            size_t entries = SIZE_MAX);

// Writes the pages of a restoring process, stopped at its restorer's pause (every VMA that gets
// pages mapped and writable), from the coordinator: the page image is read in small steps into
// per-thread buffers and written with process_vm_writev straight to the run addresses, on
// several threads, so that the kernel populates and fills each page in one pass (no page faults
// in the target, no populate pass first). The image's checksum is verified on the way, over the
// whole payload (pages found zero at dump time are in it, in no run), before the process can
// run: a mismatch throws. The process's pages may be in several images (a run names its image's
// index in `images`); the workers take chunks of the images in turn, so that several images are
// read, checked and written at once. Returns the bytes written.
uint64_t fill_process_memory(pid_t pid, const std::vector<const RawImageReader*>& images,
                             const std::vector<PageRun>& runs);

}  // namespace cryo::ckpt
