// Every way a GGUF file can be malformed must end in a GgufError whose message names the
// file, the section and the problem: never a crash, a hang or a huge allocation (the ASan
// build runs these too).
#include <gtest/gtest.h>

#include <limits>
#include <string>

#include "model/gguf.hpp"
#include "tests/util/gguf_writer.hpp"
#include "tests/util/scratch_file.hpp"

namespace troupe {
namespace {

using test::GgufWriter;
using test::ScratchFile;

constexpr uint64_t kMax64 = std::numeric_limits<uint64_t>::max();

// A small file touching every section: header, scalars, strings, flat and nested arrays,
// alignment, three tensors (one quantized), padding and data.
GgufWriter small_writer() {
  GgufWriter w;
  w.set_alignment(64);
  w.add("general.architecture", test::meta_string("llama"));
  w.add("count", test::meta_u32(3));
  w.add("ratio", test::meta_f64(0.5));
  w.add("flag", test::meta_bool(true));
  w.add("words", test::meta_string_array({"one", "two"}));
  w.add("nested", test::meta_array(GgufType::Array,
                                   {test::meta_array(GgufType::I16, {test::meta_i16(-1)})}));
  w.add_tensor("a.weight", GgmlType::F32, {4, 2}, std::vector<uint8_t>(32, 1));
  w.add_tensor("b.weight", GgmlType::Q8_0, {32, 2}, std::vector<uint8_t>(68, 2));
  w.add_tensor("c.weight", GgmlType::F16, {3}, std::vector<uint8_t>(6, 3));
  return w;
}

// Opens `bytes` and returns the GgufError message; fails the test when the file loads.
std::string rejection(const std::vector<uint8_t>& bytes) {
  ScratchFile file(bytes);
  try {
    GgufFile::open(file.path());
  } catch (const GgufError& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.rfind(file.path() + ": ", 0), 0u) << "message must start with the path: "
                                                        << message;
    return message;
  }
  ADD_FAILURE() << "file of " << bytes.size() << " bytes was accepted";
  return {};
}

void expect_rejected(const std::vector<uint8_t>& bytes, const std::string& fragment) {
  const std::string message = rejection(bytes);
  EXPECT_NE(message.find(fragment), std::string::npos)
      << "expected '" << fragment << "' in: " << message;
}

TEST(GgufReject, SmallFileIsValid) {
  const auto bytes = small_writer().bytes();
  ScratchFile file(bytes);
  const GgufFile f = GgufFile::open(file.path());
  EXPECT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.alignment(), 64u);
}

TEST(GgufReject, EveryTruncationIsAnError) {
  const auto bytes = small_writer().bytes();
  ScratchFile file;
  for (std::size_t length = 0; length < bytes.size(); ++length) {
    file.write(std::span(bytes.data(), length));
    EXPECT_THROW(GgufFile::open(file.path()), GgufError) << "prefix of " << length << " bytes";
  }
}

// Overwriting any one byte with an extreme value either leaves a loadable file or is
// refused; under ASan this also proves no read leaves the mapping.
TEST(GgufReject, EverySingleByteCorruptionIsHandled) {
  const auto good = small_writer().bytes();
  ScratchFile file;
  std::size_t refused = 0;
  for (std::size_t i = 0; i < good.size(); ++i) {
    for (uint8_t value : {uint8_t{0x00}, uint8_t{0xFF}, uint8_t{0x80}}) {
      if (good[i] == value) continue;
      auto bytes = good;
      bytes[i] = value;
      file.write(bytes);
      try {
        const GgufFile f = GgufFile::open(file.path());
        for (const auto& t : f.tensors()) {
          ASSERT_LE(t.offset, f.file_size() - f.data_offset());
          ASSERT_LE(t.n_bytes, f.file_size() - f.data_offset() - t.offset);
        }
      } catch (const GgufError&) {
        ++refused;
      }
    }
  }
  EXPECT_GT(refused, good.size() / 4);  // header, lengths, counts and types are all fragile
}

TEST(GgufReject, TruncationMessagesNameTheSection) {
  GgufWriter::Layout layout;
  const auto bytes = small_writer().bytes(&layout);
  auto cut = [&](uint64_t length) { return std::vector<uint8_t>(bytes.begin(), bytes.begin() + length); };
  expect_rejected(cut(0), "empty file");
  expect_rejected(cut(3), "too small");
  expect_rejected(cut(6), "header: file truncated: version");
  expect_rejected(cut(layout.kv_offsets[6] - 1), "metadata 'words'");
  expect_rejected(cut(layout.tensor_info_offsets[1] + 10), "tensor #1: name length 8 exceeds the 2 bytes left");
  expect_rejected(cut(layout.tensor_info_offsets[1] + 8 + 8 + 4 + 3), "tensor 'b.weight'");
  expect_rejected(cut(layout.tensor_data_offsets[2] + 1), "tensor 'c.weight': data [offset");
  expect_rejected(cut(layout.tensor_data_offsets[2] + 1), "beyond end of file");
}

