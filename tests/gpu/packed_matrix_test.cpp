// PackedMatrix: the documented layout (checked byte by byte on hand-numbered blocks), zero
// padding rows, alignment, the rejections, and PackedWeights attaching copies to views.
#include "gpu/packed_matrix.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <stdexcept>
#include <vector>

#include "gpu/matmul.hpp"

namespace troupe {
namespace {

// Every byte of block b of row r is a distinct function of (r, b, byte index).
uint8_t numbered(int64_t r, int64_t b, size_t i) { return static_cast<uint8_t>(r * 37 + b * 11 + i * 3 + 1); }

std::vector<uint8_t> numbered_matrix(GgmlType type, int64_t rows, int64_t cols) {
  const auto& traits = traits_of(type);
  std::vector<uint8_t> bytes(rows * ggml_row_bytes(type, cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < cols / 32; ++b)
      for (size_t i = 0; i < traits.block_bytes; ++i)
        bytes[(r * (cols / 32) + b) * traits.block_bytes + i] = numbered(r, b, i);
  return bytes;
}

uint16_t half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return h;
}

// Expected packed byte for row r, block b, chunk k, byte i of the row's 4 (layout contract).
TEST(PackedMatrix, LayoutOfQ4_1) {
  const int64_t rows = 20, cols = 96, nb = 3;
  const auto bytes = numbered_matrix(GgmlType::Q4_1, rows, cols);
  const PackedMatrix p = pack({GgmlType::Q4_1, bytes.data(), rows, cols, ggml_row_bytes(GgmlType::Q4_1, cols)});
  ASSERT_EQ(p.groups(), 2);
  EXPECT_EQ(p.blocks(), nb);
  EXPECT_EQ(p.group_stride() % 64, 0u);
  EXPECT_GE(p.group_stride(), static_cast<size_t>(nb * (256 + 64)));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p.group(0)) % 64, 0u);
  for (int64_t g = 0; g < 2; ++g) {
    const uint8_t* group = p.group(g);
    for (int j = 0; j < 16; ++j) {
      const int64_t r = g * 16 + j;
      for (int64_t b = 0; b < nb; ++b) {
        // ggml Q4_1 block: d (bytes 0-1), m (2-3), qs (4-19).
        for (int k = 0; k < 4; ++k)
          for (int i = 0; i < 4; ++i)
            ASSERT_EQ(group[b * 256 + 64 * k + 4 * j + i], r < rows ? numbered(r, b, 4 + 4 * k + i) : 0)
                << "r " << r << " b " << b << " k " << k;
        const uint8_t d_expected[2] = {r < rows ? numbered(r, b, 0) : uint8_t(0), r < rows ? numbered(r, b, 1) : uint8_t(0)};
        const uint8_t m_expected[2] = {r < rows ? numbered(r, b, 2) : uint8_t(0), r < rows ? numbered(r, b, 3) : uint8_t(0)};
        ASSERT_EQ(half_at(group + nb * 256 + 32 * b + 2 * j), half_at(d_expected)) << "d of r " << r;
        ASSERT_EQ(half_at(group + nb * 256 + nb * 32 + 32 * b + 2 * j), half_at(m_expected)) << "m of r " << r;
      }
    }
  }
}

TEST(PackedMatrix, LayoutOfQ8_0AndQ4_0) {
  const int64_t rows = 16, cols = 64, nb = 2;
  const auto q8 = numbered_matrix(GgmlType::Q8_0, rows, cols);
  const PackedMatrix p8 = pack({GgmlType::Q8_0, q8.data(), rows, cols, ggml_row_bytes(GgmlType::Q8_0, cols)});
  const auto q4 = numbered_matrix(GgmlType::Q4_0, rows, cols);
  const PackedMatrix p4 = pack({GgmlType::Q4_0, q4.data(), rows, cols, ggml_row_bytes(GgmlType::Q4_0, cols)});
  ASSERT_EQ(p8.groups(), 1);
  for (int j = 0; j < 16; ++j)
    for (int64_t b = 0; b < nb; ++b) {
      // ggml Q8_0 block: d (bytes 0-1), qs (2-33), stored + 128.
      for (int k = 0; k < 8; ++k)
        for (int i = 0; i < 4; ++i)
          ASSERT_EQ(p8.group(0)[b * 512 + 64 * k + 4 * j + i],
                    static_cast<uint8_t>(numbered(j, b, 2 + 4 * k + i) + 128));
      const uint8_t d8[2] = {numbered(j, b, 0), numbered(j, b, 1)};
      ASSERT_EQ(half_at(p8.group(0) + nb * 512 + 32 * b + 2 * j), half_at(d8));
      // ggml Q4_0 block: d (bytes 0-1), qs (2-17).
      for (int k = 0; k < 4; ++k)
        for (int i = 0; i < 4; ++i)
          ASSERT_EQ(p4.group(0)[b * 256 + 64 * k + 4 * j + i], numbered(j, b, 2 + 4 * k + i));
      const uint8_t d4[2] = {numbered(j, b, 0), numbered(j, b, 1)};
      ASSERT_EQ(half_at(p4.group(0) + nb * 256 + 32 * b + 2 * j), half_at(d4));
    }
}

