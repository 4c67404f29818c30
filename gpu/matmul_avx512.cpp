// AVX-512 VNNI kernels (compiled with -mavx512f/bw/vl/dq/vnni; called only after the run-time
// check). Quantized weights: two 32-element blocks per step in one zmm, vpdpbusd (u8 x s8,
// summed into i32 without saturation), scaled per block by d_w * d_x in float. Weights are
// made unsigned (Q4: as stored; Q5: as stored; Q8_0: + 128) and the offsets (8, 16, 128)
// are subtracted as offset * sum(x_q) in integers; Q4_1 / Q5_1 minimums add m * s_x.
// An odd last block is paired with a zero block. Float weights: 16 lanes, masked tail.
// GCC 12 warns inside its own AVX-512 headers (the _mm512_undefined_* idiom, GCC PR105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <cstring>

#include "gpu/matmul_kernels.hpp"

namespace troupe::matmul_detail {

namespace {

// Sum of the 16 lanes in a fixed order.
inline float hsum(__m512 v) {
  const __m512 high = _mm512_maskz_shuffle_f32x4(0xFFFF, v, v, 0xEE);
  const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_castps512_ps256(high));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline __m512 half16_to_float(__m256i h) { return _mm512_maskz_cvtph_ps(0xFFFF, h); }

// d (and m, for kinds with a minimum) of two blocks as [b0 x 8 lanes, b1 x 8 lanes]; the
// fp16 fields of each block are its first 4 bytes (d, then m or quant bytes). b1 may be null.
template <bool kMin>
inline void scales_pair(const uint8_t* b0, const uint8_t* b1, __m512& d, __m512& m) {
  int32_t first = 0, second = 0;
  std::memcpy(&first, b0, 4);
  if (b1) std::memcpy(&second, b1, 4);
  const __m512 halves = _mm512_castps128_ps512(
      _mm_cvtph_ps(_mm_insert_epi32(_mm_cvtsi32_si128(first), second, 1)));
  d = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2), halves);
  if constexpr (kMin)
    m = _mm512_permutexvar_ps(_mm512_setr_epi32(1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3), halves);
}

// Packed nibbles of two blocks -> 64 bytes: block 0 low, block 0 high, block 1 low, block 1 high.
inline __m512i unpack_nibbles_pair(const uint8_t* qs0, const uint8_t* qs1) {
  const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs0));
  const __m128i b = qs1 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs1)) : _mm_setzero_si128();
  const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_broadcastsi128_si256(a)),
                                          _mm256_broadcastsi128_si256(b), 1);
  const __m512i shifted = _mm512_srlv_epi64(both, _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4));
  return _mm512_and_si512(shifted, _mm512_set1_epi8(0x0F));
}

inline __m512i high_bits_pair(const uint8_t* qh0, const uint8_t* qh1) {
  uint32_t lo = 0, hi = 0;
  std::memcpy(&lo, qh0, 4);
  if (qh1) std::memcpy(&hi, qh1, 4);
  const __mmask64 mask = static_cast<__mmask64>(lo) | (static_cast<__mmask64>(hi) << 32);
  return _mm512_maskz_mov_epi8(mask, _mm512_set1_epi8(0x10));
}

// Each kind: bytes per block, the integer offset subtracted from its unsigned values, whether
// it has a float minimum (fp16 at byte 2), and weights(b0, b1) -> the 64 unsigned weights
// (b1 may be null).
struct Q4_0Kind {
  static constexpr size_t kBytes = 18;
  static constexpr int kOffset = 8;
  static constexpr bool kMin = false;
  static __m512i weights(const uint8_t* b0, const uint8_t* b1) {
    return unpack_nibbles_pair(b0 + 2, b1 ? b1 + 2 : nullptr);
  }
};
struct Q4_1Kind {
  static constexpr size_t kBytes = 20;
  static constexpr int kOffset = 0;
  static constexpr bool kMin = true;
  static __m512i weights(const uint8_t* b0, const uint8_t* b1) {
    return unpack_nibbles_pair(b0 + 4, b1 ? b1 + 4 : nullptr);
  }
};
struct Q5_0Kind {
  static constexpr size_t kBytes = 22;
  static constexpr int kOffset = 16;
  static constexpr bool kMin = false;
  static __m512i weights(const uint8_t* b0, const uint8_t* b1) {
    return _mm512_or_si512(unpack_nibbles_pair(b0 + 6, b1 ? b1 + 6 : nullptr),
                           high_bits_pair(b0 + 2, b1 ? b1 + 2 : nullptr));
  }
};
struct Q5_1Kind {
  static constexpr size_t kBytes = 24;
  static constexpr int kOffset = 0;
  static constexpr bool kMin = true;
  static __m512i weights(const uint8_t* b0, const uint8_t* b1) {
    return _mm512_or_si512(unpack_nibbles_pair(b0 + 8, b1 ? b1 + 8 : nullptr),
                           high_bits_pair(b0 + 4, b1 ? b1 + 4 : nullptr));
  }
};
struct Q8_0Kind {
  static constexpr size_t kBytes = 34;
  static constexpr int kOffset = 128;
  static constexpr bool kMin = false;
  static __m512i weights(const uint8_t* b0, const uint8_t* b1) {
    const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b0 + 2));
    const __m256i hi = b1 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b1 + 2))
                          : _mm256_set1_epi8(static_cast<char>(0x80));
    return _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1),
                            _mm512_set1_epi8(static_cast<char>(0x80)));
  }
};

