// Conversions, Q8 activation quantization and dequantization of every supported ggml type
// against hand-built blocks whose values are derived here from the format definitions.
#include "gpu/quant.hpp"

#include <gtest/gtest.h>
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

namespace troupe {
namespace {

uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

float float_of(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

// IEEE binary16 decoded by its definition.
double half_value(uint16_t h) {
  const int sign = (h & 0x8000) ? -1 : 1;
  const int exponent = (h >> 10) & 0x1F;
  const int mantissa = h & 0x3FF;
  if (exponent == 0) return sign * std::ldexp(mantissa, -24);
  if (exponent == 31) return mantissa ? NAN : sign * INFINITY;
  return sign * std::ldexp(1024 + mantissa, exponent - 25);
}

TEST(Fp16, DecodesEveryHalfByDefinition) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const double expected = half_value(static_cast<uint16_t>(h));
    const float got = fp16_to_float(static_cast<uint16_t>(h));
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(got)) << h;
    } else {
      EXPECT_EQ(static_cast<double>(got), expected) << h;
      EXPECT_EQ(std::signbit(got), (h & 0x8000) != 0) << h;
    }
  }
}

TEST(Fp16, EncodingRoundTripsEveryHalf) {
  for (uint32_t h = 0; h < 65536; ++h) {
    if (std::isnan(half_value(static_cast<uint16_t>(h)))) continue;
    EXPECT_EQ(float_to_fp16(fp16_to_float(static_cast<uint16_t>(h))), h);
  }
}

TEST(Fp16, EncodingRoundsToNearestEven) {
  EXPECT_EQ(float_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);  // tie -> even (1.0)
  EXPECT_EQ(float_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);  // tie -> even (up)
  EXPECT_EQ(float_to_fp16(65504.0f), 0x7BFF);
  EXPECT_EQ(float_to_fp16(65519.0f), 0x7BFF);
  EXPECT_EQ(float_to_fp16(65520.0f), 0x7C00);  // rounds past the largest half
  EXPECT_EQ(float_to_fp16(-1e10f), 0xFC00);
  EXPECT_EQ(float_to_fp16(std::ldexp(1.0f, -25)), 0x0000);  // tie between 0 and 2^-24
  EXPECT_EQ(float_to_fp16(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(float_to_fp16(std::ldexp(3.0f, -25)), 0x0002);  // 1.5 * 2^-24: tie -> even
  EXPECT_EQ(float_to_fp16(-0.0f), 0x8000);
  EXPECT_EQ(float_to_fp16(INFINITY), 0x7C00);
  EXPECT_TRUE(std::isnan(fp16_to_float(float_to_fp16(NAN))));
}

TEST(Fp16, EncodingMatchesTheF16cInstruction) {
  std::mt19937 rng(7);
  for (int i = 0; i < 200000; ++i) {
    float f = float_of(static_cast<uint32_t>(rng()));
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_fp16(f), _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT)) << f;
  }
}

TEST(Bf16, ConvertsWithRoundToNearestEven) {
  EXPECT_EQ(bf16_to_float(0x3F80), 1.0f);
  EXPECT_EQ(bf16_to_float(0xC000), -2.0f);
  EXPECT_EQ(float_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(float_to_bf16(float_of(0x3F808000)), 0x3F80);  // tie -> even
  EXPECT_EQ(float_to_bf16(float_of(0x3F818000)), 0x3F82);  // tie -> even (up)
  EXPECT_EQ(float_to_bf16(float_of(0x3F808001)), 0x3F81);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(NAN))));
  std::mt19937 rng(11);
  for (int i = 0; i < 100000; ++i) {
    const float f = float_of(static_cast<uint32_t>(rng()));
    if (!std::isfinite(f) || std::fabs(f) > 3e38f) continue;
    const uint16_t got = float_to_bf16(f);
    const uint16_t down = static_cast<uint16_t>(bits_of(f) >> 16);
    const double lo = bf16_to_float(down), hi = bf16_to_float(static_cast<uint16_t>(down + 1));
    const double dist_lo = std::fabs(f - lo), dist_hi = std::fabs(hi - f);
    const uint16_t nearest =
        dist_lo < dist_hi ? down : dist_hi < dist_lo ? down + 1 : ((down & 1) ? down + 1 : down);
    ASSERT_EQ(got, nearest) << f;
  }
}

