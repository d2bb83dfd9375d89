#include "checkpoint/image/image_file.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "checkpoint/syscall_batch.h"
#include "common/error.h"
#include "common/fs.h"

namespace cryo::ckpt {
namespace {

class ImageFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cryo-img-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  void corrupt_byte(const std::string& name, off_t offset) {
    int fd = ::open((dir_ + "/" + name).c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    char c;
    ASSERT_EQ(pread(fd, &c, 1, offset), 1);
    c ^= 0x40;
    ASSERT_EQ(pwrite(fd, &c, 1, offset), 1);
    close(fd);
  }
  std::string dir_;
};

TEST_F(ImageFileTest, JsonRoundTripAndCorruptionDetected) {
  json v = {{"pid", 42}, {"comm", "httpd"}};
  write_json_image(dir_, "core-42.img", v);
  EXPECT_EQ(read_json_image(dir_, "core-42.img"), v);
  corrupt_byte("core-42.img", kImageHeaderSize + 3);
  EXPECT_THROW(read_json_image(dir_, "core-42.img"), Error);
}

TEST_F(ImageFileTest, RawStreamedRoundTripTruncationAndVersion) {
  {
    DirectorySink sink(dir_);
    RawImageWriter w(sink, "pages-1.img", 15000);
    std::string a(10000, 'a'), b(5000, 'b');
    w.append(a.data(), a.size());
    w.append(b.data(), b.size());
    w.finish();
    sink.finish();
  }
  RawImageReader r(dir_, "pages-1.img");
  EXPECT_EQ(r.payload_size(), 15000u);
  r.verify_checksum();
  char c;
  r.read_at(12000, &c, 1);
  EXPECT_EQ(c, 'b');
  EXPECT_THROW(r.read_at(14999, &c, 2), Error);

  ASSERT_EQ(truncate((dir_ + "/pages-1.img").c_str(), 1000), 0);
  EXPECT_THROW(RawImageReader(dir_, "pages-1.img"), Error);
}

TEST_F(ImageFileTest, UnfinishedWriterLeavesNoFile) {
  DirectorySink sink(dir_);
  {
    RawImageWriter w(sink, "pages-2.img", 8192);
    std::string a(4096, 'a');
    w.append(a.data(), a.size());
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir_));
}

TEST_F(ImageFileTest, OtherFormatVersionIsRefusedWithClearMessage) {
  write_json_image(dir_, "inventory.img", json{{"x", 1}});
  int fd = ::open((dir_ + "/inventory.img").c_str(), O_RDWR);
  uint32_t version = 99;
  ASSERT_EQ(pwrite(fd, &version, 4, 8), 4);
  close(fd);
  try {
    read_json_image(dir_, "inventory.img");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("version 99 is not supported"), std::string::npos);
  }
}

// The two halves of append() (checksum on one thread, write on another) make the same image, and
// an image whose bytes were not all checksummed is refused at finish().
TEST(RawImageWriterHalves, SameImageAsAppendAndEveryByteChecksummed) {
  std::string payload(3 * 4096, '\0');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 7 + 3);
  MemorySink whole, halves, short_sum;
  {
    RawImageWriter w(whole, "p.img", payload.size());
    w.append(payload.data(), payload.size());
    w.finish();
  }
  {
    RawImageWriter w(halves, "p.img", payload.size());
    for (size_t at = 0; at < payload.size(); at += 4096) w.add_to_checksum(&payload[at], 4096);
    for (size_t at = 0; at < payload.size(); at += 4096) w.append_checksummed(&payload[at], 4096);
    w.finish();
  }
  EXPECT_EQ(halves.images().at("p.img"), whole.images().at("p.img"));
  RawImageWriter w(short_sum, "p.img", payload.size());
  w.add_to_checksum(payload.data(), 4096);
  w.append_checksummed(payload.data(), payload.size());
  EXPECT_THROW(w.finish(), Error);
  EXPECT_THROW(w.add_to_checksum(payload.data(), payload.size()), Error);  // beyond the size
}

TEST(SyscallBatch, LayoutRelocatesDataReferences) {
  SyscallBatch batch;
  int value = 7;
  BatchArg in = batch.data(&value, sizeof value);
  size_t i = batch.add(1, {3, in, sizeof value});
  BatchArg out = batch.reserve(64);
  batch.add(2, {out}, false);
  RemoteAddr base(0x7f0000000000);
  std::vector<uint8_t> block = batch.layout(base);
  ASSERT_EQ(block.size(), batch.size());
  auto* entries = reinterpret_cast<const BatchedSyscall*>(block.data());
  EXPECT_EQ(entries[i].nr & kBatchNrMask, 1);
  EXPECT_TRUE(entries[0].nr & kBatchStopOnError);
  EXPECT_FALSE(entries[1].nr & kBatchStopOnError);
  EXPECT_EQ(entries[2].nr, kBatchEnd);
  EXPECT_EQ(entries[0].args[1], batch.address_of(in, base).value());
  int copied;
  std::memcpy(&copied, block.data() + batch.offset_of(in), sizeof copied);
  EXPECT_EQ(copied, 7);
  EXPECT_EQ(batch.address_of(out, base).value() % 16, 0u);
}

}  // namespace
}  // namespace cryo::ckpt