TEST(GgufReject, BadMagic) {
  auto bytes = small_writer().bytes();
  bytes[3] = 'X';
  expect_rejected(bytes, "not a GGUF file: magic is 'GGUX'");
  bytes[0] = 0;
  expect_rejected(bytes, "magic is '\\x00GUX'");
  bytes[1] = static_cast<uint8_t>(0xC8);
  expect_rejected(bytes, "magic is '\\x00\\xc8UX'");
}

TEST(GgufReject, UnsupportedVersionsAndByteOrder) {
  auto bytes = small_writer().bytes();
  test::put_u32(bytes, 4, 1);
  expect_rejected(bytes, "GGUF version 1 is not supported");
  test::put_u32(bytes, 4, 4);
  expect_rejected(bytes, "unsupported GGUF version 4");
  test::put_u32(bytes, 4, 0x03000000);  // 3 written big-endian
  expect_rejected(bytes, "big-endian");
}

TEST(GgufReject, OverflowingCounts) {
  GgufWriter::Layout layout;
  const auto good = small_writer().bytes(&layout);
  auto bytes = good;
  test::put_u64(bytes, layout.tensor_count_offset, kMax64);
  expect_rejected(bytes, "tensor count 18446744073709551615 cannot fit");
  bytes = good;
  test::put_u64(bytes, layout.kv_count_offset, kMax64 / 2);
  expect_rejected(bytes, "metadata count");
  bytes = good;
  test::put_u64(bytes, layout.kv_count_offset, 8);  // one more record than written
  EXPECT_FALSE(rejection(bytes).empty());
}

TEST(GgufReject, OverflowingStringLengths) {
  GgufWriter::Layout layout;
  const auto good = small_writer().bytes(&layout);
  auto bytes = good;
  test::put_u64(bytes, layout.kv_offsets[0], kMax64);
  expect_rejected(bytes, "metadata #0: key length 18446744073709551615 exceeds");
  bytes = good;
  // the value of general.architecture: after key length, key and type tag
  test::put_u64(bytes, layout.kv_offsets[1] + 8 + 20 + 4, uint64_t{1} << 62);
  expect_rejected(bytes, "metadata 'general.architecture': string length");
  bytes = good;
  test::put_u64(bytes, layout.tensor_info_offsets[0], bytes.size());
  expect_rejected(bytes, "tensor #0: name length");
}

TEST(GgufReject, OverflowingArrayLengths) {
  GgufWriter::Layout layout;
  const auto good = small_writer().bytes(&layout);
  // "words": key length(8) + "words"(5) + type(4) + element type(4), then the count
  const uint64_t count_at = layout.kv_offsets[5] + 8 + 5 + 4 + 4;
  for (uint64_t count : {kMax64, uint64_t{1} << 61, uint64_t{1000}}) {
    auto bytes = good;
    test::put_u64(bytes, count_at, count);
    expect_rejected(bytes, "metadata 'words': array of " + std::to_string(count) +
                               " string elements cannot fit");
  }
  GgufWriter w;
  w.add("numbers", test::meta_array(GgufType::F64, {test::meta_f64(1.0)}));
  auto bytes = w.bytes(&layout);
  test::put_u64(bytes, layout.kv_offsets[0] + 8 + 7 + 4 + 4, kMax64 / 8 + 1);
  expect_rejected(bytes, "array of 2305843009213693952 f64 elements cannot fit");
}

TEST(GgufReject, ArraysNestedTooDeep) {
  auto value = test::meta_array(GgufType::U8, {test::meta_u8(1)});
  for (uint32_t depth = 1; depth < GgufFile::kMaxArrayDepth; ++depth)
    value = test::meta_array(GgufType::Array, {value});
  GgufWriter ok;
  ok.add("deep", value);
  ScratchFile file(ok.bytes());
  EXPECT_NO_THROW(GgufFile::open(file.path()));

  GgufWriter w;
  w.add("deep", test::meta_array(GgufType::Array, {value}));
  expect_rejected(w.bytes(), "metadata 'deep': arrays nested deeper than 8 levels");
}

TEST(GgufReject, UnknownValueTypes) {
  GgufWriter::Layout layout;
  const auto good = small_writer().bytes(&layout);
  auto bytes = good;
  test::put_u32(bytes, layout.kv_offsets[2] + 8 + 5, 13);  // "count" type tag
  expect_rejected(bytes, "metadata 'count': unknown value type 13");
  bytes = good;
  test::put_u32(bytes, layout.kv_offsets[5] + 8 + 5 + 4, 99);  // "words" element type
  expect_rejected(bytes, "unknown array element type 99");
}

