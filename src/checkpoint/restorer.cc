#include "checkpoint/restorer.h"

#include <linux/sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>

#include "checkpoint/arch/x86_64/blob.h"
#include "checkpoint/image/image_file.h"
#include "checkpoint/ipc.h"
#include "checkpoint/memory.h"
#include "checkpoint/threads.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"

namespace cryo::ckpt {

namespace {

constexpr uint64_t kTaskSize = 0x7ffffffff000;
constexpr uint64_t kLowestAddress = 0x10000;
constexpr size_t kRestorerStack = 64 * 1024;

uint64_t round_up(uint64_t n, uint64_t to) {
  return (n + to - 1) / to * to;
}

bool is_vdso_group(VmaKind kind) {
  return kind == VmaKind::kVdso || kind == VmaKind::kVvar || kind == VmaKind::kVvarVclock;
}

struct Interval {
  uint64_t start, end;
};

// Lowest address >= `from` where `size` bytes fit between all `taken` intervals.
uint64_t find_free(std::vector<Interval> taken, uint64_t size, uint64_t from) {
  std::sort(taken.begin(), taken.end(), [](auto& a, auto& b) { return a.start < b.start; });
  uint64_t candidate = from;
  for (const Interval& t : taken) {
    if (t.end <= candidate) continue;
    if (t.start >= candidate + size) break;
    candidate = round_up(t.end, 1 << 20);
  }
  if (candidate + size > kTaskSize) throw Error("no free address range for the restorer");
  return candidate;
}

struct prctl_mm_map_layout {
  uint64_t start_code, end_code, start_data, end_data, start_brk, brk, start_stack, arg_start,
      arg_end, env_start, env_end;
  uint64_t auxv;
  uint32_t auxv_size;
  uint32_t exe_fd;
};

class BatchBuilder {
 public:
  BatchBuilder(SyscallBatch& batch, RestorerPlan& plan) : batch_(batch), plan_(plan) {}
  size_t add(std::string what, long nr, std::initializer_list<BatchArg> args, bool stop = true) {
    plan_.descriptions.push_back(std::move(what));
    return batch_.add(nr, args, stop);
  }

