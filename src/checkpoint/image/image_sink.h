// Where a dump's image files go. Every image a dump writes (JSON images, page data, file contents)
// is one output of an ImageSink: created with its exact size in bytes (header + payload + trailer,
// see image_file.h), written in order, then committed. A streaming sink (a tar entry, a socket)
// can therefore write each entry's header before its data and never seek back.
//
// Contract a sink may rely on (the dump keeps it):
//   - at most one output is open at a time; its write() may be called from another thread than
//     the one that created it (the page copier writes from a thread of its own), never from two
//     threads at once;
//   - an output receives exactly the size it was created with, then commit(); an output
//     destroyed without commit() (an error on the way) is aborted and must leave nothing behind
//     that could pass for a complete image;
//   - finish() is called once, after the last output, when the dump succeeded: the sink makes the
//     whole image set durable (or sends its end marker). A sink that is destroyed without
//     finish() belongs to a failed dump.
//
// A sink that answers true to parallel_outputs() (files in a directory, not a stream) also takes:
//   - several outputs open at once, created and committed by the dump's thread, each written by
//     one thread at a time, different outputs by different threads at once;
//   - outputs of a size known only when they are committed (create_unsized()), whose first bytes
//     (the header with the payload size) are rewritten with overwrite() before commit().
// The page dump uses this to write one page image per thread, holding only non-zero pages.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "common/unique_fd.h"

namespace cryo::ckpt {

class ImageOutput {
 public:
  virtual ~ImageOutput() = default;
  // Appends `size` bytes. Throws cryo::Error (e.g. ENOSPC) naming the output.
  virtual void write(const void* data, size_t size) = 0;
  // Appends the `count` pieces of `pieces` in order (default: one write() each).
  virtual void write_vectored(const iovec* pieces, size_t count);
  // Where the next write() may find its bytes already in place (a producer that reads into it
  // and then writes that pointer saves a copy): at least `min_size` bytes, or {nullptr, 0} (the
  // default) when the output has no such room. Valid until the next call on this output.
  virtual std::pair<void*, size_t> write_room(size_t /*min_size*/) { return {nullptr, 0}; }
  // Outputs of ImageSink::create_unsized() only: replaces `size` bytes already written at
  // `offset` (e.g. the header, once the payload's size is known).
  virtual void overwrite(uint64_t offset, const void* data, size_t size);
  // Every byte announced at creation was written: the image is complete.
  virtual void commit() = 0;
};

class ImageSink {
 public:
  virtual ~ImageSink() = default;
  // A new output named `name` (e.g. "pages-42.img") of exactly `size` bytes.
  virtual std::unique_ptr<ImageOutput> create(const std::string& name, uint64_t size) = 0;
  // Whether the sink takes several outputs at once and outputs sized at commit (see above). A
  // streaming sink keeps the default: one output at a time, its size known when it is created.
  virtual bool parallel_outputs() const { return false; }
  // Only when parallel_outputs(): a new output whose size is whatever was written at commit().
  virtual std::unique_ptr<ImageOutput> create_unsized(const std::string& name);
  // After the last output of a successful dump.
  virtual void finish() = 0;
  // For error messages: "image directory /x", "export stream"...
  virtual std::string describe() const = 0;
};

// Writes each image as a file of `dir` (created if missing), exactly as the directory format
// says. An output is written to a temporary name and renamed when committed, its writeback
// started then; finish() fsyncs every regular file of `dir` (the images and anything the caller
// wrote there before) and the directory, unless `dir` is on tmpfs/ramfs, where there is nothing
// to make durable.
class DirectorySink : public ImageSink {
 public:
  explicit DirectorySink(std::string dir);
  std::unique_ptr<ImageOutput> create(const std::string& name, uint64_t size) override;
  bool parallel_outputs() const override { return true; }
  std::unique_ptr<ImageOutput> create_unsized(const std::string& name) override;
  void finish() override;
  std::string describe() const override { return "image directory " + dir_; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  UniqueFd dir_fd_;
  bool in_memory_fs_ = false;
};

// Collects every image in memory (tests; small dumps sent elsewhere afterwards). Enforces the
// sink contract above: it throws on a second open output (unless made with parallel outputs), on
// a size mismatch and on finish() while an output is open.
class MemorySink : public ImageSink {
 public:
  explicit MemorySink(bool parallel_outputs = false) : parallel_(parallel_outputs) {}
  std::unique_ptr<ImageOutput> create(const std::string& name, uint64_t size) override;
  bool parallel_outputs() const override { return parallel_; }
  std::unique_ptr<ImageOutput> create_unsized(const std::string& name) override;
  void finish() override;
  std::string describe() const override { return "in-memory image set"; }

  const std::map<std::string, std::string>& images() const { return images_; }
  bool finished() const { return finished_; }

 private:
  class Output;
  std::unique_ptr<ImageOutput> open(const std::string& name, uint64_t size, bool sized);
  std::map<std::string, std::string> images_;
  bool parallel_;
  int outputs_open_ = 0;
  bool finished_ = false;
};

}  // namespace cryo::ckpt
