// Pipes and FIFOs: one object per pipe inode, holding its size and the bytes queued in it (peeked
// with tee(), never consumed). Every description of the inode (read end, write end, O_RDWR
// opens through /proc or of a FIFO) is reopened at restore from one fd of the recreated pipe.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "checkpoint/file_kinds/file_kind.h"
#include "checkpoint/image/image_file.h"
#include "common/error.h"
#include "common/strings.h"

namespace cryo::ckpt::files {

namespace {

constexpr int kReadSlot = 0;
constexpr int kWriteSlot = 1;

bool readable(int flags) {
  return (flags & O_ACCMODE) == O_RDONLY || (flags & O_ACCMODE) == O_RDWR;
}

// The bytes queued in the pipe behind `read_fd`, left in place.
std::string peek_pipe(int read_fd, int pipe_size) {
  int queued = 0;
  if (::ioctl(read_fd, FIONREAD, &queued) < 0) throw_errno("ioctl FIONREAD");
  if (queued == 0) return {};
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC | O_NONBLOCK) < 0) throw_errno("pipe2");
  UniqueFd tmp_read(ends[0]), tmp_write(ends[1]);
  // The copy holds references to the same pipe buffers: it needs as many slots as the original.
  if (::fcntl(tmp_write.get(), F_SETPIPE_SZ, pipe_size) < 0)
    throw_errno("fcntl F_SETPIPE_SZ " + std::to_string(pipe_size) + " (peek buffer)");
  ssize_t n = ::tee(read_fd, tmp_write.get(), static_cast<size_t>(queued), SPLICE_F_NONBLOCK);
  if (n < 0) throw_errno("tee");
  if (n != queued)
    throw Error("tee copied " + std::to_string(n) + " of the " + std::to_string(queued) +
                " queued bytes");
  std::string data(static_cast<size_t>(queued), '\0');
  size_t done = 0;
  while (done < data.size()) {
    ssize_t r = ::read(tmp_read.get(), data.data() + done, data.size() - done);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno("read peeked pipe data");
    }
    if (r == 0) throw Error("peeked pipe data ended early");
    done += static_cast<size_t>(r);
  }
  return data;
}

// Fills the object entry: size and queued bytes (raw image pipe-ID.img).
void dump_pipe_object(DumpContext& ctx, const DumpedFd& fd, uint64_t id, json& entry) {
  // Packet mode keeps write boundaries that a byte copy of the queue would lose.
  if (fd.flags & O_DIRECT) throw Error("not supported yet: packet-mode pipe (O_DIRECT)");
  int size = ::fcntl(fd.stolen, F_GETPIPE_SZ);
  if (size < 0) throw_errno("fcntl F_GETPIPE_SZ");
  entry["size"] = size;
  UniqueFd reopened;
  int read_fd = fd.stolen;
  if (!readable(fd.flags)) {
    // Only a write end here: a read end of our own on the same pipe, through /proc.
    reopened = reopen_fd(fd.stolen, O_RDONLY | O_NONBLOCK);
    read_fd = reopened.get();
  }
  std::string data = peek_pipe(read_fd, size);
  entry["bytes"] = data.size();
  if (data.empty()) return;  // most pipes: no image file at all
  std::string image = "pipe-" + std::to_string(id) + ".img";
  RawImageWriter writer(ctx.sink(), image, data.size());
  writer.append(data.data(), data.size());
  writer.finish();
  entry["image"] = image;
}

// Writes the dumped bytes back into the pipe through `write_fd` (non-blocking).
void refill_pipe(RestoreContext& ctx, const json& entry, int write_fd) {
  if (entry.at("bytes").get<uint64_t>() == 0) return;
  RawImageReader reader(ctx.image_dir(), entry.at("image").get<std::string>());
  reader.verify_checksum();
  if (reader.payload_size() != entry.at("bytes").get<uint64_t>())
    throw Error(reader.path() + ": holds " + std::to_string(reader.payload_size()) +
                " bytes, files.img says " + std::to_string(entry.at("bytes").get<uint64_t>()));
  std::string data(reader.payload_size(), '\0');
  reader.read_at(0, data.data(), data.size());
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(write_fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("writing the queued bytes back (" + std::to_string(done) + " of " +
                  std::to_string(data.size()) + " written)");
    }
    done += static_cast<size_t>(n);
  }
}

