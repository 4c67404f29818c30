// Block quantization formats and conversions used by the CPU kernels.
// - BlockQ8: the activation format. A row of n floats (n % 32 == 0) becomes n/32 blocks;
//   block b holds qs[i] = round(x[32b+i] / d) with d = max|x| / 127 (so qs in [-127, 127],
//   all zero when the block is zero) and s = d * sum(qs), which lets kernels fold weight
//   offsets and minimums into one multiply per block.
// - dequantize_row: ggml's bit layouts for F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
//   Q4_K, Q5_K, Q6_K (the ggml block structs are mirrored below). Throws
//   std::invalid_argument for another type or a count that is not a whole number of blocks.
// - fp16 / bf16 conversions: round to nearest even; NaN stays NaN, overflow becomes inf.
// All functions are pure: safe from any thread; buffers belong to the caller.
#pragma once

#include <cstdint>
#include <cstring>

#include "model/ggml_types.hpp"

namespace troupe {

struct BlockQ8 {
  float d;
  float s;
  int8_t qs[32];
};
static_assert(sizeof(BlockQ8) == 40);

void quantize_row_q8(const float* x, BlockQ8* out, int64_t n);

void dequantize_row(GgmlType type, const uint8_t* src, float* dst, int64_t n);

float fp16_to_float(uint16_t h);
uint16_t float_to_fp16(float f);

inline float bf16_to_float(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
uint16_t float_to_bf16(float f);

// ggml's block layouts (little-endian; scales are fp16 bit patterns).
struct BlockQ4_0 { uint16_t d; uint8_t qs[16]; };                 // x = d * (q - 8)
struct BlockQ4_1 { uint16_t d; uint16_t m; uint8_t qs[16]; };     // x = d * q + m
struct BlockQ5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; };  // x = d * (q - 16)
struct BlockQ5_1 { uint16_t d; uint16_t m; uint8_t qh[4]; uint8_t qs[16]; };
struct BlockQ8_0 { uint16_t d; int8_t qs[32]; };                  // x = d * q
// K-quants: 256 elements in sub-blocks with 6-bit packed scales (Q4_K/Q5_K: 8 sub-blocks
// of 32, scale and min each; Q6_K: 16 sub-blocks of 16, int8 scales).
struct BlockQ4_K { uint16_t d; uint16_t dmin; uint8_t scales[12]; uint8_t qs[128]; };
struct BlockQ5_K { uint16_t d; uint16_t dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; };
struct BlockQ6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; };

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 &&
              sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_K) == 144 &&
              sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210);

// The 6-bit (scale, min) pair j (0..7) of a Q4_K / Q5_K block's packed scales[12].
inline void unpack_k_scale_min(const uint8_t* scales, int j, uint8_t& scale, uint8_t& min) {
  if (j < 4) {
    scale = scales[j] & 63;
    min = scales[j + 4] & 63;
  } else {
    scale = (scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4);
    min = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
  }
}

}  // namespace troupe
