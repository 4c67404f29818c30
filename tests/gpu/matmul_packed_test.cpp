// matmul over packed weights (Q4_0, Q4_1, Q8_0) against a double-precision reference built by
// the test utilities' independent dequantizer, for every kernel set the CPU has: shapes with
// padding rows and odd block counts, 1..19 tokens (full, half and single token tiles). The
// packed kernels must give the same bits on every ISA, for any row range, batch size and
// position in the batch. Tolerance as for the unpacked kernels: |got - ref| <= 2e-5 *
// sum_i |w_i x_i|.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gpu/matmul.hpp"
#include "gpu/packed_matrix.hpp"
#include "tests/util/quantize.hpp"

namespace troupe {
namespace {

constexpr double kRelTolerance = 2e-5;

std::vector<KernelIsa> available_isas() {
  std::vector<KernelIsa> isas{KernelIsa::scalar};
  if (best_supported_isa() >= KernelIsa::avx2) isas.push_back(KernelIsa::avx2);
  if (best_supported_isa() >= KernelIsa::avx512) isas.push_back(KernelIsa::avx512);
  return isas;
}

struct Matrix {
  std::vector<uint8_t> bytes;
  WeightView view;
};

Matrix quantized_matrix(GgmlType type, int64_t rows, int64_t cols, std::mt19937& rng) {
  // Q4_1 gets an asymmetric range so that its minimum matters.
  const float low = type == GgmlType::Q4_1 ? -0.3f : -1.0f;
  std::uniform_real_distribution<float> value(low, 1.0f);
  std::vector<float> values(rows * cols);
  for (auto& v : values) v = value(rng);
  Matrix m;
  m.bytes = test::quantize(type, values);
  m.view = {type, m.bytes.data(), rows, cols, ggml_row_bytes(type, cols)};
  return m;
}

std::vector<BlockQ8> quantized_inputs(int64_t n_tokens, int64_t cols, std::mt19937& rng) {
  std::uniform_real_distribution<float> value(-2.0f, 2.0f);
  std::vector<float> x(n_tokens * cols);
  for (auto& v : x) v = value(rng);
  std::vector<BlockQ8> xq(n_tokens * cols / 32);
  for (int64_t t = 0; t < n_tokens; ++t) quantize_row_q8(&x[t * cols], &xq[t * cols / 32], cols);
  return xq;
}

// ref[t * rows + r] and sum |w_i x_i| for each, in double, from the test dequantizer.
void reference(const WeightView& w, const std::vector<BlockQ8>& xq, int64_t n_tokens,
               std::vector<double>& ref, std::vector<double>& magnitude) {
  ref.assign(n_tokens * w.rows, 0.0);
  magnitude.assign(n_tokens * w.rows, 0.0);
  for (int64_t r = 0; r < w.rows; ++r) {
    const std::vector<float> row =
        test::dequantize(w.type, {w.data + r * w.row_bytes, w.row_bytes});
    for (int64_t t = 0; t < n_tokens; ++t) {
      double sum = 0.0, mag = 0.0;
      for (int64_t i = 0; i < w.cols; ++i) {
        const BlockQ8& b = xq[(t * w.cols + i) / 32];
        const double product = static_cast<double>(row[i]) * b.d * b.qs[i % 32];
        sum += product;
        mag += std::fabs(product);
      }
      ref[t * w.rows + r] = sum;
      magnitude[t * w.rows + r] = mag;
    }
  }
}

std::vector<float> run(KernelIsa isa, const WeightView& w, const BlockQ8* xq, int64_t n_tokens,
                       int64_t stride, int64_t row_begin, int64_t row_end, float fill = NAN) {
  std::vector<float> out(n_tokens * stride, fill);
  matmul_with_isa(isa, w, nullptr, xq, n_tokens, out.data(), stride, row_begin, row_end);
  return out;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

struct Shape {
  int64_t rows;
  int64_t cols;
};

class PackedTypes : public ::testing::TestWithParam<GgmlType> {};

TEST_P(PackedTypes, MatchesReferenceForEveryKernelSetShapeAndBatch) {
  const GgmlType type = GetParam();
  std::mt19937 rng(static_cast<uint32_t>(type) * 31 + 5);
  for (const Shape shape : {Shape{13, 32}, Shape{16, 96}, Shape{37, 160}, Shape{50, 576}}) {
    Matrix m = quantized_matrix(type, shape.rows, shape.cols, rng);
    const PackedMatrix packed = pack(m.view);
    WeightView w = m.view;
    w.packed = &packed;
    const int64_t max_tokens = 19;
    const std::vector<BlockQ8> xq = quantized_inputs(max_tokens, shape.cols, rng);
    std::vector<double> ref, magnitude;
    reference(m.view, xq, max_tokens, ref, magnitude);
    for (KernelIsa isa : available_isas()) {
      for (int64_t n_tokens = 1; n_tokens <= max_tokens; ++n_tokens) {
        const std::vector<float> out = run(isa, w, xq.data(), n_tokens, w.rows, 0, w.rows);
        const std::vector<float> unpacked = run(KernelIsa::scalar, m.view, xq.data(), n_tokens,
                                                w.rows, 0, w.rows);
        for (int64_t i = 0; i < n_tokens * w.rows; ++i) {
          const double tolerance = kRelTolerance * magnitude[i] + 1e-7;
          ASSERT_NEAR(out[i], ref[i], tolerance)
              << to_string(isa) << " rows " << w.rows << " cols " << w.cols << " n_tokens "
              << n_tokens << " t " << i / w.rows << " r " << i % w.rows;
          ASSERT_NEAR(out[i], unpacked[i], 2 * tolerance) << "packed vs unpacked kernels";
        }
      }
    }
  }
}

// One ISA's value of (row, token) is the scalar packed kernel's, bit for bit, whatever the
// batch size, the token's position, the row range or the output stride.
TEST_P(PackedTypes, SameBitsOnEveryIsaRowRangeAndBatchPosition) {
  const GgmlType type = GetParam();
  std::mt19937 rng(static_cast<uint32_t>(type) + 77);
  Matrix m = quantized_matrix(type, 45, 224, rng);
  const PackedMatrix packed = pack(m.view);
  WeightView w = m.view;
  w.packed = &packed;
  const int64_t n_tokens = 13, nb = w.cols / 32, stride = w.rows + 5;
  const std::vector<BlockQ8> xq = quantized_inputs(n_tokens, w.cols, rng);
  const std::vector<float> expected = run(KernelIsa::scalar, w, xq.data(), n_tokens, stride, 0, w.rows);
  for (KernelIsa isa : available_isas()) {
    const std::vector<float> full = run(isa, w, xq.data(), n_tokens, stride, 0, w.rows, -7.0f);
    for (int64_t t = 0; t < n_tokens; ++t) {
      for (int64_t r = 0; r < w.rows; ++r)
        ASSERT_TRUE(same_bits(full[t * stride + r], expected[t * stride + r]))
            << to_string(isa) << " t " << t << " r " << r;
      for (int64_t r = w.rows; r < stride; ++r) ASSERT_EQ(full[t * stride + r], -7.0f);
    }
    // Row pieces that cut groups, as threads would with an alignment below 16.
    for (const auto& cuts : std::vector<std::vector<int64_t>>{{0, 4, 16, 21, 45}, {0, 1, 2, 31, 44, 45}}) {
      std::vector<float> pieces(n_tokens * stride, -7.0f);
      for (size_t i = 0; i + 1 < cuts.size(); ++i)
        matmul_with_isa(isa, w, nullptr, xq.data(), n_tokens, pieces.data(), stride, cuts[i], cuts[i + 1]);
      for (int64_t i = 0; i < n_tokens * stride; ++i)
        ASSERT_TRUE(same_bits(pieces[i], full[i])) << to_string(isa) << " index " << i;
    }
    // Every sub-batch [first, first + n) of tokens, so each token sits in every tile size and
    // tile position; rows [3, 40) only.
    for (int64_t first = 0; first < n_tokens; ++first)
      for (int64_t n = 1; first + n <= n_tokens; ++n) {
        const std::vector<float> part =
            run(isa, w, xq.data() + first * nb, n, w.rows, 3, 40, -7.0f);
        for (int64_t t = 0; t < n; ++t)
          for (int64_t r = 0; r < w.rows; ++r) {
            if (r < 3 || r >= 40)
              ASSERT_EQ(part[t * w.rows + r], -7.0f);
            else
              ASSERT_TRUE(same_bits(part[t * w.rows + r], expected[(first + t) * stride + r]))
                  << to_string(isa) << " first " << first << " n " << n << " t " << t << " r " << r;
          }
      }
  }
}

// matmul() runs the packed kernels of active_isa() (TROUPE_CPU_KERNELS may cap it): the same
// bits as the scalar packed kernel, whichever it is.
TEST_P(PackedTypes, MatmulDispatchesToThePackedKernels) {
  const GgmlType type = GetParam();
  std::mt19937 rng(static_cast<uint32_t>(type) + 11);
  Matrix m = quantized_matrix(type, 40, 128, rng);
  const PackedMatrix packed = pack(m.view);
  WeightView w = m.view;
  w.packed = &packed;
  const std::vector<BlockQ8> xq = quantized_inputs(5, w.cols, rng);
  const std::vector<float> expected = run(KernelIsa::scalar, w, xq.data(), 5, w.rows, 0, w.rows);
  std::vector<float> out(5 * w.rows, NAN);
  matmul(w, nullptr, xq.data(), 5, out.data(), w.rows, 0, w.rows);
  for (size_t i = 0; i < out.size(); ++i)
    ASSERT_TRUE(same_bits(out[i], expected[i])) << to_string(active_isa()) << " index " << i;
}

INSTANTIATE_TEST_SUITE_P(PackableTypes, PackedTypes,
                         ::testing::Values(GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0),
                         [](const auto& info) { return std::string(traits_of(info.param).name); });

void put_half(uint8_t* p, float f) {
  const uint16_t h = test::fp32_to_fp16(f);
  std::memcpy(p, &h, 2);
}

// Extreme quants and activations: all nibbles 15 (the AVX2 kernel's largest i16 partial sums)
// and Q8_0's -128 (its abs / sign path), against +-127 activations.
TEST(PackedMatmul, ExtremeQuantsAndActivations) {
  const int64_t rows = 17, cols = 64;
  std::vector<BlockQ8> xq(4);
  for (int t = 0; t < 2; ++t)
    for (int b = 0; b < 2; ++b) {
      BlockQ8& x = xq[t * 2 + b];
      x.d = 0.5f;
      int sum = 0;
      for (int i = 0; i < 32; ++i) sum += x.qs[i] = static_cast<int8_t>(t == 0 ? 127 : (i % 2 ? 127 : -127));
      x.s = x.d * static_cast<float>(sum);
    }
  for (const GgmlType type : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0}) {
    const auto& traits = traits_of(type);
    std::vector<uint8_t> bytes(rows * ggml_row_bytes(type, cols));
    for (int64_t blk = 0; blk < rows * 2; ++blk) {
      uint8_t* p = bytes.data() + blk * traits.block_bytes;
      put_half(p, 0.25f);
      if (type == GgmlType::Q4_1) put_half(p + 2, -1.5f);
      const size_t quants = type == GgmlType::Q4_1 ? 4 : 2;
      for (size_t i = quants; i < traits.block_bytes; ++i)
        p[i] = type == GgmlType::Q8_0 ? (blk % 3 == 0 ? 0x80 : (i % 2 ? 0x80 : 0x7F)) : 0xFF;
    }
    const WeightView plain{type, bytes.data(), rows, cols, ggml_row_bytes(type, cols)};
    const PackedMatrix packed = pack(plain);
    WeightView w = plain;
    w.packed = &packed;
    std::vector<double> ref, magnitude;
    reference(plain, xq, 2, ref, magnitude);
    for (KernelIsa isa : available_isas()) {
      const std::vector<float> out = run(isa, w, xq.data(), 2, rows, 0, rows);
      for (int64_t i = 0; i < 2 * rows; ++i)
        ASSERT_NEAR(out[i], ref[i], kRelTolerance * magnitude[i])
            << traits.name << " " << to_string(isa) << " index " << i;
    }
  }
}

TEST(PackedMatmul, NoTokensOrNoRowsWriteNothing) {
  std::mt19937 rng(3);
  Matrix m = quantized_matrix(GgmlType::Q4_1, 20, 64, rng);
  const PackedMatrix packed = pack(m.view);
  WeightView w = m.view;
  w.packed = &packed;
  const std::vector<BlockQ8> xq = quantized_inputs(1, 64, rng);
  for (KernelIsa isa : available_isas()) {
    std::vector<float> out(20, -7.0f);
    matmul_with_isa(isa, w, nullptr, xq.data(), 0, out.data(), 20, 0, 20);
    matmul_with_isa(isa, w, nullptr, xq.data(), 1, out.data(), 20, 16, 16);
    for (const float v : out) ASSERT_EQ(v, -7.0f) << to_string(isa);
  }
}

}  // namespace
}  // namespace troupe