 private:
  SyscallBatch& batch_;
  RestorerPlan& plan_;
};

std::string hex(uint64_t v) {
  return RemoteAddr(v).hex();
}

}  // namespace

void append_thread_signals(pid_t pid, const json& thread, SyscallBatch& batch) {
  pid_t tid = thread.at("tid");
  for (const siginfo_t& info : siginfos_from_json(thread.at("pending_signals"))) {
    if (info.si_signo == SIGKILL || info.si_signo == SIGSTOP) continue;
    BatchArg info_ref = batch.data(&info, sizeof info);
    size_t i =
        batch.add(SYS_rt_tgsigqueueinfo, {static_cast<uint64_t>(pid), static_cast<uint64_t>(tid),
                                          static_cast<uint64_t>(info.si_signo), info_ref});
    batch.describe(
        i, "rt_tgsigqueueinfo " + std::to_string(info.si_signo) + " to " + std::to_string(tid));
  }
}

json plan_to_json(const RestorerPlan& p) {
  json checks = json::array();
  for (auto& [i, r] : p.expected_results) checks.push_back({i, r});
  return {{"area", p.area},
          {"area_size", p.area_size},
          {"block", p.block},
          {"block_size", p.block_size},
          {"stack_top", p.stack_top},
          {"checks", checks},
          {"descriptions", p.descriptions},
          {"pages_restored", p.pages_restored},
          {"fill_pause", p.fill_pause}};
}

RestorerPlan plan_from_json(const json& j) {
  RestorerPlan p;
  p.area = j.at("area");
  p.area_size = j.at("area_size");
  p.block = j.at("block");
  p.block_size = j.at("block_size");
  p.stack_top = j.at("stack_top");
  for (auto& c : j.at("checks")) p.expected_results.push_back({c.at(0), c.at(1)});
  p.descriptions = j.at("descriptions").get<std::vector<std::string>>();
  p.pages_restored = j.at("pages_restored");
  p.fill_pause = j.at("fill_pause");
  return p;
}

void check_restorer_results(const RestorerPlan& plan, const std::vector<uint8_t>& block,
                            size_t entries) {
  for (size_t i = 0; i < std::min(entries, plan.descriptions.size()); ++i) {
    int64_t r = SyscallBatch::result_of(block, i);
    if (r < 0 && r >= -4095)
      throw SysError("restorer step " + std::to_string(i) + " (" + plan.descriptions[i] + ")",
                     static_cast<int>(-r));
  }
  for (auto& [index, expected] : plan.expected_results) {
    if (index >= entries) continue;
    int64_t r = SyscallBatch::result_of(block, index);
    if (r != expected)
      throw Error("restorer step " + std::to_string(index) + " (" + plan.descriptions.at(index) +
                  ") returned " + std::to_string(r) + ", expected " + std::to_string(expected));
  }
}

RestorerPlan prepare_restorer(const json& core, const json& mm, const RestorerFds& fds,
                              const std::function<void(SyscallBatch&)>& append_late) {
  RestorerPlan plan;
  SyscallBatch batch;
  BatchBuilder b(batch, plan);
  const pid_t pid = core.at("pid");

  std::vector<Vma> current = read_vmas(::getpid());
  std::vector<Vma> dumped;
  for (const json& v : mm.at("vmas")) dumped.push_back(vma_from_json(v));

  // The vdso group (vvar, vvar_vclock, vdso) goes back to its dumped place; the kernel must be
  // the same one (same sizes).
  std::map<VmaKind, Vma> current_special, dumped_special;
  for (const Vma& v : current)
    if (is_vdso_group(v.kind)) current_special[v.kind] = v;
  for (const Vma& v : dumped)
    if (is_vdso_group(v.kind)) dumped_special[v.kind] = v;
  for (auto& [kind, v] : dumped_special) {
    auto it = current_special.find(kind);
    if (it == current_special.end() || it->second.size() != v.size())
      throw Error(std::string("the dumped [") + vma_kind_name(kind) + "] (" +
                  std::to_string(v.size()) +
                  " bytes) does not match this kernel's: images from a different kernel cannot be "
                  "restored here");
  }
  uint64_t group_start = UINT64_MAX, group_end = 0;
  for (auto& [kind, v] : current_special) {
    group_start = std::min(group_start, v.start);
    group_end = std::max(group_end, v.end);
  }
  uint64_t group_size = current_special.empty() ? 0 : group_end - group_start;

  // The batch is built against a provisional area size, then the area is placed.
  // Area layout: [blob][block][stack][vdso parking (group_size)].
  uint64_t blob_bytes = round_up(x86_64::blob_size(), 64);

  // 1. Unmap everything but the (future) area and the vdso group: whole address ranges, so that
  //    memory mapped after we looked (malloc...) goes too. The area placement is decided below,
  //    so these entries are filled in afterwards.
  for (int i = 0; i < 3; ++i) b.add("munmap of the restoring process's memory", SYS_munmap, {0, 0});

  // 2. The vdso group to the dumped addresses, through a parking place in the area.
  std::vector<std::pair<size_t, uint64_t>> park_fixups;  // entry index, offset in parking
  for (auto& [kind, v] : current_special) {
    const Vma& target = dumped_special.at(kind);
    if (target.start == v.start) continue;
    park_fixups.push_back(
        {b.add(std::string("mremap [") + vma_kind_name(kind) + "] to a parking place", SYS_mremap,
               {v.start, v.size(), v.size(), MREMAP_MAYMOVE | MREMAP_FIXED, 0}),
         v.start - group_start});
  }
  std::vector<std::pair<size_t, uint64_t>> unpark_fixups;
  for (auto& [kind, v] : current_special) {
    const Vma& target = dumped_special.at(kind);
    if (target.start == v.start) continue;
    unpark_fixups.push_back(
        {b.add(std::string("mremap [") + vma_kind_name(kind) + "] to " + hex(target.start),
               SYS_mremap, {0, v.size(), v.size(), MREMAP_MAYMOVE | MREMAP_FIXED, target.start}),
         v.start - group_start});
  }

  // 3. Every VMA at its address, writable while it is filled.
  std::vector<PageRun> runs = runs_from_json(mm.at("runs"));
  // Looked up by address: images list them in address order, but they are input.
  std::sort(runs.begin(), runs.end(),
            [](const PageRun& a, const PageRun& b) { return a.vaddr < b.vaddr; });
  auto vma_has_runs = [&](const Vma& v) {
    auto it = std::lower_bound(runs.begin(), runs.end(), v.start, [](const PageRun& r, uint64_t a) {
      return r.vaddr + r.pages * kPageSize <= a;
    });
    return it != runs.end() && it->vaddr < v.end;
  };
  std::vector<bool> filled(dumped.size(), false);
  for (size_t i = 0; i < dumped.size(); ++i) {
    const Vma& v = dumped[i];
    if (is_vdso_group(v.kind) || v.kind == VmaKind::kVsyscall) continue;
    bool fill = vma_has_runs(v);
    filled[i] = fill;
    int prot = fill ? (v.prot | PROT_READ | PROT_WRITE) : v.prot;
    int flags = MAP_FIXED;
    int fd = -1;
    uint64_t offset = 0;
    std::string what = "mmap " + hex(v.start) + "-" + hex(v.end);
    switch (v.kind) {
      case VmaKind::kAnon:
        flags |= MAP_PRIVATE | MAP_ANONYMOUS;
        if (v.has_flag("gd")) flags |= MAP_GROWSDOWN;
        what += " anonymous " + v.path;
        break;
      case VmaKind::kFilePrivate:
      case VmaKind::kFileShared: {
        auto it = fds.files.find(v.path);
        if (it == fds.files.end()) throw Error("no open file for the mapping of " + v.path);
        fd = it->second;
        offset = v.offset;
        flags |= v.kind == VmaKind::kFileShared ? MAP_SHARED : MAP_PRIVATE;
        what += " of " + v.path;
        break;
      }
      case VmaKind::kSharedAnon: {
        auto it = fds.shmem.find(v.inode);
        if (it == fds.shmem.end()) throw Error("no memory object for the shared mapping " + v.path);
        fd = it->second;
        offset = v.offset;
        flags |= MAP_SHARED;
        what += " shared " + v.path;
        break;
      }
      case VmaKind::kSysvShm: {
        // The segment itself was recreated with its contents (ipc.h): attach it again.
        size_t last = i;
        for (const SysvAttachCall& call : sysv_shm_attach_calls(dumped, i, &last)) {
          size_t index = b.add(call.what, call.nr, {call.args[0], call.args[1], call.args[2]});
          if (call.check_result)
            plan.expected_results.push_back({index, static_cast<int64_t>(call.args[1])});
        }
        i = last;
        continue;
      }
      default:
        break;
    }
    b.add(what, SYS_mmap,
          {v.start, v.size(), static_cast<uint64_t>(prot), static_cast<uint64_t>(flags),
           static_cast<uint64_t>(static_cast<int64_t>(fd)), offset});
  }

  // 4. Pages: the batch pauses while the coordinator writes them in from outside
  //    (fill_process_memory), on several threads.
  plan.fill_pause = batch.add_pause();
  plan.descriptions.push_back("pause while the coordinator fills the memory");
  for (const PageRun& run : runs) plan.pages_restored += run.pages;

  // 5. Final protections and 6. madvise flags, mlock.
  for (size_t i = 0; i < dumped.size(); ++i) {
    const Vma& v = dumped[i];
    if (is_vdso_group(v.kind) || v.kind == VmaKind::kVsyscall) continue;
    if (filled[i] && v.prot != (v.prot | PROT_READ | PROT_WRITE))
      b.add("mprotect " + hex(v.start), SYS_mprotect,
            {v.start, v.size(), static_cast<uint64_t>(v.prot)});
    static const std::pair<const char*, int> kAdvice[] = {
        {"dd", MADV_DONTDUMP}, {"dc", MADV_DONTFORK},   {"wf", MADV_WIPEONFORK},
        {"hg", MADV_HUGEPAGE}, {"nh", MADV_NOHUGEPAGE}, {"mg", MADV_MERGEABLE},
        {"rr", MADV_RANDOM},   {"sr", MADV_SEQUENTIAL}};
    for (auto& [flag, advice] : kAdvice)
      if (v.has_flag(flag))
        b.add(std::string("madvise ") + flag + " " + hex(v.start), SYS_madvise,
              {v.start, v.size(), static_cast<uint64_t>(advice)});
    if (v.has_flag("lo")) b.add("mlock " + hex(v.start), SYS_mlock, {v.start, v.size()});
  }

  // 7. The mm fields: brk, arg/env, auxv, exe.
  std::vector<uint8_t> auxv = base64_decode(mm.at("auxv").get<std::string>());
  BatchArg auxv_ref = batch.data(auxv.data(), auxv.size());
  prctl_mm_map_layout map{};
  map.start_code = mm.at("start_code");
  map.end_code = mm.at("end_code");
  map.start_data = mm.at("start_data");
  map.end_data = mm.at("end_data");
  map.start_brk = mm.at("start_brk");
  map.brk = mm.at("brk");
  map.start_stack = mm.at("start_stack");
  map.arg_start = mm.at("arg_start");
  map.arg_end = mm.at("arg_end");
  map.env_start = mm.at("env_start");
  map.env_end = mm.at("env_end");
  map.auxv_size = static_cast<uint32_t>(auxv.size());
  map.exe_fd = static_cast<uint32_t>(fds.exe);
  BatchArg map_ref = batch.data(&map, sizeof map);
  size_t mm_map_index = batch.count();
  b.add("prctl PR_SET_MM_MAP", SYS_prctl, {PR_SET_MM, PR_SET_MM_MAP, map_ref, sizeof map, 0});

  // 8. The main thread's own registrations.
  const json& threads = core.at("threads");
  const json& main_thread = threads.at(0);
  b.add("set_tid_address", SYS_set_tid_address,
        {main_thread.at("clear_child_tid").get<uint64_t>()});
  const json& robust = main_thread.at("robust_list");
  if (robust.at("head").get<uint64_t>())
    b.add("set_robust_list", SYS_set_robust_list,
          {robust.at("head").get<uint64_t>(), robust.at("len").get<uint64_t>()});
  const json& rseq = main_thread.at("rseq");
  if (rseq.at("pointer").get<uint64_t>())
    b.add("rseq registration", SYS_rseq,
          {rseq.at("pointer").get<uint64_t>(), rseq.at("size").get<uint64_t>(), 0,
           rseq.at("signature").get<uint64_t>()});

  // 9. The other threads, with their TIDs; they start stopped for the coordinator (which traces
  //    with PTRACE_O_TRACECLONE) and never run restorer code.
  for (size_t t = 1; t < threads.size(); ++t) {
    const json& thread = threads[t];
    pid_t tid = thread.at("tid");
    clone_args args{};
    args.flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM |
                 CLONE_CHILD_CLEARTID;
    args.child_tid = thread.at("clear_child_tid").get<uint64_t>();
    args.exit_signal = 0;
    // The stack is irrelevant (the thread's registers are replaced before it runs) but must be
    // valid: the restorer's own stack.
    args.stack = 0;
    args.stack_size = 0;
    // set_tid and stack are pointers inside the block, patched once it is laid out; the tid copy
    // sits 16 bytes before the args (data items are 16-byte aligned).
    pid_t set_tid = tid;
    batch.data(&set_tid, sizeof set_tid);
    args.set_tid_size = 1;
    BatchArg args_ref = batch.data(&args, sizeof args);
    b.add("clone3 of thread " + std::to_string(tid), SYS_clone3, {args_ref, sizeof args});
    plan.expected_results.push_back({batch.count() - 1, tid});
  }

  // 10. Pending signals, queued again while every signal is blocked.
  // Only a thread may queue signals with user codes (SI_USER, SI_TKILL...) to itself: the other
  // threads queue theirs in their own batch (append_thread_signals, run by the coordinator).
  {
    const json& thread = threads.at(0);
    pid_t tid = thread.at("tid");
    for (const siginfo_t& info : siginfos_from_json(thread.at("pending_signals"))) {
      if (info.si_signo == SIGKILL || info.si_signo == SIGSTOP) continue;
      BatchArg info_ref = batch.data(&info, sizeof info);
      b.add("rt_tgsigqueueinfo " + std::to_string(info.si_signo) + " to " + std::to_string(tid),
            SYS_rt_tgsigqueueinfo,
            {static_cast<uint64_t>(pid), static_cast<uint64_t>(tid),
             static_cast<uint64_t>(info.si_signo), info_ref});
    }
  }
  for (const siginfo_t& info : siginfos_from_json(core.at("shared_pending_signals"))) {
    if (info.si_signo == SIGKILL || info.si_signo == SIGSTOP) continue;
    BatchArg info_ref = batch.data(&info, sizeof info);
    b.add("rt_sigqueueinfo " + std::to_string(info.si_signo), SYS_rt_sigqueueinfo,
          {static_cast<uint64_t>(pid), static_cast<uint64_t>(info.si_signo), info_ref});
  }

  // 11. Late process attributes (credentials, timers, seccomp last) and the restorer's fds.
  if (append_late) {
    size_t before = batch.count();
    append_late(batch);
    for (size_t i = before; i < batch.count(); ++i)
      plan.descriptions.push_back("process attributes: " + batch.description(i));
  }
  for (int fd : fds.close_at_end)
    b.add("close restorer fd " + std::to_string(fd), SYS_close, {static_cast<uint64_t>(fd)}, false);

  // Place the area: free now, free in the dumped layout, not in the vdso group.
  uint64_t block_bytes = round_up(batch.size(), 64);
  uint64_t parking_offset = round_up(blob_bytes + block_bytes + kRestorerStack, kPageSize);
  uint64_t area_size = parking_offset + group_size;
  std::vector<Interval> taken;
  for (const Vma& v : current) taken.push_back({v.start, v.end});
  for (const Vma& v : dumped) taken.push_back({v.start, v.end});
  uint64_t area = find_free(taken, area_size + (64 << 20), uint64_t{1} << 32) + (32 << 20);
  void* mapped =
      ::mmap(reinterpret_cast<void*>(area), area_size, PROT_READ | PROT_WRITE | PROT_EXEC,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (mapped == MAP_FAILED) throw_errno("mmap of the restorer area at " + hex(area));
  plan.area = area;
  plan.area_size = area_size;
  plan.block = area + blob_bytes;
  plan.block_size = batch.size();
  plan.stack_top = area + blob_bytes + block_bytes + kRestorerStack - 64;
  uint64_t parking = area + parking_offset;

  std::vector<uint8_t> block = batch.layout(RemoteAddr(plan.block));
  auto* entries = reinterpret_cast<BatchedSyscall*>(block.data());
  // munmap: [low, area) [area_end, group_start) [group_end, top), skipping empty pieces.
  std::vector<Interval> keep{{area, area + area_size}};
  if (group_size) keep.push_back({group_start, group_end});
  std::sort(keep.begin(), keep.end(), [](auto& a, auto& c) { return a.start < c.start; });
  uint64_t from = kLowestAddress;
  size_t slot = 0;
  for (size_t k = 0; k <= keep.size(); ++k) {
    uint64_t to = k < keep.size() ? keep[k].start : kTaskSize;
    BatchedSyscall& e = entries[slot++];
    if (to > from) {
      e.args[0] = from;
      e.args[1] = to - from;
    } else {
      e.nr = (SYS_getpid & kBatchNrMask) | kBatchStopOnError;  // nothing to unmap here
    }
    if (k < keep.size()) from = keep[k].end;
  }
  for (; slot < 3; ++slot) entries[slot].nr = (SYS_getpid & kBatchNrMask) | kBatchStopOnError;
  for (auto& [index, offset] : park_fixups) entries[index].args[4] = parking + offset;
  for (auto& [index, offset] : unpark_fixups) entries[index].args[0] = parking + offset;
  for (size_t i = 0; i < batch.count(); ++i) {
    if ((entries[i].nr & kBatchNrMask) != SYS_clone3) continue;
    auto* args = reinterpret_cast<clone_args*>(block.data() + (entries[i].args[0] - plan.block));
    args->set_tid = entries[i].args[0] - 16;
    args->stack = plan.stack_top - 4096;
    args->stack_size = 4096;
  }
  auto* mm_map = reinterpret_cast<prctl_mm_map_layout*>(
      block.data() + (entries[mm_map_index].args[2] - plan.block));
  mm_map->auxv = plan.block + batch.offset_of(auxv_ref);
  std::memcpy(reinterpret_cast<void*>(area), cryo_blob_start, x86_64::blob_size());
  std::memcpy(reinterpret_cast<void*>(plan.block), block.data(), block.size());
  return plan;
}

namespace {

// Bytes of payload one worker takes at a time: small enough to stay in the CPU's L2 cache between
// the read, the checksum and the copy, large enough that one process_vm_writev moves a lot.
constexpr uint64_t kFillChunk = 512 << 10;
constexpr size_t kMaxFillThreads = 4;

}  // namespace

namespace {

// One page image being filled from: its runs by payload offset, its checksum (taken in payload
// order: a worker hashes chunk k of an image only after chunk k - 1).
struct FillImage {
  const RawImageReader* reader;
  std::vector<PageRun> runs;
  uint64_t chunks = 0;
  Xxh3Hasher hash;
  uint64_t hashed = 0;  // chunks hashed so far
};

}  // namespace

uint64_t fill_process_memory(pid_t pid, const std::vector<const RawImageReader*>& readers,
                             const std::vector<PageRun>& runs_in) {
  const uint64_t t0 = steady_now_us();
  std::vector<std::unique_ptr<FillImage>> images;
  uint64_t total_size = 0;
  for (const RawImageReader* reader : readers) {
    auto image = std::make_unique<FillImage>();
    image->reader = reader;
    image->chunks = (reader->payload_size() + kFillChunk - 1) / kFillChunk;
    total_size += reader->payload_size();
    images.push_back(std::move(image));
  }
  for (const PageRun& r : runs_in) {
    if (r.image >= images.size())
      throw Error("the page run at " + hex(r.vaddr) + " names page image " +
                  std::to_string(r.image) + " of " + std::to_string(images.size()));
    FillImage& image = *images[r.image];
    const uint64_t size = image.reader->payload_size();
    if (r.offset > size || r.pages > (size - r.offset) / kPageSize)
      throw Error(image.reader->path() + ": the page run at " + hex(r.vaddr) +
                  " lies outside the image's payload");
    image.runs.push_back(r);
  }
  // The chunks of the images interleaved (chunk 0 of each image, then chunk 1...): two workers
  // then mostly hash different images at the same time.
  std::vector<std::pair<uint32_t, uint64_t>> order;  // (image, chunk)
  uint64_t most_chunks = 0;
  for (auto& image : images) {
    std::sort(image->runs.begin(), image->runs.end(),
              [](const PageRun& a, const PageRun& b) { return a.offset < b.offset; });
    most_chunks = std::max(most_chunks, image->chunks);
  }
  for (uint64_t k = 0; k < most_chunks; ++k)
    for (size_t i = 0; i < images.size(); ++i)
      if (k < images[i]->chunks) order.push_back({static_cast<uint32_t>(i), k});

  std::atomic<uint64_t> next{0};
  std::atomic<uint64_t> written{0};
  std::mutex mutex;
  std::condition_variable hashed_more;
  std::exception_ptr error;

  auto fill_chunk = [&](FillImage& image, uint64_t k, uint8_t* buffer, std::vector<iovec>& local,
                        std::vector<iovec>& remote) {
    const uint64_t size = image.reader->payload_size();
    const uint64_t begin = k * kFillChunk;
    const uint64_t end = std::min(size, begin + kFillChunk);
    // Read into a small buffer rather than used through a mapping of the image: the kernel copies
    // from the page cache through its own large-page mapping, and the checksum and the copy below
    // read the buffer from the CPU cache (through a 4 KiB mapping of the file, each page costs a
    // TLB miss, which is slow in this VM: measured 2x slower for the checksum).
    image.reader->read_at(begin, buffer, end - begin);
    {
      std::unique_lock lock(mutex);
      hashed_more.wait(lock, [&] { return image.hashed == k || error; });
      if (error) return false;
    }
    // This worker alone hashes the image now: the others wait for hashed to pass k.
    image.hash.update(buffer, end - begin);
    {
      std::lock_guard lock(mutex);
      ++image.hashed;
      hashed_more.notify_all();
    }
    const std::vector<PageRun>& runs = image.runs;
    auto first = std::upper_bound(runs.begin(), runs.end(), begin,
                                  [](uint64_t at, const PageRun& r) { return at < r.offset; });
    if (first != runs.begin()) --first;
    uint64_t total = 0;
    auto flush = [&] {
      if (local.empty()) return;
      ssize_t n =
          ::process_vm_writev(pid, local.data(), local.size(), remote.data(), remote.size(), 0);
      if (n < 0)
        throw_errno("process " + std::to_string(pid) + ": writing pages at " +
                    hex(reinterpret_cast<uint64_t>(remote.front().iov_base)));
      if (static_cast<uint64_t>(n) != total)
        throw Error("process " + std::to_string(pid) + ": wrote " + std::to_string(n) + " of " +
                    std::to_string(total) + " bytes of pages from " +
                    hex(reinterpret_cast<uint64_t>(remote.front().iov_base)));
      written += total;
      local.clear();
      remote.clear();
      total = 0;
    };
    for (auto it = first; it != runs.end() && it->offset < end; ++it) {
      uint64_t run_end = it->offset + it->pages * kPageSize;
      uint64_t from = std::max(begin, it->offset);
      uint64_t to = std::min(end, run_end);
      if (from >= to) continue;
      local.push_back({buffer + (from - begin), to - from});
      remote.push_back({reinterpret_cast<void*>(it->vaddr + (from - it->offset)), to - from});
      total += to - from;
      if (local.size() == IOV_MAX) flush();
    }
    flush();
    return true;
  };
  auto worker = [&] {
    std::vector<iovec> local, remote;
    try {
      std::vector<uint8_t> buffer(kFillChunk);
      for (;;) {
        uint64_t i = next++;
        if (i >= order.size()) return;
        auto [image, k] = order[i];
        if (!fill_chunk(*images[image], k, buffer.data(), local, remote)) return;
      }
    } catch (...) {
      std::lock_guard lock(mutex);
      if (!error) error = std::current_exception();
      hashed_more.notify_all();
    }
  };

  size_t threads =
      std::min<uint64_t>({kMaxFillThreads, std::max(1u, std::thread::hardware_concurrency()),
                          std::max<uint64_t>(order.size(), 1)});
  std::vector<std::thread> helpers;
  try {
    for (size_t i = 1; i < threads; ++i) helpers.emplace_back(worker);
  } catch (...) {
    // Fewer helpers than wanted: the ones started and this thread do the work.
  }
  worker();
  for (std::thread& t : helpers) t.join();
  if (error) std::rethrow_exception(error);
  for (auto& image : images)
    if (image->hash.digest() != image->reader->expected_checksum())
      throw Error(image->reader->path() + ": image file is corrupted (checksum mismatch)");
  uint64_t us = std::max<uint64_t>(1, steady_now_us() - t0);
  LOG_DEBUG << "process " << pid << ": " << written.load() << " bytes of pages written and "
            << total_size << " verified from " << images.size() << " images in " << us << " µs on "
            << threads << " threads (" << written.load() / us / 1000.0 << " GB/s)";
  return written.load();
}

}  // namespace cryo::ckpt