// Two Q8 activation blocks laid out for the kernel: d broadcast per block, and in aux lanes
// 0 and 8 either offset * sum(qs) (int32) or s (float); other lanes 0. A missing second
// block is all zeros.
struct alignas(64) XUnit {
  int8_t qs[64];
  float d[16];
  int32_t aux[16];
};

template <class K>
void repack_activations(const BlockQ8* xq, int64_t n_tokens, int64_t nb, XUnit* units) {
  const int64_t n_pairs = (nb + 1) / 2;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const BlockQ8* row = xq + t * nb;
    for (int64_t p = 0; p < n_pairs; ++p) {
      XUnit& u = units[t * n_pairs + p];
      std::memset(&u, 0, sizeof u);
      for (int half = 0; half < 2; ++half) {
        const int64_t b = 2 * p + half;
        if (b >= nb) break;
        std::memcpy(u.qs + 32 * half, row[b].qs, 32);
        for (int i = 0; i < 8; ++i) u.d[8 * half + i] = row[b].d;
        if constexpr (K::kOffset != 0) {
          int32_t sum = 0;
          for (int i = 0; i < 32; ++i) sum += row[b].qs[i];
          u.aux[8 * half] = K::kOffset * sum;
        } else if constexpr (K::kMin) {
          std::memcpy(&u.aux[8 * half], &row[b].s, 4);
        }
      }
    }
  }
}

