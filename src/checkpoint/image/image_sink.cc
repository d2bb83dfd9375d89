#include "checkpoint/image/image_sink.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cstring>

#include "common/error.h"
#include "common/fs.h"

namespace cryo::ckpt {

namespace {

// One image file being written under a temporary name, renamed into place by commit().
class FileOutput : public ImageOutput {
 public:
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

  void commit() override {
    if (written_ != size_)
      throw Error(path(name_) + ": " + std::to_string(written_) + " bytes written of the " +
                  std::to_string(size_) + " announced");
    if (::renameat(dir_fd_, temp_name_.c_str(), dir_fd_, name_.c_str()) < 0)
      throw_errno("rename " + path(temp_name_) + " to " + name_);
    committed_ = true;
    fd_.reset();
  }

 private:
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  void check_room(size_t size) const {
    if (size > size_ - written_)
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

void DirectorySink::finish() {
  if (in_memory_fs_) return;
  if (::syncfs(dir_fd_.get()) < 0) throw_errno("sync the file system of " + dir_);
  if (::fsync(dir_fd_.get()) < 0) throw_errno("fsync " + dir_);
}

class MemorySink::Output : public ImageOutput {
 public:
  Output(MemorySink& sink, std::string name, uint64_t size)
      : sink_(sink), name_(std::move(name)), size_(size) {
    data_.reserve(size);
    sink_.output_open_ = true;
  }
  ~Output() override { sink_.output_open_ = false; }
  void write(const void* data, size_t size) override {
    if (size > size_ - data_.size())
      throw Error(name_ + ": more than the " + std::to_string(size_) + " bytes announced written");
    data_.append(static_cast<const char*>(data), size);
  }
  void commit() override {
    if (data_.size() != size_)
      throw Error(name_ + ": " + std::to_string(data_.size()) + " bytes written of the " +
                  std::to_string(size_) + " announced");
    sink_.images_[name_] = std::move(data_);
    data_.clear();
  }

 private:
  MemorySink& sink_;
  std::string name_;
  uint64_t size_;
  std::string data_;
};

std::unique_ptr<ImageOutput> MemorySink::create(const std::string& name, uint64_t size) {
  if (output_open_) throw Error("image " + name + " created while another output is open");
  if (finished_) throw Error("image " + name + " created after finish()");
  if (images_.count(name)) throw Error("image " + name + " written twice");
  return std::make_unique<Output>(*this, name, size);
}

void MemorySink::finish() {
  if (output_open_) throw Error("finish() while an image output is open");
  finished_ = true;
}

}  // namespace cryo::ckpt