TEST(PackedMatrix, RejectsWhatItCannotPack) {
  std::vector<uint8_t> data(4096);
  EXPECT_TRUE(packable(GgmlType::Q4_1));
  EXPECT_FALSE(packable(GgmlType::Q5_0));
  EXPECT_FALSE(packable(GgmlType::F32));
  EXPECT_THROW(pack({GgmlType::Q5_0, data.data(), 4, 64, ggml_row_bytes(GgmlType::Q5_0, 64)}),
               std::invalid_argument);
  EXPECT_THROW(pack({GgmlType::F16, data.data(), 4, 64, 128}), std::invalid_argument);
  EXPECT_THROW(pack({GgmlType::Q4_0, data.data(), 4, 48, 36}), std::invalid_argument);
  EXPECT_THROW(pack({GgmlType::Q4_0, data.data(), 4, 64, 20}), std::invalid_argument);
  EXPECT_THROW(pack({GgmlType::Q8_0, nullptr, 4, 64, 68}), std::invalid_argument);
  EXPECT_THROW(pack({GgmlType::Q8_0, data.data(), -1, 64, 68}), std::invalid_argument);
}

TEST(PackedWeights, AttachesPackableViewsAndKeepsTheirCopies) {
  std::vector<uint8_t> q4(40 * ggml_row_bytes(GgmlType::Q4_1, 64), 0x11);
  std::vector<uint8_t> f32(4 * 64 * 4);
  PackedWeights store;
  WeightView a{GgmlType::Q4_1, q4.data(), 40, 64, ggml_row_bytes(GgmlType::Q4_1, 64)};
  WeightView f{GgmlType::F32, f32.data(), 4, 64, 256};
  store.attach(a);
  store.attach(f);
  ASSERT_NE(a.packed, nullptr);
  EXPECT_EQ(f.packed, nullptr);
  EXPECT_EQ(a.packed->rows(), 40);
  EXPECT_EQ(a.packed->cols(), 64);
  EXPECT_EQ(a.packed->type(), GgmlType::Q4_1);
  const PackedMatrix* first = a.packed;
  std::vector<WeightView> more(50, WeightView{GgmlType::Q4_1, q4.data(), 40, 64, ggml_row_bytes(GgmlType::Q4_1, 64)});
  for (WeightView& v : more) store.attach(v);
  EXPECT_EQ(a.packed, first);
  EXPECT_EQ(first->group(2)[0], 0x11);  // still readable after the store grew
  EXPECT_EQ(store.bytes(), 51 * first->bytes());
}

TEST(PackedMatmul, RefusesACopyOfAnotherWeight) {
  std::vector<uint8_t> data(32 * ggml_row_bytes(GgmlType::Q4_1, 64));
  std::vector<BlockQ8> xq(2);
  std::vector<float> out(32);
  const WeightView small{GgmlType::Q4_1, data.data(), 16, 64, ggml_row_bytes(GgmlType::Q4_1, 64)};
  const PackedMatrix packed = pack(small);
  WeightView big{GgmlType::Q4_1, data.data(), 32, 64, ggml_row_bytes(GgmlType::Q4_1, 64)};
  big.packed = &packed;
  EXPECT_THROW(matmul(big, nullptr, xq.data(), 1, out.data(), 32, 0, 32), std::invalid_argument);
  WeightView retyped{GgmlType::Q4_0, data.data(), 16, 64, ggml_row_bytes(GgmlType::Q4_0, 64)};
  retyped.packed = &packed;
  EXPECT_THROW(matmul(retyped, nullptr, xq.data(), 1, out.data(), 16, 0, 16), std::invalid_argument);
}

}  // namespace
}  // namespace troupe