template <class K, int R, int T>
void quant_tile(const Job& job, const XUnit* units, int64_t nb, int64_t r0, int64_t t0) {
  const int64_t n_pairs = (nb + 1) / 2;
  const uint8_t* rows[R];
  for (int r = 0; r < R; ++r) rows[r] = job.w.data + (r0 + r) * job.w.row_bytes;
  const XUnit* xs = units + t0 * n_pairs;
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  for (int64_t p = 0; p < n_pairs; ++p) {
    const bool has_second = 2 * p + 1 < nb;
    __m512i wq[R];
    __m512 dw[R], mw[R];
    for (int r = 0; r < R; ++r) {
      const uint8_t* b0 = rows[r] + 2 * p * K::kBytes;
      const uint8_t* b1 = has_second ? b0 + K::kBytes : nullptr;
      wq[r] = K::weights(b0, b1);
      scales_pair<K::kMin>(b0, b1, dw[r], mw[r]);
    }
    for (int t = 0; t < T; ++t) {
      const XUnit& u = xs[t * n_pairs + p];
      const __m512i xv = _mm512_load_si512(u.qs);
      const __m512 dx = _mm512_load_ps(u.d);
      for (int r = 0; r < R; ++r) {
        __m512i isum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq[r], xv);
        if constexpr (K::kOffset != 0) isum = _mm512_sub_epi32(isum, _mm512_load_si512(u.aux));
        acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(dw[r], dx), acc[r][t]);
        if constexpr (K::kMin)
          acc[r][t] = _mm512_fmadd_ps(mw[r], _mm512_castsi512_ps(_mm512_load_si512(u.aux)), acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t)
      job.out[(t0 + t) * job.out_stride + r0 + r] = hsum(acc[r][t]);
}

// A row's pair of blocks unpacked once for a whole batch: unsigned weights, d and m per lane.
struct alignas(64) WUnit {
  uint8_t q[64];
  float d[16];
  float m[16];
};

template <class K>
void unpack_rows(const Job& job, int64_t r0, int n_rows, int64_t nb, WUnit* units) {
  const int64_t n_pairs = (nb + 1) / 2;
  for (int r = 0; r < n_rows; ++r) {
    const uint8_t* row = job.w.data + (r0 + r) * job.w.row_bytes;
    for (int64_t p = 0; p < n_pairs; ++p) {
      const uint8_t* b0 = row + 2 * p * K::kBytes;
      const uint8_t* b1 = 2 * p + 1 < nb ? b0 + K::kBytes : nullptr;
      WUnit& u = units[r * n_pairs + p];
      _mm512_store_si512(u.q, K::weights(b0, b1));
      __m512 d, m;
      scales_pair<K::kMin>(b0, b1, d, m);
      _mm512_store_ps(u.d, d);
      if constexpr (K::kMin) _mm512_store_ps(u.m, m);
    }
  }
}

// Same arithmetic per (row, token) as quant_tile, reading unpacked rows.
template <class K, int R, int T>
void unpacked_tile(const Job& job, const WUnit* rows, const XUnit* units, int64_t nb, int64_t r0,
                   int64_t t0) {
  const int64_t n_pairs = (nb + 1) / 2;
  const XUnit* xs = units + t0 * n_pairs;
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  for (int64_t p = 0; p < n_pairs; ++p) {
    for (int t = 0; t < T; ++t) {
      const XUnit& u = xs[t * n_pairs + p];
      const __m512i xv = _mm512_load_si512(u.qs);
      const __m512 dx = _mm512_load_ps(u.d);
      for (int r = 0; r < R; ++r) {
        const WUnit& w = rows[r * n_pairs + p];
        __m512i isum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_load_si512(w.q), xv);
        if constexpr (K::kOffset != 0) isum = _mm512_sub_epi32(isum, _mm512_load_si512(u.aux));
        acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(_mm512_load_ps(w.d), dx),
                                    acc[r][t]);
        if constexpr (K::kMin)
          acc[r][t] = _mm512_fmadd_ps(_mm512_load_ps(w.m), _mm512_castsi512_ps(_mm512_load_si512(u.aux)),
                                      acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) job.out[(t0 + t) * job.out_stride + r0 + r] = hsum(acc[r][t]);
}

// One token: unpack in registers. Several: unpack each group of rows once, then sweep tokens.
template <class K>
void quant_matmul(const Job& job) {
  const int64_t nb = job.w.cols / 32;
  const int64_t n_pairs = (nb + 1) / 2;
  XUnit* units = reinterpret_cast<XUnit*>(
      thread_scratch(0, static_cast<size_t>(job.n_tokens * n_pairs) * sizeof(XUnit)));
  repack_activations<K>(job.xq, job.n_tokens, nb, units);
  if (job.n_tokens == 1) {
    auto tile = [&]<int R, int T>(int64_t r, int64_t t) { quant_tile<K, R, T>(job, units, nb, r, t); };
    sweep<4, 1>(tile, job.row_begin, job.row_end, job.n_tokens);
    return;
  }
  constexpr int kRows = 4;
  WUnit* rows = reinterpret_cast<WUnit*>(
      thread_scratch(2, static_cast<size_t>(kRows * n_pairs) * sizeof(WUnit)));
  auto group = [&]<int R>(int64_t r0) {
    unpack_rows<K>(job, r0, R, nb, rows);
    auto tile = [&]<int R2, int T>(int64_t r, int64_t t) {
      unpacked_tile<K, R2, T>(job, rows, units, nb, r, t);
    };
    sweep_tokens<R, 4>(tile, r0, job.n_tokens);
  };
  int64_t r = job.row_begin;
  for (; r + kRows <= job.row_end; r += kRows) group.template operator()<kRows>(r);
  for (; r < job.row_end; ++r) group.template operator()<1>(r);
}

struct F32Kind {
  static __m512 load16(const uint8_t* row, int64_t i, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(row) + i);
  }
};
struct F16Kind {
  static __m512 load16(const uint8_t* row, int64_t i, __mmask16 m) {
    return half16_to_float(_mm256_maskz_loadu_epi16(m, row + 2 * i));
  }
};
struct BF16Kind {
  static __m512 load16(const uint8_t* row, int64_t i, __mmask16 m) {
    const __m256i h = _mm256_maskz_loadu_epi16(m, row + 2 * i);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
};

template <class K, int R, int T>
void float_tile(const Job& job, int64_t r0, int64_t t0) {
  const int64_t cols = job.w.cols;
  const uint8_t* rows[R];
  for (int r = 0; r < R; ++r) rows[r] = job.w.data + (r0 + r) * job.w.row_bytes;
  const float* xs = job.x + t0 * cols;
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  for (int64_t i = 0; i < cols; i += 16) {
    const __mmask16 m = cols - i >= 16 ? __mmask16(0xFFFF)
                                       : static_cast<__mmask16>((1u << (cols - i)) - 1);
    __m512 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = K::load16(rows[r], i, m);
    for (int t = 0; t < T; ++t) {
      const __m512 xv = _mm512_maskz_loadu_ps(m, xs + t * cols + i);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t)
      job.out[(t0 + t) * job.out_stride + r0 + r] = hsum(acc[r][t]);
}

template <class K>
void float_matmul(const Job& job) {
  auto tile = [&]<int R, int T>(int64_t r, int64_t t) { float_tile<K, R, T>(job, r, t); };
  if (job.n_tokens == 1)
    sweep<4, 1>(tile, job.row_begin, job.row_end, job.n_tokens);
  else
    sweep<4, 4>(tile, job.row_begin, job.row_end, job.n_tokens);
}

}  // namespace

void run_avx512(const Job& job) {
  switch (job.w.type) {
    case GgmlType::F32: return float_matmul<F32Kind>(job);
    case GgmlType::F16: return float_matmul<F16Kind>(job);
    case GgmlType::BF16: return float_matmul<BF16Kind>(job);
    case GgmlType::Q4_0: return quant_matmul<Q4_0Kind>(job);
    case GgmlType::Q4_1: return quant_matmul<Q4_1Kind>(job);
    case GgmlType::Q5_0: return quant_matmul<Q5_0Kind>(job);
    case GgmlType::Q5_1: return quant_matmul<Q5_1Kind>(job);
    default: return quant_matmul<Q8_0Kind>(job);
  }
}

}  // namespace troupe::matmul_detail
