#include "gpu/quant.hpp"

#include <immintrin.h>

#include <cmath>
#include <stdexcept>
#include <string>

namespace troupe {

float fp16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exponent = (h >> 10) & 0x1F;
  uint32_t mantissa = h & 0x3FF;
  uint32_t bits;
  if (exponent == 0x1F) {
    bits = sign | 0x7F800000u | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {  // subnormal half: normalise
    uint32_t e = 113;
    while ((mantissa & 0x400) == 0) {
      mantissa <<= 1;
      --e;
    }
    bits = sign | (e << 23) | ((mantissa & 0x3FF) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

uint16_t float_to_fp16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  const uint32_t abs = bits & 0x7FFFFFFF;
  if (abs > 0x7F800000) return sign | 0x7E00 | static_cast<uint16_t>((abs >> 13) & 0x1FF);
  if (abs >= 0x477FF000) return sign | 0x7C00;  // rounds to >= 65520: inf
  if (abs >= 0x38800000) {                       // normal half
    const uint32_t rounded = abs + 0xFFF + ((abs >> 13) & 1);
    return sign | static_cast<uint16_t>((rounded - 0x38000000) >> 13);
  }
  if (abs < 0x33000000) return sign;  // below half the smallest subnormal
  // Subnormal half: value = m * 2^-24 with m = round(significand >> shift).
  const uint32_t exponent = abs >> 23;
  const uint32_t significand = (abs & 0x7FFFFF) | 0x800000;
  const uint32_t shift = 126 - exponent;  // 14..24
  const uint32_t halfway = 1u << (shift - 1);
  const uint32_t remainder = significand & ((1u << shift) - 1);
  uint32_t m = significand >> shift;
  if (remainder > halfway || (remainder == halfway && (m & 1))) ++m;
  return sign | static_cast<uint16_t>(m);
}

uint16_t float_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7FFFFFFF) > 0x7F800000) return static_cast<uint16_t>((bits >> 16) | 0x40);
  return static_cast<uint16_t>((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
}

void quantize_row_q8(const float* x, BlockQ8* out, int64_t n) {
  if (n % 32 != 0)
    throw std::invalid_argument("quantize_row_q8: row length " + std::to_string(n) +
                                " is not a multiple of 32");
  const __m256 sign_mask = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < n / 32; ++b) {
    const float* xb = x + b * 32;
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int i = 0; i < 4; ++i) {
      v[i] = _mm256_loadu_ps(xb + 8 * i);
      amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign_mask, v[i]));
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float d = _mm_cvtss_f32(m4) / 127.0f;
    const float inv_d = d != 0.0f ? 1.0f / d : 0.0f;
    const __m256 scale = _mm256_set1_ps(inv_d);
    __m256i sum = _mm256_setzero_si256();
    __m256i q32[4];
    for (int i = 0; i < 4; ++i) {
      const __m256 scaled = _mm256_round_ps(_mm256_mul_ps(v[i], scale),
                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      q32[i] = _mm256_cvtps_epi32(scaled);
      sum = _mm256_add_epi32(sum, q32[i]);
    }
    // Pack 4 x 8 int32 into 32 int8 in element order.
    const __m256i q16a = _mm256_packs_epi32(q32[0], q32[1]);
    const __m256i q16b = _mm256_packs_epi32(q32[2], q32[3]);
    __m256i q8 = _mm256_packs_epi16(q16a, q16b);
    q8 = _mm256_permutevar8x32_epi32(q8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[b].qs), q8);
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
    out[b].d = d;
    out[b].s = d * static_cast<float>(_mm_cvtsi128_si32(s4));
  }
}

namespace {

void dequantize_q4_0(const BlockQ4_0* blocks, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, y += 32) {
    const float d = fp16_to_float(blocks[b].d);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>((blocks[b].qs[j] & 0x0F) - 8);
      y[j + 16] = d * static_cast<float>((blocks[b].qs[j] >> 4) - 8);
    }
  }
}

void dequantize_q4_1(const BlockQ4_1* blocks, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, y += 32) {
    const float d = fp16_to_float(blocks[b].d);
    const float m = fp16_to_float(blocks[b].m);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>(blocks[b].qs[j] & 0x0F) + m;
      y[j + 16] = d * static_cast<float>(blocks[b].qs[j] >> 4) + m;
    }
  }
}

// The 5-bit values of a Q5 block, 0..31, in element order.
void unpack_q5(const uint8_t* qh_bytes, const uint8_t* qs, int q[32]) {
  uint32_t qh;
  std::memcpy(&qh, qh_bytes, sizeof qh);
  for (int j = 0; j < 16; ++j) {
    q[j] = (qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1) << 4);
    q[j + 16] = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
  }
}

void dequantize_q5_0(const BlockQ5_0* blocks, float* y, int64_t nb) {
  int q[32];
  for (int64_t b = 0; b < nb; ++b, y += 32) {
    const float d = fp16_to_float(blocks[b].d);
    unpack_q5(blocks[b].qh, blocks[b].qs, q);
    for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(q[j] - 16);
  }
}

void dequantize_q5_1(const BlockQ5_1* blocks, float* y, int64_t nb) {
  int q[32];
  for (int64_t b = 0; b < nb; ++b, y += 32) {
    const float d = fp16_to_float(blocks[b].d);
    const float m = fp16_to_float(blocks[b].m);
    unpack_q5(blocks[b].qh, blocks[b].qs, q);
    for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(q[j]) + m;
  }
}

