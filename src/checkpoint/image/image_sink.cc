#include "checkpoint/image/image_sink.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <memory>
#include <vector>

#include "common/error.h"
#include "common/fs.h"

namespace cryo::ckpt {

void ImageOutput::write_vectored(const iovec* pieces, size_t count) {
  for (size_t i = 0; i < count; ++i) write(pieces[i].iov_base, pieces[i].iov_len);
}

void ImageOutput::overwrite(uint64_t, const void*, size_t) {
  throw Error("internal error: overwrite() of an image output whose size was fixed at creation");
}

std::unique_ptr<ImageOutput> ImageSink::create_unsized(const std::string& name) {
  throw Error("internal error: " + describe() + " cannot take image " + name +
              " without its size (no parallel outputs)");
}

namespace {

// One image file being written under a temporary name, renamed into place by commit().
class FileOutput : public ImageOutput {
 public:
  static constexpr uint64_t kUnsized = UINT64_MAX;

  FileOutput(int dir_fd, std::string dir, std::string name, uint64_t size)
      : dir_fd_(dir_fd),
        dir_(std::move(dir)),
        name_(std::move(name)),
        temp_name_("." + name_ + ".partial"),
        size_(size) {
    int fd = ::openat(dir_fd_, temp_name_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) throw_errno("create " + path(temp_name_));
    fd_ = UniqueFd(fd);
  }

  ~FileOutput() override {
    if (committed_) return;
    fd_.reset();
    ::unlinkat(dir_fd_, temp_name_.c_str(), 0);
  }

  void write(const void* data, size_t size) override {
    check_room(size);
    const auto* p = static_cast<const char*>(data);
    size_t left = size;
    while (left > 0) {
      ssize_t n = ::write(fd_.get(), p, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw_errno("write " + path(temp_name_));
      }
      p += n;
      left -= static_cast<size_t>(n);
    }
    written_ += size;
  }

  void write_vectored(const iovec* pieces, size_t count) override {
    size_t total = 0;
    for (size_t i = 0; i < count; ++i) total += pieces[i].iov_len;
    check_room(total);
    std::vector<iovec> left(pieces, pieces + count);
    size_t first = 0;
    size_t remaining = total;
    while (remaining > 0) {
      int n_iov = static_cast<int>(std::min<size_t>(left.size() - first, IOV_MAX));
      ssize_t n = ::writev(fd_.get(), left.data() + first, n_iov);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw_errno("write " + path(temp_name_));
      }
      remaining -= static_cast<size_t>(n);
      for (size_t done = static_cast<size_t>(n); done > 0 && first < left.size();) {
        size_t take = std::min(done, left[first].iov_len);
        left[first].iov_base = static_cast<char*>(left[first].iov_base) + take;
        left[first].iov_len -= take;
        done -= take;
        if (left[first].iov_len == 0) ++first;
      }
      while (first < left.size() && left[first].iov_len == 0) ++first;
    }
    written_ += total;
  }

  void overwrite(uint64_t offset, const void* data, size_t size) override {
    if (size_ != kUnsized) ImageOutput::overwrite(offset, data, size);
    if (offset > written_ || size > written_ - offset)
      throw Error(path(name_) + ": overwrite past the bytes written");
    const auto* p = static_cast<const char*>(data);
    while (size > 0) {
      ssize_t n = ::pwrite(fd_.get(), p, size, static_cast<off_t>(offset));
      if (n < 0) {
        if (errno == EINTR) continue;
        throw_errno("write " + path(temp_name_));
      }
      p += n;
      size -= static_cast<size_t>(n);
      offset += static_cast<uint64_t>(n);
    }
  }

  void commit() override {
    if (size_ != kUnsized && written_ != size_)
      throw Error(path(name_) + ": " + std::to_string(written_) + " bytes written of the " +
                  std::to_string(size_) + " announced");
    // The sink's finish() makes it durable; its writeback starts now, overlapping the rest of
    // the dump (a no-op on tmpfs).
    ::sync_file_range(fd_.get(), 0, 0, SYNC_FILE_RANGE_WRITE);
    if (::renameat(dir_fd_, temp_name_.c_str(), dir_fd_, name_.c_str()) < 0)
      throw_errno("rename " + path(temp_name_) + " to " + name_);
    committed_ = true;
    fd_.reset();
  }

 private:
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  void check_room(size_t size) const {
    if (size_ != kUnsized && size > size_ - written_)
      throw Error(path(name_) + ": more than the " + std::to_string(size_) +
                  " bytes announced written");
  }

  int dir_fd_;
  std::string dir_;
  std::string name_;
  std::string temp_name_;
  uint64_t size_;
  uint64_t written_ = 0;
  UniqueFd fd_;
  bool committed_ = false;
};

}  // namespace

