#include "common/buffer_pool.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "common/error.h"
#include "common/log.h"

namespace cryo {

namespace {

constexpr const char* kSystemPoolDir = "/run/cryo-buffers";

size_t round_to_huge(size_t bytes) {
  size_t huge = BufferPool::kHugePage;
  return (std::max<size_t>(bytes, 1) + huge - 1) / huge * huge;
}

bool is_mount_point(const std::string& dir) {
  struct stat self {};
  struct stat parent {};
  return ::stat(dir.c_str(), &self) == 0 && ::stat((dir + "/..").c_str(), &parent) == 0 &&
         self.st_dev != parent.st_dev;
}

bool is_tmpfs(const std::string& dir) {
  struct statfs fs {};
  return ::statfs(dir.c_str(), &fs) == 0 && fs.f_type == TMPFS_MAGIC;
}

// Mounts the system pool's tmpfs unless it is there; "" when it cannot be had.
std::string mount_system_pool() {
  if (::geteuid() != 0) return "";
  // Mounted where the later commands will see it; never inside another mount namespace (a
  // process that joined a container's would put the pool into the container). PID 1's may be
  // unreadable (a sandbox's init): then ours is taken as the machine's.
  char ours[64] = {};
  char init[64] = {};
  if (::readlink("/proc/self/ns/mnt", ours, sizeof ours - 1) > 0 &&
      ::readlink("/proc/1/ns/mnt", init, sizeof init - 1) > 0 && std::strcmp(ours, init) != 0)
    return "";
  if (::mkdir(kSystemPoolDir, 0700) != 0 && errno != EEXIST) {
    LOG_DEBUG << "buffer pool: mkdir " << kSystemPoolDir << ": " << std::strerror(errno);
    return "";
  }
  // Two first commands at once would mount twice: the check and the mount under a lock.
  UniqueFd lock(::open(kSystemPoolDir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
  if (!lock || ::flock(lock.get(), LOCK_EX) != 0) return "";
  if (is_mount_point(kSystemPoolDir)) return is_tmpfs(kSystemPoolDir) ? kSystemPoolDir : "";
  // Room for every pool file at its largest; tmpfs allocates only what the files hold.
  std::string options =
      "huge=always,mode=0700,size=" + std::to_string(BufferPool::kFiles * BufferPool::kMaxFileSize);
  if (::mount("cryo-buffers", kSystemPoolDir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              options.c_str()) != 0) {
    LOG_DEBUG << "buffer pool: mount of a tmpfs on " << kSystemPoolDir << " (" << options
              << "): " << std::strerror(errno);
    return "";
  }
  return kSystemPoolDir;
}

}  // namespace

// Record locks do not exclude the process that holds them, and closing any descriptor of a file
// drops them: within the process, a pool file is taken by one user at a time through this set,
// and never opened by another meanwhile.
FileReservation::FileReservation(std::string path) {
  std::lock_guard lock(mutex());
  if (in_use().insert(path).second) path_ = std::move(path);
}

FileReservation::~FileReservation() {
  if (path_.empty()) return;
  std::lock_guard lock(mutex());
  in_use().erase(path_);
}

std::mutex& FileReservation::mutex() {
  static std::mutex m;
  return m;
}

std::set<std::string>& FileReservation::in_use() {
  static std::set<std::string> paths;
  return paths;
}

PooledMemory::PooledMemory(PooledMemory&& other) noexcept
    : mapping_(std::exchange(other.mapping_, nullptr)),
      mapping_size_(std::exchange(other.mapping_size_, 0)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      file_(std::move(other.file_)),
      reservation_(std::move(other.reservation_)) {}

PooledMemory& PooledMemory::operator=(PooledMemory&& other) noexcept {
  if (this != &other) {
    release();
    mapping_ = std::exchange(other.mapping_, nullptr);
    mapping_size_ = std::exchange(other.mapping_size_, 0);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    file_ = std::move(other.file_);
    reservation_ = std::move(other.reservation_);
  }
  return *this;
}

PooledMemory::~PooledMemory() {
  release();
}

void PooledMemory::map(size_t size, int fd) {
  const size_t huge = BufferPool::kHugePage;
  // One huge page more than asked, for the start to be moved to a 2 MiB boundary.
  void* reserved =
      ::mmap(nullptr, size + huge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (reserved == MAP_FAILED) throw_errno("mmap of " + std::to_string(size) + " bytes of buffers");
  auto* aligned = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(reserved) + huge - 1) &
                                          ~(uintptr_t{huge} - 1));
  int flags = fd >= 0 ? MAP_SHARED | MAP_FIXED : MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
  if (::mmap(aligned, size, PROT_READ | PROT_WRITE, flags, fd, 0) == MAP_FAILED) {
    int err = errno;
    ::munmap(reserved, size + huge);
    throw_errno("mmap of " + std::to_string(size) + " bytes of buffers", err);
  }
  mapping_ = reserved;
  mapping_size_ = size + huge;
  data_ = aligned;
  size_ = size;
  ::madvise(mapping_, mapping_size_, MADV_DONTFORK);
}

void PooledMemory::populate(char* p, size_t n) {
  constexpr size_t kStep = 256 << 10;
  for (size_t at = 0; at < n; at += kStep)
    ::madvise(p + at, std::min(kStep, n - at), MADV_POPULATE_WRITE);
}

void PooledMemory::release() noexcept {
  if (mapping_ == nullptr) return;
  // The next command that takes the file must not find this one's data.
  if (file_) std::memset(data_, 0, size_);
  ::munmap(mapping_, mapping_size_);
  mapping_ = nullptr;
  data_ = nullptr;
  size_ = 0;
  file_.reset();  // the lock goes with the descriptor
  reservation_ = FileReservation();
}

BufferPool::BufferPool(std::string dir) : dir_(std::move(dir)) {}

BufferPool& BufferPool::system() {
  static BufferPool pool([] {
    const char* setting = std::getenv("CRYO_BUFFER_POOL");
    if (setting != nullptr && std::string(setting) == "off") return std::string();
    if (setting != nullptr && *setting != '\0') return std::string(setting);
    return mount_system_pool();
  }());
  return pool;
}

PooledMemory BufferPool::take(size_t bytes) const {
  size_t size = round_to_huge(bytes);
  if (!dir_.empty() && size <= kMaxFileSize) {
    PooledMemory pooled = take_file(size);
    if (pooled.data() != nullptr) return pooled;
  }
  PooledMemory fresh;
  fresh.map(size, -1);
  ::madvise(fresh.data_, size, MADV_HUGEPAGE);  // a hint: 4 KiB pages without it
  return fresh;
}

PooledMemory BufferPool::take_file(size_t size) const {
  PooledMemory pooled;
  for (int i = 0; i < kFiles; ++i) {
    std::string path = dir_ + "/buffer-" + std::to_string(i);
    FileReservation reservation(path);
    if (!reservation.held()) continue;  // this process's
    UniqueFd file(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!file) {
      LOG_DEBUG << "buffer pool: open " << path << ": " << std::strerror(errno);
      return pooled;
    }
    // A record lock, not flock: a child forked meanwhile (a restored process, a helper) inherits
    // the descriptor but not the lock, which ends with this process's use.
    struct flock whole {};
    whole.l_type = F_WRLCK;
    whole.l_whence = SEEK_SET;
    if (::fcntl(file.get(), F_SETLK, &whole) != 0) continue;  // another command's
    struct stat st {};
    if (::fstat(file.get(), &st) != 0) return pooled;
    // Allocated now rather than at first touch: a full tmpfs fails here (fresh memory instead),
    // not with SIGBUS in the middle of an export.
    if (static_cast<size_t>(st.st_size) < size &&
        ::fallocate(file.get(), 0, 0, static_cast<off_t>(size)) != 0) {
      LOG_DEBUG << "buffer pool: fallocate " << path << " to " << size
                << " bytes: " << std::strerror(errno);
      return pooled;
    }
    try {
      pooled.map(size, file.get());
    } catch (const Error& e) {
      LOG_DEBUG << "buffer pool: " << path << ": " << e.what();
      return pooled;
    }
    pooled.file_ = std::move(file);
    pooled.reservation_ = std::move(reservation);
    return pooled;
  }
  return pooled;
}

}  // namespace cryo
