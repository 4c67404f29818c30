// GgufFile round-trips through the test writer: every metadata value type, every tensor
// type, several alignments, v2 and v3. Expected values are the literals written, and block
// sizes are ggml's published geometry, restated here.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>

#include "model/gguf.hpp"
#include "tests/util/gguf_writer.hpp"
#include "tests/util/scratch_file.hpp"

namespace troupe {
namespace {

using test::GgufWriter;
using test::ScratchFile;

GgufFile open_bytes(const std::vector<uint8_t>& bytes, std::unique_ptr<ScratchFile>& keep) {
  keep = std::make_unique<ScratchFile>(bytes);
  return GgufFile::open(keep->path());
}

std::vector<uint8_t> pattern(std::size_t n, uint8_t seed) {
  std::vector<uint8_t> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(seed + i * 7);
  return out;
}

TEST(GgufReader, EveryScalarTypeRoundTrips) {
  GgufWriter w;
  w.add("u8", test::meta_u8(255));
  w.add("i8", test::meta_i8(-128));
  w.add("u16", test::meta_u16(65535));
  w.add("i16", test::meta_i16(-32768));
  w.add("u32", test::meta_u32(4294967295u));
  w.add("i32", test::meta_i32(std::numeric_limits<int32_t>::min()));
  w.add("u64", test::meta_u64(std::numeric_limits<uint64_t>::max()));
  w.add("i64", test::meta_i64(std::numeric_limits<int64_t>::min()));
  w.add("f32", test::meta_f32(1.5f));
  w.add("f64", test::meta_f64(-2.25));
  w.add("yes", test::meta_bool(true));
  w.add("no", test::meta_bool(false));
  w.add("text", test::meta_string("h\xC3\xA9llo"));
  w.add("empty", test::meta_string(""));
  std::unique_ptr<ScratchFile> keep;
  const GgufFile f = open_bytes(w.bytes(), keep);

  EXPECT_EQ(f.version(), 3u);
  ASSERT_EQ(f.metadata().size(), 14u);
  EXPECT_EQ(f.metadata()[0].key, "u8");
  EXPECT_EQ(f.find("u8")->type(), GgufType::U8);
  EXPECT_EQ(f.find("i8")->type(), GgufType::I8);
  EXPECT_EQ(f.find("u16")->type(), GgufType::U16);
  EXPECT_EQ(f.find("i16")->type(), GgufType::I16);
  EXPECT_EQ(f.find("u32")->type(), GgufType::U32);
  EXPECT_EQ(f.find("i32")->type(), GgufType::I32);
  EXPECT_EQ(f.find("u64")->type(), GgufType::U64);
  EXPECT_EQ(f.find("i64")->type(), GgufType::I64);
  EXPECT_EQ(f.find("f32")->type(), GgufType::F32);
  EXPECT_EQ(f.find("f64")->type(), GgufType::F64);
  EXPECT_EQ(f.find("yes")->type(), GgufType::Bool);
  EXPECT_EQ(f.find("text")->type(), GgufType::String);

  EXPECT_EQ(f.get_u64("u8"), 255u);
  EXPECT_EQ(f.get_i64("i8"), -128);
  EXPECT_EQ(f.get_u64("u16"), 65535u);
  EXPECT_EQ(f.get_i64("i16"), -32768);
  EXPECT_EQ(f.get_u64("u32"), 4294967295u);
  EXPECT_EQ(f.get_i64("i32"), std::numeric_limits<int32_t>::min());
  EXPECT_EQ(f.get_u64("u64"), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(f.get_i64("i64"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(f.get_f64("f32"), 1.5);
  EXPECT_EQ(f.get_f64("f64"), -2.25);
  EXPECT_EQ(f.get_bool("yes"), true);
  EXPECT_EQ(f.get_bool("no"), false);
  EXPECT_EQ(f.get_string("text"), "h\xC3\xA9llo");
  EXPECT_EQ(f.get_string("empty"), "");
  EXPECT_EQ(f.find("missing"), nullptr);
  EXPECT_EQ(f.get_u64("missing"), std::nullopt);
  EXPECT_EQ(f.get_string("missing"), std::nullopt);
  EXPECT_TRUE(f.tensors().empty());
}

TEST(GgufReader, NumericGettersConvertWhatFitsAndNameTheKeyOtherwise) {
  GgufWriter w;
  w.add("small", test::meta_i32(7));
  w.add("negative", test::meta_i32(-5));
  w.add("huge", test::meta_u64(std::numeric_limits<uint64_t>::max()));
  w.add("flag", test::meta_bool(true));
  w.add("name", test::meta_string("x"));
  w.add("ratio", test::meta_f32(0.25f));
  std::unique_ptr<ScratchFile> keep;
  const GgufFile f = open_bytes(w.bytes(), keep);

  EXPECT_EQ(f.get_u64("small"), 7u);
  EXPECT_EQ(f.get_f64("small"), 7.0);
  EXPECT_EQ(f.get_i64("negative"), -5);
  EXPECT_EQ(f.get_f64("huge"), 18446744073709551615.0);
  try {
    (void)f.get_u64("negative");
    FAIL() << "no exception";
  } catch (const GgufError& e) {
    EXPECT_NE(std::string(e.what()).find("'negative'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("-5"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)f.get_i64("huge"), GgufError);
  EXPECT_THROW((void)f.get_u64("ratio"), GgufError);
  EXPECT_THROW((void)f.get_u64("flag"), GgufError);
  EXPECT_THROW((void)f.get_bool("small"), GgufError);
  EXPECT_THROW((void)f.get_string("small"), GgufError);
  EXPECT_THROW((void)f.get_f64("name"), GgufError);
}

TEST(GgufReader, ArraysOfEveryKindRoundTrip) {
  GgufWriter w;
  const std::vector<float> floats{1.0f, -0.5f, 3.25f};
  const std::vector<int32_t> ints{-1, 0, 2147483647};
  w.add("strings", test::meta_string_array({"a", "", "\xE2\x96\x81the"}));
  w.add("floats", test::meta_f32_array(floats));
  w.add("ints", test::meta_i32_array(ints));
  w.add("bytes", test::meta_array(GgufType::U8, {test::meta_u8(1), test::meta_u8(200)}));
  w.add("bools", test::meta_array(GgufType::Bool, {test::meta_bool(true), test::meta_bool(false)}));
  w.add("u64s", test::meta_array(GgufType::U64, {test::meta_u64(uint64_t{1} << 40)}));
  w.add("f64s", test::meta_array(GgufType::F64, {test::meta_f64(0.125)}));
  w.add("nested", test::meta_array(GgufType::Array,
                                   {test::meta_array(GgufType::U32, {test::meta_u32(1), test::meta_u32(2)}),
                                    test::meta_array(GgufType::String, {test::meta_string("deep")})}));
  w.add("empty", test::meta_array(GgufType::I16, {}));
  std::unique_ptr<ScratchFile> keep;
  const GgufFile f = open_bytes(w.bytes(), keep);

  const auto strings = f.get_string_array("strings");
  ASSERT_EQ(strings.size(), 3u);
  EXPECT_EQ(strings[0], "a");
  EXPECT_EQ(strings[1], "");
  EXPECT_EQ(strings[2], "\xE2\x96\x81the");
  EXPECT_EQ(f.get_f32_array("floats"), floats);
  EXPECT_EQ(f.get_i32_array("ints"), ints);
  EXPECT_EQ(f.get_i32_array("bytes"), (std::vector<int32_t>{1, 200}));

  const GgufArray* bools = f.find("bools")->as_array();
  ASSERT_NE(bools, nullptr);
  EXPECT_EQ(bools->elem_type, GgufType::Bool);
  EXPECT_EQ(bools->bool_at(0), true);
  EXPECT_EQ(bools->bool_at(1), false);
  EXPECT_EQ(bools->u64_at(0), std::nullopt);

  const GgufArray* u64s = f.find("u64s")->as_array();
  EXPECT_EQ(u64s->u64_at(0), uint64_t{1} << 40);
  EXPECT_THROW((void)f.get_i32_array("u64s"), GgufError);
  EXPECT_EQ(f.find("f64s")->as_array()->f64_at(0), 0.125);

  const GgufArray* nested = f.find("nested")->as_array();
  ASSERT_NE(nested, nullptr);
  ASSERT_EQ(nested->size, 2u);
  const GgufArray* first = nested->arrays[0].as_array();
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(first->elem_type, GgufType::U32);
  EXPECT_EQ(first->u64_at(1), 2u);
  EXPECT_EQ(nested->arrays[1].as_array()->strings.at(0), "deep");

  EXPECT_EQ(f.find("empty")->as_array()->size, 0u);
  EXPECT_TRUE(f.get_i32_array("empty").empty());
  EXPECT_TRUE(f.get_string_array("missing").empty());
  EXPECT_THROW((void)f.get_string_array("ints"), GgufError);
  EXPECT_THROW((void)f.get_f32_array("strings"), GgufError);
  EXPECT_THROW((void)f.get_i32_array("floats"), GgufError);
  EXPECT_THROW((void)f.get_string_array("strings").at(3), std::out_of_range);
}

struct TypeGeometry {
  GgmlType type;
  uint64_t block_elems;
  uint64_t block_bytes;
};

// ggml's block geometry (ggml.c type_traits), restated independently of ggml_types.hpp.
constexpr TypeGeometry kGeometry[] = {
    {GgmlType::F32, 1, 4},      {GgmlType::F16, 1, 2},      {GgmlType::BF16, 1, 2},
    {GgmlType::Q4_0, 32, 18},   {GgmlType::Q4_1, 32, 20},   {GgmlType::Q5_0, 32, 22},
    {GgmlType::Q5_1, 32, 24},   {GgmlType::Q8_0, 32, 34},   {GgmlType::Q8_1, 32, 36},
    {GgmlType::Q2_K, 256, 84},  {GgmlType::Q3_K, 256, 110}, {GgmlType::Q4_K, 256, 144},
    {GgmlType::Q5_K, 256, 176}, {GgmlType::Q6_K, 256, 210}, {GgmlType::Q8_K, 256, 292},
};

TEST(GgufReader, EveryTensorTypeRoundTrips) {
  GgufWriter w;
  std::vector<std::vector<uint8_t>> payloads;
  for (const auto& g : kGeometry) {
    const uint64_t bytes = 2 * g.block_bytes * 3;  // a [2 blocks, 3 rows] matrix
    payloads.push_back(pattern(bytes, static_cast<uint8_t>(g.type)));
    w.add_tensor(std::string("t") + std::to_string(static_cast<int>(g.type)), g.type,
                 {2 * g.block_elems, 3}, payloads.back());
  }
  std::unique_ptr<ScratchFile> keep;
  const GgufFile f = open_bytes(w.bytes(), keep);
  ASSERT_EQ(f.tensors().size(), std::size(kGeometry));
  for (std::size_t i = 0; i < std::size(kGeometry); ++i) {
    const auto& g = kGeometry[i];
    const GgufTensor& t = f.tensors()[i];
    SCOPED_TRACE(t.name);
    EXPECT_EQ(t.type, g.type);
    EXPECT_EQ(t.dims, (std::vector<uint64_t>{2 * g.block_elems, 3}));
    EXPECT_EQ(t.n_elements, 6 * g.block_elems);
    EXPECT_EQ(t.n_bytes, 6 * g.block_bytes);
    EXPECT_EQ(t.rows(), 3u);
    EXPECT_EQ(t.row_bytes(), 2 * g.block_bytes);
    EXPECT_EQ(t.offset % 32, 0u);
    EXPECT_EQ(std::memcmp(t.data, payloads[i].data(), payloads[i].size()), 0);
    EXPECT_EQ(f.tensor(t.name), &t);
  }
  EXPECT_EQ(f.tensor("absent"), nullptr);
}

TEST(GgufReader, FloatRowsNeedNoBlockMultipleAndUpToFourDims) {
  GgufWriter w;
  w.add_tensor("odd", GgmlType::F32, {7, 3}, pattern(7 * 3 * 4, 1));
  w.add_tensor("half", GgmlType::F16, {5}, pattern(10, 2));
  w.add_tensor("four", GgmlType::F32, {2, 3, 4, 5}, pattern(2 * 3 * 4 * 5 * 4, 3));
  w.add_tensor("empty", GgmlType::F32, {0, 4}, {});
  std::unique_ptr<ScratchFile> keep;
  const GgufFile f = open_bytes(w.bytes(), keep);
  EXPECT_EQ(f.tensor("odd")->n_bytes, 84u);
  EXPECT_EQ(f.tensor("odd")->row_bytes(), 28u);
  EXPECT_EQ(f.tensor("half")->n_bytes, 10u);
  EXPECT_EQ(f.tensor("four")->n_elements, 120u);
  EXPECT_EQ(f.tensor("four")->rows(), 60u);
  EXPECT_EQ(f.tensor("empty")->n_bytes, 0u);
  EXPECT_EQ(f.tensor("empty")->rows(), 0u);
}

TEST(GgufReader, HonoursEveryPowerOfTwoAlignment) {
  for (uint32_t alignment : {1u, 2u, 8u, 32u, 64u, 4096u}) {
    SCOPED_TRACE(alignment);
    GgufWriter w;
    w.set_alignment(alignment);
    w.add("pad", test::meta_string("abc"));
    const auto a = pattern(12, 9), b = pattern(20, 4);
    w.add_tensor("a", GgmlType::F32, {3}, a);
    w.add_tensor("b", GgmlType::F16, {10}, b);
    GgufWriter::Layout layout;
    const auto bytes = w.bytes(&layout);
    std::unique_ptr<ScratchFile> keep;
    const GgufFile f = open_bytes(bytes, keep);
    EXPECT_EQ(f.alignment(), alignment);
    EXPECT_EQ(f.data_offset(), layout.data_offset);
    EXPECT_EQ(f.data_offset() % alignment, 0u);
    EXPECT_EQ(f.tensor("b")->offset % alignment, 0u);
    EXPECT_EQ(f.tensor("b")->data, f.tensor("a")->data + (f.tensor("b")->offset - f.tensor("a")->offset));
    EXPECT_EQ(std::memcmp(f.tensor("a")->data, a.data(), a.size()), 0);
    EXPECT_EQ(std::memcmp(f.tensor("b")->data, b.data(), b.size()), 0);
    EXPECT_EQ(f.file_size(), bytes.size());
  }
}

TEST(GgufReader, ReadsVersionTwo) {
  GgufWriter w;
  w.set_version(2);
  w.add("general.architecture", test::meta_string("llama"));
  w.add_tensor("x", GgmlType::Q8_0, {32}, pattern(34, 5));
  std::unique_ptr<ScratchFile> keep;
  const GgufFile f = open_bytes(w.bytes(), keep);
  EXPECT_EQ(f.version(), 2u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.tensor("x")->n_bytes, 34u);
}

TEST(GgufReader, MovedFileKeepsViewsValid) {
  GgufWriter w;
  w.add("name", test::meta_string("kept"));
  w.add("list", test::meta_string_array({"x", "y"}));
  w.add_tensor("x", GgmlType::F32, {2}, pattern(8, 1));
  std::unique_ptr<ScratchFile> keep;
  GgufFile original = open_bytes(w.bytes(), keep);
  const GgufTensor* tensor = original.tensor("x");
  const auto list = original.get_string_array("list");
  GgufFile moved = std::move(original);
  EXPECT_EQ(moved.tensor("x"), tensor);
  EXPECT_EQ(tensor->data[1], pattern(8, 1)[1]);
  EXPECT_EQ(list[1], "y");
  GgufFile assigned = GgufFile::open(keep->path());
  assigned = std::move(moved);
  EXPECT_EQ(assigned.get_string("name"), "kept");
  EXPECT_EQ(assigned.tensor("x"), tensor);
}

}  // namespace
}  // namespace troupe