void set_pipe_size(int fd, const json& entry) {
  auto size = entry.at("size").get<int>();
  int current = ::fcntl(fd, F_GETPIPE_SZ);
  if (current < 0) throw_errno("fcntl F_GETPIPE_SZ");
  if (current != size && ::fcntl(fd, F_SETPIPE_SZ, size) < 0)
    throw_errno("fcntl F_SETPIPE_SZ " + std::to_string(size));
}

// A new description of the pipe behind `object_fd` with the dumped flags. Reopening through
// /proc never blocks with O_NONBLOCK; the flag is put back as dumped afterwards.
UniqueFd open_description(int object_fd, const json& description) {
  auto flags = description.at("flags").get<int>();
  UniqueFd fd = reopen_fd(object_fd, flags | O_NONBLOCK);
  if (!(flags & O_NONBLOCK)) {
    int status = ::fcntl(fd.get(), F_GETFL);
    if (status < 0 || ::fcntl(fd.get(), F_SETFL, status & ~O_NONBLOCK) < 0)
      throw_errno("fcntl F_SETFL");
  }
  return fd;
}

// --- pipes ------------------------------------------------------------------------------------

bool pipe_claims(const DumpedFd& fd) {
  return S_ISFIFO(fd.st.st_mode) && starts_with(fd.link, "pipe:");
}

void pipe_dump(DumpContext& ctx, const DumpedFd& fd, json& description) {
  auto object = ctx.object("pipes", fd.st.st_dev, fd.st.st_ino);
  if (object.created) dump_pipe_object(ctx, fd, object.id, *object.entry);
  description["kind"] = "pipe";
  description["pipe"] = object.id;
}

UniqueFd pipe_open(RestoreContext& ctx, const json& description) {
  auto id = description.at("pipe").get<uint64_t>();
  if (ctx.object_fd(id, kReadSlot) < 0) {
    const json& entry = ctx.object("pipes", id);
    int ends[2];
    if (::pipe2(ends, O_CLOEXEC | O_NONBLOCK) < 0) throw_errno("pipe2");
    UniqueFd read_end(ends[0]), write_end(ends[1]);
    set_pipe_size(write_end.get(), entry);
    refill_pipe(ctx, entry, write_end.get());
    ctx.set_object_fd(id, std::move(read_end), kReadSlot);
    ctx.set_object_fd(id, std::move(write_end), kWriteSlot);
  }
  return open_description(ctx.object_fd(id, kReadSlot), description);
}

// --- FIFOs ------------------------------------------------------------------------------------

bool fifo_claims(const DumpedFd& fd) {
  return S_ISFIFO(fd.st.st_mode) && !fd.link.empty() && fd.link[0] == '/' && !(fd.flags & O_PATH);
}

void fifo_dump(DumpContext& ctx, const DumpedFd& fd, json& description) {
  if (fd.st.st_nlink == 0) throw Error("not supported yet: a FIFO removed while open");
  auto object = ctx.object("fifos", fd.st.st_dev, fd.st.st_ino);
  if (object.created) {
    (*object.entry)["path"] = fd.link;
    dump_pipe_object(ctx, fd, object.id, *object.entry);
  }
  description["kind"] = "fifo";
  description["fifo"] = object.id;
}

UniqueFd fifo_open(RestoreContext& ctx, const json& description) {
  auto id = description.at("fifo").get<uint64_t>();
  if (ctx.object_fd(id) < 0) {
    const json& entry = ctx.object("fifos", id);
    // O_RDWR never waits for a partner; it holds the FIFO open (and its bytes alive) while the
    // real descriptions are opened.
    UniqueFd holder = ctx.open_path(entry.at("path").get<std::string>(), O_RDWR | O_NONBLOCK);
    struct stat st;
    if (::fstat(holder.get(), &st) < 0) throw_errno("fstat");
    if (!S_ISFIFO(st.st_mode)) throw Error("the path is no longer a FIFO");
    set_pipe_size(holder.get(), entry);
    refill_pipe(ctx, entry, holder.get());
    ctx.set_object_fd(id, std::move(holder));
  }
  return open_description(ctx.object_fd(id), description);
}

}  // namespace

const FileKind kPipeKind{{"pipe"}, pipe_claims, pipe_dump, pipe_open};
const FileKind kFifoKind{{"fifo"}, fifo_claims, fifo_dump, fifo_open};

}  // namespace cryo::ckpt::files
