#include "checkpoint/syscall_batch.h"

#include <cstring>
#include <stdexcept>

namespace cryo::ckpt {

namespace {
size_t entries_bytes(size_t count) {
  return (count + 1) * sizeof(BatchedSyscall);
}
size_t align16(size_t n) {
  return (n + 15) & ~size_t{15};
}
}  // namespace

size_t SyscallBatch::add(long nr, std::initializer_list<BatchArg> args, bool stop_on_error) {
  if (args.size() > 6) throw std::invalid_argument("a syscall takes at most 6 arguments");
  Entry e{nr, {0, 0, 0, 0, 0, 0}, stop_on_error};
  size_t i = 0;
  for (const BatchArg& a : args) e.args[i++] = a;
  entries_.push_back(e);
  descriptions_.push_back("syscall " + std::to_string(nr));
  return entries_.size() - 1;
}

size_t SyscallBatch::add_pause() {
  Entry e{kBatchEnd, {0, 0, 0, 0, 0, 0}, false, true};
  entries_.push_back(e);
  descriptions_.push_back("pause");
  return entries_.size() - 1;
}

BatchArg SyscallBatch::data(const void* bytes, size_t size) {
  size_t offset = align16(data_.size());
  data_.resize(offset + size);
  if (size) std::memcpy(data_.data() + offset, bytes, size);
  return BatchArg(offset, true);
}

BatchArg SyscallBatch::reserve(size_t size) {
  size_t offset = align16(data_.size());
  data_.resize(offset + size, 0);
  return BatchArg(offset, true);
}

void SyscallBatch::set_pointer(BatchArg field, size_t offset_in_field, BatchArg target) {
  if (!field.is_data_ref || !target.is_data_ref)
    throw std::invalid_argument("set_pointer needs data references");
  if (field.raw + offset_in_field + sizeof(uint64_t) > data_.size())
    throw std::invalid_argument("set_pointer: field outside the data area");
  pointer_fixups_.push_back(PointerFixup{field.raw + offset_in_field, target});
}

size_t SyscallBatch::offset_of(BatchArg ref) const {
  return align16(entries_bytes(entries_.size())) + ref.raw;
}

RemoteAddr SyscallBatch::address_of(BatchArg ref, RemoteAddr base) const {
  return base + offset_of(ref);
}

size_t SyscallBatch::size() const {
  return align16(entries_bytes(entries_.size())) + data_.size();
}

std::vector<uint8_t> SyscallBatch::layout(RemoteAddr base) const {
  std::vector<uint8_t> block(size(), 0);
  auto* out = reinterpret_cast<BatchedSyscall*>(block.data());
  for (size_t i = 0; i < entries_.size(); ++i) {
    const Entry& e = entries_[i];
    out[i].nr =
        e.pause ? kBatchEnd : (e.nr & kBatchNrMask) | (e.stop_on_error ? kBatchStopOnError : 0);
    for (int a = 0; a < 6; ++a)
      out[i].args[a] = e.args[a].is_data_ref ? address_of(e.args[a], base).value() : e.args[a].raw;
    out[i].result = 0;
  }
  out[entries_.size()].nr = kBatchEnd;
  size_t data_start = align16(entries_bytes(entries_.size()));
  if (!data_.empty()) std::memcpy(block.data() + data_start, data_.data(), data_.size());
  for (const PointerFixup& fixup : pointer_fixups_) {
    uint64_t address = address_of(fixup.target, base).value();
    std::memcpy(block.data() + data_start + fixup.data_offset, &address, sizeof address);
  }
  return block;
}

int64_t SyscallBatch::result_of(const std::vector<uint8_t>& block, size_t index) {
  BatchedSyscall entry;
  std::memcpy(&entry, block.data() + index * sizeof(BatchedSyscall), sizeof entry);
  return entry.result;
}

}  // namespace cryo::ckpt