TEST(QuantizeQ8, HandBuiltBlock) {
  float x[32];
  for (int i = 0; i < 32; ++i) x[i] = 0.5f * static_cast<float>(i - 16);  // -8 .. 7.5
  x[5] = 12.7f;  // the largest magnitude: d = 0.1
  BlockQ8 q;
  quantize_row_q8(x, &q, 32);
  EXPECT_FLOAT_EQ(q.d, 0.1f);
  EXPECT_EQ(q.qs[5], 127);
  EXPECT_EQ(q.qs[0], -80);   // -8 / 0.1
  EXPECT_EQ(q.qs[17], 5);    // 0.5 / 0.1
  EXPECT_EQ(q.qs[16], 0);
  int sum = 0;
  for (int i = 0; i < 32; ++i) sum += q.qs[i];
  EXPECT_FLOAT_EQ(q.s, q.d * static_cast<float>(sum));
}

TEST(QuantizeQ8, ZeroBlockAndRandomRowsStayWithinHalfAStep) {
  std::vector<float> x(32 * 7, 0.0f);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-4.0f, 4.0f);
  for (size_t i = 32; i < x.size(); ++i) x[i] = dist(rng) * static_cast<float>(i / 32);
  std::vector<BlockQ8> q(7);
  quantize_row_q8(x.data(), q.data(), static_cast<int64_t>(x.size()));
  EXPECT_EQ(q[0].d, 0.0f);
  EXPECT_EQ(q[0].s, 0.0f);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(q[0].qs[i], 0);
  for (int b = 1; b < 7; ++b) {
    float amax = 0.0f;
    int max_q = 0, sum = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[32 * b + i]));
    EXPECT_FLOAT_EQ(q[b].d, amax / 127.0f);
    for (int i = 0; i < 32; ++i) {
      EXPECT_LE(std::fabs(q[b].qs[i] * q[b].d - x[32 * b + i]), 0.5f * q[b].d * 1.0001f);
      max_q = std::max(max_q, std::abs(static_cast<int>(q[b].qs[i])));
      sum += q[b].qs[i];
    }
    EXPECT_EQ(max_q, 127);
    EXPECT_FLOAT_EQ(q[b].s, q[b].d * static_cast<float>(sum));
  }
}

TEST(QuantizeQ8, RejectsPartialBlocks) {
  std::vector<float> x(48, 1.0f);
  std::vector<BlockQ8> q(2);
  EXPECT_THROW(quantize_row_q8(x.data(), q.data(), 48), std::invalid_argument);
}

template <class Block>
std::vector<float> dequantize(GgmlType type, const std::vector<Block>& blocks, int per_block) {
  std::vector<float> y(blocks.size() * per_block);
  dequantize_row(type, reinterpret_cast<const uint8_t*>(blocks.data()), y.data(),
                 static_cast<int64_t>(y.size()));
  return y;
}

constexpr uint16_t kHalf = 0x3800;     // 0.5
constexpr uint16_t kQuarter = 0x3400;  // 0.25
constexpr uint16_t kMinusOne = 0xBC00;
constexpr uint16_t kOne = 0x3C00;
constexpr uint16_t kTwo = 0x4000;

TEST(Dequantize, Q4_0) {
  BlockQ4_0 b{kHalf, {}};
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  const auto y = dequantize(GgmlType::Q4_0, std::vector{b}, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 0.5f * (j - 8)) << j;
    EXPECT_EQ(y[j + 16], 0.5f * (7 - j)) << j;
  }
}

TEST(Dequantize, Q4_1) {
  BlockQ4_1 b{kQuarter, kMinusOne, {}};
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  const auto y = dequantize(GgmlType::Q4_1, std::vector{b, b}, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 0.25f * j - 1.0f);
    EXPECT_EQ(y[j + 16], 0.25f * (15 - j) - 1.0f);
    EXPECT_EQ(y[32 + j], y[j]);
  }
}