TEST(GgufReject, DuplicateKeysAndTensorNames) {
  GgufWriter w;
  w.add("same", test::meta_u8(1));
  w.add("same", test::meta_u8(2));
  expect_rejected(w.bytes(), "metadata 'same': duplicate key");
  GgufWriter t;
  t.add_tensor("x", GgmlType::F32, {1}, std::vector<uint8_t>(4));
  t.add_tensor("x", GgmlType::F32, {1}, std::vector<uint8_t>(4));
  expect_rejected(t.bytes(), "tensor 'x': duplicate tensor name");
}

TEST(GgufReject, BadAlignment) {
  for (uint32_t alignment : {0u, 48u, 3u}) {
    GgufWriter w;
    w.set_alignment(alignment);
    w.add_tensor("x", GgmlType::F32, {1}, std::vector<uint8_t>(4));
    expect_rejected(w.bytes(), "general.alignment': is " + std::to_string(alignment) +
                                   "; it must be a power of two");
  }
  GgufWriter w;
  w.add("general.alignment", test::meta_string("32"));
  expect_rejected(w.bytes(), "general.alignment': must be an unsigned integer");
}

TEST(GgufReject, BadDimensions) {
  GgufWriter none;
  none.add_tensor("scalar", GgmlType::F32, {}, std::vector<uint8_t>(4));
  expect_rejected(none.bytes(), "tensor 'scalar': has 0 dimensions; 1 to 4 are supported");
  GgufWriter five;
  five.add_tensor("t5", GgmlType::F32, {1, 1, 1, 1, 1}, std::vector<uint8_t>(4));
  expect_rejected(five.bytes(), "has 5 dimensions");
  GgufWriter overflow;
  overflow.add_tensor("big", GgmlType::F32, {uint64_t{1} << 40, uint64_t{1} << 40}, {});
  expect_rejected(overflow.bytes(), "tensor 'big': dimensions [1099511627776,1099511627776] overflow");
  GgufWriter bytes_overflow;  // elements fit in int64, bytes do not fit in uint64
  bytes_overflow.add_tensor("wide", GgmlType::F32, {uint64_t{1} << 62}, {});
  expect_rejected(bytes_overflow.bytes(), "tensor 'wide': byte size of shape");
  GgufWriter huge_but_valid_shape;  // fits the arithmetic, not the file
  huge_but_valid_shape.add_tensor("huge", GgmlType::F32, {uint64_t{1} << 30, 4}, {});
  expect_rejected(huge_but_valid_shape.bytes(), "tensor 'huge': data [offset 0, size 17179869184] beyond end of file");
}

TEST(GgufReject, UnknownTensorType) {
  GgufWriter w;
  w.add_tensor_raw_type("blk.0.attn_q.weight", 42, {32}, std::vector<uint8_t>(64));
  expect_rejected(w.bytes(), "tensor 'blk.0.attn_q.weight': unknown tensor type 42");
}

TEST(GgufReject, QuantizedRowNotAWholeNumberOfBlocks) {
  GgufWriter w;
  w.add_tensor("q", GgmlType::Q4_0, {33, 2}, std::vector<uint8_t>(40));
  expect_rejected(w.bytes(), "tensor 'q': row length 33 (shape [33,2]) is not a multiple of the Q4_0 block size 32");
  GgufWriter k;
  k.add_tensor("k", GgmlType::Q6_K, {128}, std::vector<uint8_t>(210));
  expect_rejected(k.bytes(), "Q6_K block size 256");
}

TEST(GgufReject, MisalignedOutOfRangeAndOverlappingData) {
  GgufWriter::Layout layout;
  const auto good = small_writer().bytes(&layout);
  // offset field: after name (8 + 8 chars), n_dims (4), dims and type (4)
  const uint64_t b_offset_at = layout.tensor_info_offsets[1] + 8 + 8 + 4 + 2 * 8 + 4;
  auto bytes = good;
  test::put_u64(bytes, b_offset_at, 16);
  expect_rejected(bytes, "tensor 'b.weight': data offset 16 is not a multiple of the alignment 64");
  bytes = good;
  test::put_u64(bytes, b_offset_at, kMax64 & ~uint64_t{63});
  expect_rejected(bytes, "tensor 'b.weight': data [offset 18446744073709551552, size 68] beyond end of file");
  bytes = good;
  test::put_u64(bytes, b_offset_at, 0);  // same place as a.weight
  expect_rejected(bytes, "overlaps tensor");
}

TEST(GgufReject, PathsThatAreNotFiles) {
  EXPECT_THROW(GgufFile::open("/nonexistent/troupe/model.gguf"), GgufError);
  try {
    GgufFile::open("/tmp");
    FAIL() << "a directory was accepted";
  } catch (const GgufError& e) {
    EXPECT_NE(std::string(e.what()).find("not a regular file"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace troupe