void dequantize_q8_0(const BlockQ8_0* blocks, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, y += 32) {
    const float d = fp16_to_float(blocks[b].d);
    for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(blocks[b].qs[j]);
  }
}

void dequantize_q4_k(const BlockQ4_K* blocks, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b) {
    const float d = fp16_to_float(blocks[b].d);
    const float dmin = fp16_to_float(blocks[b].dmin);
    const uint8_t* q = blocks[b].qs;
    for (int chunk = 0; chunk < 4; ++chunk, q += 32) {  // 64 elements: low then high nibbles
      uint8_t sc_lo, m_lo, sc_hi, m_hi;
      unpack_k_scale_min(blocks[b].scales, 2 * chunk, sc_lo, m_lo);
      unpack_k_scale_min(blocks[b].scales, 2 * chunk + 1, sc_hi, m_hi);
      const float d_lo = d * sc_lo, min_lo = dmin * m_lo;
      const float d_hi = d * sc_hi, min_hi = dmin * m_hi;
      for (int l = 0; l < 32; ++l) *y++ = d_lo * static_cast<float>(q[l] & 0x0F) - min_lo;
      for (int l = 0; l < 32; ++l) *y++ = d_hi * static_cast<float>(q[l] >> 4) - min_hi;
    }
  }
}

void dequantize_q5_k(const BlockQ5_K* blocks, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b) {
    const float d = fp16_to_float(blocks[b].d);
    const float dmin = fp16_to_float(blocks[b].dmin);
    const uint8_t* ql = blocks[b].qs;
    const uint8_t* qh = blocks[b].qh;
    for (int chunk = 0; chunk < 4; ++chunk, ql += 32) {
      uint8_t sc_lo, m_lo, sc_hi, m_hi;
      unpack_k_scale_min(blocks[b].scales, 2 * chunk, sc_lo, m_lo);
      unpack_k_scale_min(blocks[b].scales, 2 * chunk + 1, sc_hi, m_hi);
      const float d_lo = d * sc_lo, min_lo = dmin * m_lo;
      const float d_hi = d * sc_hi, min_hi = dmin * m_hi;
      const uint8_t bit_lo = static_cast<uint8_t>(1u << (2 * chunk));
      const uint8_t bit_hi = static_cast<uint8_t>(2u << (2 * chunk));
      for (int l = 0; l < 32; ++l)
        *y++ = d_lo * static_cast<float>((ql[l] & 0x0F) + ((qh[l] & bit_lo) ? 16 : 0)) - min_lo;
      for (int l = 0; l < 32; ++l)
        *y++ = d_hi * static_cast<float>((ql[l] >> 4) + ((qh[l] & bit_hi) ? 16 : 0)) - min_hi;
    }
  }
}

void dequantize_q6_k(const BlockQ6_K* blocks, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b) {
    const float d = fp16_to_float(blocks[b].d);
    const uint8_t* ql = blocks[b].ql;
    const uint8_t* qh = blocks[b].qh;
    const int8_t* sc = blocks[b].scales;
    for (int half = 0; half < 2; ++half, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
        y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
        y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
        y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
      }
    }
  }
}

}  // namespace

void dequantize_row(GgmlType type, const uint8_t* src, float* dst, int64_t n) {
  const GgmlTypeTraits& traits = traits_of(type);
  if (n < 0 || n % traits.block_elems != 0)
    throw std::invalid_argument("dequantize_row: " + std::to_string(n) +
                                " elements is not a whole number of " +
                                std::string(traits.name) + " blocks of " +
                                std::to_string(traits.block_elems));
  const int64_t nb = n / traits.block_elems;
  switch (type) {
    case GgmlType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = fp16_to_float(h);
      }
      return;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = bf16_to_float(h);
      }
      return;
    case GgmlType::Q4_0: return dequantize_q4_0(reinterpret_cast<const BlockQ4_0*>(src), dst, nb);
    case GgmlType::Q4_1: return dequantize_q4_1(reinterpret_cast<const BlockQ4_1*>(src), dst, nb);
    case GgmlType::Q5_0: return dequantize_q5_0(reinterpret_cast<const BlockQ5_0*>(src), dst, nb);
    case GgmlType::Q5_1: return dequantize_q5_1(reinterpret_cast<const BlockQ5_1*>(src), dst, nb);
    case GgmlType::Q8_0: return dequantize_q8_0(reinterpret_cast<const BlockQ8_0*>(src), dst, nb);
    case GgmlType::Q4_K: return dequantize_q4_k(reinterpret_cast<const BlockQ4_K*>(src), dst, nb);
    case GgmlType::Q5_K: return dequantize_q5_k(reinterpret_cast<const BlockQ5_K*>(src), dst, nb);
    case GgmlType::Q6_K: return dequantize_q6_k(reinterpret_cast<const BlockQ6_K*>(src), dst, nb);
    default:
      throw std::invalid_argument("dequantize_row: tensor type " + std::string(traits.name) +
                                  " is not supported (supported: F32, F16, BF16, Q4_0, Q4_1, "
                                  "Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)");
  }
}

}  // namespace troupe
