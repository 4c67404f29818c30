// matmul against a double-precision reference built from dequantize_row (tested on its own
// against hand-built blocks), for every weight type, every kernel set the CPU has, several
// shapes, 1..9 tokens and odd row ranges. Tolerance: |got - ref| <= 2e-5 * sum_i |w_i x_i|
// (float accumulation over a few thousand terms stays far below that; a wrong block, scale or
// offset is off by whole multiples of a weight).
#include "gpu/matmul.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace troupe {
namespace {

constexpr double kRelTolerance = 2e-5;

std::vector<KernelIsa> available_isas() {
  std::vector<KernelIsa> isas{KernelIsa::scalar};
  if (best_supported_isa() >= KernelIsa::avx2) isas.push_back(KernelIsa::avx2);
  if (best_supported_isa() >= KernelIsa::avx512) isas.push_back(KernelIsa::avx512);
  return isas;
}

void put_half(uint8_t* p, float f) {
  const uint16_t h = float_to_fp16(f);
  std::memcpy(p, &h, 2);
}

// Random but well-formed rows: random quant bytes, finite small fp16 scales.
std::vector<uint8_t> random_weights(GgmlType type, int64_t rows, int64_t cols, std::mt19937& rng) {
  const auto& traits = traits_of(type);
  const size_t row_bytes = ggml_row_bytes(type, cols);
  std::vector<uint8_t> data(rows * row_bytes);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  std::uniform_real_distribution<float> scale(0.002f, 0.05f);
  for (auto& b : data) b = static_cast<uint8_t>(byte(rng));
  if (type == GgmlType::F32) {
    for (int64_t i = 0; i < rows * cols; ++i) {
      const float f = value(rng);
      std::memcpy(data.data() + 4 * i, &f, 4);
    }
    return data;
  }
  if (type == GgmlType::F16 || type == GgmlType::BF16) {
    for (int64_t i = 0; i < rows * cols; ++i) {
      const uint16_t h = type == GgmlType::F16 ? float_to_fp16(value(rng)) : float_to_bf16(value(rng));
      std::memcpy(data.data() + 2 * i, &h, 2);
    }
    return data;
  }
  const int64_t n_blocks = rows * cols / traits.block_elems;
  for (int64_t b = 0; b < n_blocks; ++b) {
    uint8_t* blk = data.data() + b * traits.block_bytes;
    switch (type) {
      case GgmlType::Q4_0: case GgmlType::Q5_0: case GgmlType::Q8_0:
        put_half(blk, scale(rng) * (byte(rng) & 1 ? 1.0f : -1.0f));
        break;
      case GgmlType::Q4_1: case GgmlType::Q5_1:
        put_half(blk, scale(rng));
        put_half(blk + 2, value(rng) * 0.2f);
        break;
      case GgmlType::Q4_K: case GgmlType::Q5_K:
        put_half(blk, scale(rng) * 0.1f);
        put_half(blk + 2, scale(rng) * 0.1f);
        break;
      case GgmlType::Q6_K:
        put_half(blk + 208, scale(rng) * 0.05f);
        break;
      default:
        break;
    }
  }
  return data;
}

struct Inputs {
  std::vector<float> x;
  std::vector<BlockQ8> xq;
};

Inputs random_inputs(int64_t n_tokens, int64_t cols, std::mt19937& rng) {
  std::uniform_real_distribution<float> value(-2.0f, 2.0f);
  Inputs in;
  in.x.resize(n_tokens * cols);
  for (auto& v : in.x) v = value(rng);
  if (cols % 32 == 0) {
    in.xq.resize(n_tokens * cols / 32);
    for (int64_t t = 0; t < n_tokens; ++t)
      quantize_row_q8(in.x.data() + t * cols, in.xq.data() + t * cols / 32, cols);
  }
  return in;
}

// ref[t * rows + r] and the error scale sum |w_i x_i| for each, in double.
void reference(const WeightView& w, const Inputs& in, int64_t n_tokens,
               std::vector<double>& ref, std::vector<double>& magnitude) {
  ref.assign(n_tokens * w.rows, 0.0);
  magnitude.assign(n_tokens * w.rows, 0.0);
  std::vector<float> row(w.cols), xt(w.cols);
  for (int64_t r = 0; r < w.rows; ++r) {
    dequantize_row(w.type, w.data + r * w.row_bytes, row.data(), w.cols);
    for (int64_t t = 0; t < n_tokens; ++t) {
      for (int64_t i = 0; i < w.cols; ++i) {
        if (matmul_uses_q8(w.type)) {
          const BlockQ8& b = in.xq[(t * w.cols + i) / 32];
          xt[i] = b.d * static_cast<float>(b.qs[i % 32]);
        } else {
          xt[i] = in.x[t * w.cols + i];
        }
      }
      double sum = 0.0, mag = 0.0;
      for (int64_t i = 0; i < w.cols; ++i) {
        sum += static_cast<double>(row[i]) * xt[i];
        mag += std::fabs(static_cast<double>(row[i]) * xt[i]);
      }
      ref[t * w.rows + r] = sum;
      magnitude[t * w.rows + r] = mag;
    }
  }
}

struct Shape {
  int64_t rows;
  int64_t cols;
};

std::vector<Shape> shapes_for(GgmlType type) {
  const auto& traits = traits_of(type);
  if (traits.block_elems == 256) return {{7, 256}, {9, 768}};
  if (traits.quantized) return {{13, 32}, {9, 96}, {6, 576}, {11, 160}};
  return {{13, 37}, {6, 64}, {9, 100}, {5, 7}};
}

class MatmulTypes : public ::testing::TestWithParam<GgmlType> {};

TEST_P(MatmulTypes, MatchesReferenceForEveryKernelSetShapeAndBatch) {
  const GgmlType type = GetParam();
  std::mt19937 rng(static_cast<uint32_t>(type) * 7919 + 1);
  for (const Shape& shape : shapes_for(type)) {
    const auto data = random_weights(type, shape.rows, shape.cols, rng);
    const WeightView w{type, data.data(), shape.rows, shape.cols, ggml_row_bytes(type, shape.cols)};
    const int64_t max_tokens = 9;
    const Inputs in = random_inputs(max_tokens, shape.cols, rng);
    std::vector<double> ref, magnitude;
    reference(w, in, max_tokens, ref, magnitude);
    for (KernelIsa isa : available_isas()) {
      for (int64_t n_tokens = 1; n_tokens <= max_tokens; ++n_tokens) {
        std::vector<float> out(n_tokens * w.rows, NAN);
        matmul_with_isa(isa, w, in.x.data(), in.xq.data(), n_tokens, out.data(), w.rows, 0, w.rows);
        for (int64_t t = 0; t < n_tokens; ++t)
          for (int64_t r = 0; r < w.rows; ++r) {
            const double expected = ref[t * w.rows + r];
            const double tolerance = kRelTolerance * magnitude[t * w.rows + r] + 1e-7;
            ASSERT_NEAR(out[t * w.rows + r], expected, tolerance)
                << to_string(isa) << " rows " << w.rows << " cols " << w.cols << " n_tokens "
                << n_tokens << " t " << t << " r " << r;
          }
      }
    }
  }
}

// Any row range, any batch size and any position in the batch give bit-identical values.
TEST_P(MatmulTypes, ResultsDoNotDependOnRowRangeOrBatch) {
  const GgmlType type = GetParam();
  std::mt19937 rng(static_cast<uint32_t>(type) + 99);
  const Shape shape = shapes_for(type)[1];
  const auto data = random_weights(type, shape.rows, shape.cols, rng);
  const WeightView w{type, data.data(), shape.rows, shape.cols, ggml_row_bytes(type, shape.cols)};
  const int64_t n_tokens = 7;
  const Inputs in = random_inputs(n_tokens, shape.cols, rng);
  const int64_t stride = w.rows + 3;
  for (KernelIsa isa : available_isas()) {
    std::vector<float> full(n_tokens * stride, NAN);
    matmul_with_isa(isa, w, in.x.data(), in.xq.data(), n_tokens, full.data(), stride, 0, w.rows);
    // Odd pieces, as threads with different counts would take them.
    for (const auto& cuts : std::vector<std::vector<int64_t>>{{0, 1, 4, w.rows}, {0, 3, 5, 6, w.rows}}) {
      std::vector<float> pieces(n_tokens * stride, -7.0f);
      for (size_t i = 0; i + 1 < cuts.size(); ++i)
        matmul_with_isa(isa, w, in.x.data(), in.xq.data(), n_tokens, pieces.data(), stride, cuts[i],
                        cuts[i + 1]);
      for (int64_t t = 0; t < n_tokens; ++t) {
        for (int64_t r = 0; r < w.rows; ++r)
          ASSERT_EQ(std::memcmp(&pieces[t * stride + r], &full[t * stride + r], 4), 0)
              << to_string(isa) << " t " << t << " r " << r;
        for (int64_t r = w.rows; r < stride; ++r) ASSERT_EQ(pieces[t * stride + r], -7.0f);
      }
    }
    // Each token alone, and a sub-range of rows that leaves the rest untouched.
    for (int64_t t = 0; t < n_tokens; ++t) {
      std::vector<float> single(w.rows, -7.0f);
      const BlockQ8* xq = in.xq.empty() ? nullptr : in.xq.data() + t * shape.cols / 32;
      matmul_with_isa(isa, w, in.x.data() + t * shape.cols, xq, 1, single.data(), w.rows, 2,
                      w.rows - 1);
      for (int64_t r = 0; r < w.rows; ++r) {
        if (r < 2 || r == w.rows - 1)
          ASSERT_EQ(single[r], -7.0f);
        else
          ASSERT_EQ(std::memcmp(&single[r], &full[t * stride + r], 4), 0)
              << to_string(isa) << " t " << t << " r " << r;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, MatmulTypes,
                         ::testing::Values(GgmlType::F32, GgmlType::F16, GgmlType::BF16,
                                           GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0,
                                           GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q4_K,
                                           GgmlType::Q5_K, GgmlType::Q6_K),
                         [](const auto& info) { return std::string(traits_of(info.param).name); });

TEST(CpuFeatures, KernelNamesAndTheEnvironmentCap) {
  EXPECT_EQ(parse_kernel_isa("scalar"), KernelIsa::scalar);
  EXPECT_EQ(parse_kernel_isa("avx2"), KernelIsa::avx2);
  EXPECT_EQ(parse_kernel_isa("avx512"), KernelIsa::avx512);
  EXPECT_THROW(parse_kernel_isa("sse4"), std::invalid_argument);
  EXPECT_EQ(to_string(KernelIsa::avx2), "avx2");
  ::setenv("TROUPE_CPU_KERNELS", "scalar", 1);
  EXPECT_EQ(active_isa(), KernelIsa::scalar);
  ::setenv("TROUPE_CPU_KERNELS", "avx512", 1);
  EXPECT_EQ(active_isa(), best_supported_isa());  // never more than the CPU has
  ::setenv("TROUPE_CPU_KERNELS", "fast", 1);
  EXPECT_THROW(active_isa(), std::invalid_argument);
  ::unsetenv("TROUPE_CPU_KERNELS");
  EXPECT_EQ(active_isa(), best_supported_isa());
}

TEST(Matmul, SaysWhichInputEachTypeReads) {
  EXPECT_TRUE(matmul_uses_q8(GgmlType::Q4_1));
  EXPECT_TRUE(matmul_uses_q8(GgmlType::Q8_0));
  EXPECT_FALSE(matmul_uses_q8(GgmlType::F16));
  EXPECT_FALSE(matmul_uses_q8(GgmlType::Q6_K));
  EXPECT_TRUE(matmul_supports(GgmlType::BF16));
  EXPECT_FALSE(matmul_supports(GgmlType::Q8_1));
}

TEST(Matmul, RejectsBadArguments) {
  std::vector<uint8_t> data(4096);
  std::vector<float> x(256), out(64);
  std::vector<BlockQ8> xq(8);
  const WeightView q4{GgmlType::Q4_0, data.data(), 4, 64, ggml_row_bytes(GgmlType::Q4_0, 64)};
  EXPECT_THROW(matmul(q4, x.data(), nullptr, 1, out.data(), 4, 0, 4), std::invalid_argument);
  EXPECT_THROW(matmul(q4, x.data(), xq.data(), 1, out.data(), 4, 0, 5), std::invalid_argument);
  EXPECT_THROW(matmul(q4, x.data(), xq.data(), 1, out.data(), 4, 3, 2), std::invalid_argument);
  EXPECT_THROW(matmul(q4, x.data(), xq.data(), 1, out.data(), 3, 0, 4), std::invalid_argument);
  const WeightView partial{GgmlType::Q4_0, data.data(), 4, 48, 27};
  EXPECT_THROW(matmul(partial, x.data(), xq.data(), 1, out.data(), 4, 0, 4), std::invalid_argument);
  const WeightView short_rows{GgmlType::Q4_0, data.data(), 4, 64, 20};
  EXPECT_THROW(matmul(short_rows, x.data(), xq.data(), 1, out.data(), 4, 0, 4), std::invalid_argument);
  const WeightView unsupported{GgmlType::Q8_1, data.data(), 4, 64, 72};
  EXPECT_THROW(matmul(unsupported, x.data(), xq.data(), 1, out.data(), 4, 0, 4), std::invalid_argument);
  const WeightView f16{GgmlType::F16, data.data(), 4, 64, 128};
  EXPECT_THROW(matmul(f16, nullptr, xq.data(), 1, out.data(), 4, 0, 4), std::invalid_argument);
}

}  // namespace
}  // namespace troupe