DirectorySink::DirectorySink(std::string dir) : dir_(std::move(dir)) {
  fs::mkdir_p(dir_);
  dir_fd_ = fs::open_or_throw(dir_, O_RDONLY | O_DIRECTORY);
  struct statfs sfs {};
  if (::fstatfs(dir_fd_.get(), &sfs) < 0) throw_errno("statfs " + dir_);
  in_memory_fs_ = sfs.f_type == TMPFS_MAGIC || sfs.f_type == RAMFS_MAGIC;
}

std::unique_ptr<ImageOutput> DirectorySink::create(const std::string& name, uint64_t size) {
  if (name.empty() || name.find('/') != std::string::npos || name[0] == '.')
    throw Error("invalid image name '" + name + "'");
  return std::make_unique<FileOutput>(dir_fd_.get(), dir_, name, size);
}

std::unique_ptr<ImageOutput> DirectorySink::create_unsized(const std::string& name) {
  return create(name, FileOutput::kUnsized);
}

// Every file of the directory is synced, images and whatever the caller put there before (a
// container's record of the checkpoint), one by one: a syncfs would also wait for every other
// dirty file of the file system, 3 ms or 90 ms depending on what else ran (measured on the
// container's store). The first fsync commits the journal for all of them; the data of each
// image is already under writeback (started by its commit).
void DirectorySink::finish() {
  if (in_memory_fs_) return;
  std::vector<std::string> files;
  {
    UniqueFd listed(::openat(dir_fd_.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!listed) throw_errno("open " + dir_ + " to list it");
    std::unique_ptr<DIR, int (*)(DIR*)> listing(::fdopendir(listed.get()), ::closedir);
    if (!listing) throw_errno("list " + dir_);
    listed.release();  // owned by `listing` now
    while (struct dirent* entry = ::readdir(listing.get()))
      if (entry->d_type == DT_REG) files.emplace_back(entry->d_name);
  }
  for (const std::string& name : files) {
    UniqueFd fd(::openat(dir_fd_.get(), name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) throw_errno("open " + dir_ + "/" + name + " to sync it");
    if (::fsync(fd.get()) < 0) throw_errno("fsync " + dir_ + "/" + name);
  }
  if (::fsync(dir_fd_.get()) < 0) throw_errno("fsync " + dir_);
}

class MemorySink::Output : public ImageOutput {
 public:
  Output(MemorySink& sink, std::string name, uint64_t size, bool sized)
      : sink_(sink), name_(std::move(name)), size_(size), sized_(sized) {
    if (sized_) data_.reserve(size);
    ++sink_.outputs_open_;
  }
  ~Output() override { --sink_.outputs_open_; }
  void write(const void* data, size_t size) override {
    if (sized_ && size > size_ - data_.size())
      throw Error(name_ + ": more than the " + std::to_string(size_) + " bytes announced written");
    data_.append(static_cast<const char*>(data), size);
  }
  void overwrite(uint64_t offset, const void* data, size_t size) override {
    if (sized_) ImageOutput::overwrite(offset, data, size);
    if (offset > data_.size() || size > data_.size() - offset)
      throw Error(name_ + ": overwrite past the bytes written");
    data_.replace(offset, size, static_cast<const char*>(data), size);
  }
  void commit() override {
    if (sized_ && data_.size() != size_)
      throw Error(name_ + ": " + std::to_string(data_.size()) + " bytes written of the " +
                  std::to_string(size_) + " announced");
    sink_.images_[name_] = std::move(data_);
    data_.clear();
  }

 private:
  MemorySink& sink_;
  std::string name_;
  uint64_t size_;
  bool sized_;
  std::string data_;
};

std::unique_ptr<ImageOutput> MemorySink::open(const std::string& name, uint64_t size, bool sized) {
  if (outputs_open_ > 0 && !parallel_)
    throw Error("image " + name + " created while another output is open");
  if (!sized && !parallel_)
    throw Error("image " + name + " created without its size by a dump into a streaming sink");
  if (finished_) throw Error("image " + name + " created after finish()");
  if (images_.count(name)) throw Error("image " + name + " written twice");
  return std::make_unique<Output>(*this, name, size, sized);
}

std::unique_ptr<ImageOutput> MemorySink::create(const std::string& name, uint64_t size) {
  return open(name, size, true);
}

std::unique_ptr<ImageOutput> MemorySink::create_unsized(const std::string& name) {
  return open(name, 0, false);
}

void MemorySink::finish() {
  if (outputs_open_ > 0) throw Error("finish() while an image output is open");
  finished_ = true;
}

}  // namespace cryo::ckpt