// High bit of element i is bit i of qh (elements 0..15 low nibbles, 16..31 high nibbles).
constexpr uint32_t kHighBits = 0xF0A5C3E1u;
bool high_bit(int i) { return (kHighBits >> i) & 1; }

TEST(Dequantize, Q5_0) {
  BlockQ5_0 b{kOne, {}, {}};
  std::memcpy(b.qh, &kHighBits, 4);
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(((j * 3) & 15) | (((j * 5) & 15) << 4));
  const auto y = dequantize(GgmlType::Q5_0, std::vector{b}, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], static_cast<float>(((j * 3) & 15) + 16 * high_bit(j) - 16)) << j;
    EXPECT_EQ(y[j + 16], static_cast<float>(((j * 5) & 15) + 16 * high_bit(j + 16) - 16)) << j;
  }
}

TEST(Dequantize, Q5_1) {
  BlockQ5_1 b{kHalf, kTwo, {}, {}};
  std::memcpy(b.qh, &kHighBits, 4);
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(((j * 7) & 15) | (j << 4));
  const auto y = dequantize(GgmlType::Q5_1, std::vector{b}, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 0.5f * (((j * 7) & 15) + 16 * high_bit(j)) + 2.0f) << j;
    EXPECT_EQ(y[j + 16], 0.5f * (j + 16 * high_bit(j + 16)) + 2.0f) << j;
  }
}

TEST(Dequantize, Q8_0) {
  BlockQ8_0 b{kQuarter, {}};
  for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<int8_t>(j * 8 - 128);
  const auto y = dequantize(GgmlType::Q8_0, std::vector{b}, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], 0.25f * (j * 8 - 128));
}

TEST(Dequantize, FloatTypes) {
  const std::vector<float> f32{1.5f, -2.25f, 0.0f};
  std::vector<float> y(3);
  dequantize_row(GgmlType::F32, reinterpret_cast<const uint8_t*>(f32.data()), y.data(), 3);
  EXPECT_EQ(y, f32);
  const std::vector<uint16_t> f16{kHalf, kMinusOne, 0x7BFF};
  dequantize_row(GgmlType::F16, reinterpret_cast<const uint8_t*>(f16.data()), y.data(), 3);
  EXPECT_EQ(y, (std::vector<float>{0.5f, -1.0f, 65504.0f}));
  const std::vector<uint16_t> bf16{0x3F80, 0xC040, 0x4120};
  dequantize_row(GgmlType::BF16, reinterpret_cast<const uint8_t*>(bf16.data()), y.data(), 3);
  EXPECT_EQ(y, (std::vector<float>{1.0f, -3.0f, 10.0f}));
}

// Packs 8 (scale, min) 6-bit pairs the way Q4_K / Q5_K store them: pairs 0..3 in the low 6
// bits of bytes 0..3 (scales) and 4..7 (mins); pairs 4..7 as nibbles in bytes 8..11 with
// their top 2 bits in the top bits of bytes 0..3 (scales) and 4..7 (mins).
void pack_k_scales(const int sc[8], const int mn[8], uint8_t out[12]) {
  std::memset(out, 0, 12);
  for (int j = 0; j < 4; ++j) {
    out[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    out[j + 4] = static_cast<uint8_t>(mn[j] | ((mn[j + 4] >> 4) << 6));
    out[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
  }
}

const int kScales[8] = {1, 63, 17, 40, 5, 33, 62, 48};
const int kMins[8] = {0, 2, 63, 31, 50, 16, 7, 61};

TEST(Dequantize, Q4_K) {
  BlockQ4_K b{kHalf, kQuarter, {}, {}};
  pack_k_scales(kScales, kMins, b.scales);
  for (int i = 0; i < 128; ++i) b.qs[i] = static_cast<uint8_t>((i * 37 + 11) & 0xFF);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, mn;
    unpack_k_scale_min(b.scales, j, sc, mn);
    EXPECT_EQ(sc, kScales[j]);
    EXPECT_EQ(mn, kMins[j]);
  }
  const auto y = dequantize(GgmlType::Q4_K, std::vector{b}, 256);
  // Sub-block s (32 elements): chunk s/2 of 32 bytes, low nibbles for even s, high for odd.
  for (int s = 0; s < 8; ++s)
    for (int l = 0; l < 32; ++l) {
      const uint8_t byte = b.qs[32 * (s / 2) + l];
      const int q = (s % 2 == 0) ? (byte & 15) : (byte >> 4);
      EXPECT_FLOAT_EQ(y[32 * s + l], 0.5f * kScales[s] * q - 0.25f * kMins[s]) << s << " " << l;
    }
}

TEST(Dequantize, Q5_K) {
  BlockQ5_K b{kQuarter, kHalf, {}, {}, {}};
  pack_k_scales(kScales, kMins, b.scales);
  for (int i = 0; i < 128; ++i) b.qs[i] = static_cast<uint8_t>((i * 53 + 5) & 0xFF);
  for (int i = 0; i < 32; ++i) b.qh[i] = static_cast<uint8_t>((i * 97 + 3) & 0xFF);
  const auto y = dequantize(GgmlType::Q5_K, std::vector{b}, 256);
  // Element l of sub-block s takes its fifth bit from bit s of qh[l].
  for (int s = 0; s < 8; ++s)
    for (int l = 0; l < 32; ++l) {
      const uint8_t byte = b.qs[32 * (s / 2) + l];
      const int q = ((s % 2 == 0) ? (byte & 15) : (byte >> 4)) + 16 * ((b.qh[l] >> s) & 1);
      EXPECT_FLOAT_EQ(y[32 * s + l], 0.25f * kScales[s] * q - 0.5f * kMins[s]) << s << " " << l;
    }
}

TEST(Dequantize, Q6_K) {
  BlockQ6_K b{};
  for (int i = 0; i < 128; ++i) b.ql[i] = static_cast<uint8_t>((i * 29 + 7) & 0xFF);
  for (int i = 0; i < 64; ++i) b.qh[i] = static_cast<uint8_t>((i * 71 + 13) & 0xFF);
  for (int i = 0; i < 16; ++i) b.scales[i] = static_cast<int8_t>(i * 17 - 128);
  b.d = kHalf;
  const auto y = dequantize(GgmlType::Q6_K, std::vector{b}, 256);
  // Element e: half h = e / 128, within it quarter k = (e % 128) / 32 and l = e % 32.
  // Low 4 bits: ql[64h + l + 32 (k odd)], low nibble for k < 2, high for k >= 2.
  // High 2 bits: bits 2k..2k+1 of qh[32h + l]. Scale: scales[8h + 2k + l / 16].
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128, k = (e % 128) / 32, l = e % 32;
    const uint8_t low_byte = b.ql[64 * h + l + 32 * (k % 2)];
    const int low = k < 2 ? (low_byte & 15) : (low_byte >> 4);
    const int high = (b.qh[32 * h + l] >> (2 * k)) & 3;
    const int q = (low | (high << 4)) - 32;
    const int scale = b.scales[8 * h + 2 * k + l / 16];
    EXPECT_FLOAT_EQ(y[e], 0.5f * scale * q) << e;
  }
}

TEST(Dequantize, RejectsPartialBlocksAndUnsupportedTypes) {
  std::vector<uint8_t> src(1024);
  std::vector<float> dst(512);
  EXPECT_THROW(dequantize_row(GgmlType::Q4_0, src.data(), dst.data(), 48), std::invalid_argument);
  EXPECT_THROW(dequantize_row(GgmlType::Q6_K, src.data(), dst.data(), 128), std::invalid_argument);
  EXPECT_THROW(dequantize_row(GgmlType::Q8_1, src.data(), dst.data(), 32), std::invalid_argument);
  EXPECT_THROW(dequantize_row(GgmlType::Q2_K, src.data(), dst.data(), 256), std::invalid_argument);
}

}  // namespace
}  // namespace troupe
