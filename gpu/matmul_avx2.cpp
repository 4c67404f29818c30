// AVX2 kernels (x86-64-v3 baseline). Quantized weights: one 32-element block per step,
// maddubs (u8 x s8 -> i16 pairs) then madd -> i32, scaled by d_w * d_x in float.
// Weight offsets (Q4_0: 8, Q5_0: 16) are subtracted as offset * sum(x_q) in integers; Q4_1 /
// Q5_1 minimums add m * s_x; Q8_0 is signed x signed through the abs / sign trick.
#include <immintrin.h>

#include <cstring>

#include "gpu/matmul_kernels.hpp"

namespace troupe::matmul_detail {

namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float load_half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// 16 bytes of packed nibbles -> 32 bytes: low nibbles (elements 0..15), then high nibbles.
inline __m256i unpack_nibbles(const uint8_t* qs) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(packed),
                                               _mm_srli_epi16(packed, 4), 1);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// 32 bits of qh -> byte i = 0x10 where bit i is set, else 0.
inline __m256i unpack_high_bits(const uint8_t* qh) {
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(bits)),
      _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202,
                         0x0303030303030303));
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
  return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

struct Q4_0Kind {
  static constexpr size_t kBytes = 18;
  static constexpr int kOffset = 8;
  static constexpr bool kMin = false, kSigned = false;
  static __m256i weights(const uint8_t* b) { return unpack_nibbles(b + 2); }
  static float min(const uint8_t*) { return 0.0f; }
};
struct Q4_1Kind {
  static constexpr size_t kBytes = 20;
  static constexpr int kOffset = 0;
  static constexpr bool kMin = true, kSigned = false;
  static __m256i weights(const uint8_t* b) { return unpack_nibbles(b + 4); }
  static float min(const uint8_t* b) { return load_half(b + 2); }
};
struct Q5_0Kind {
  static constexpr size_t kBytes = 22;
  static constexpr int kOffset = 16;
  static constexpr bool kMin = false, kSigned = false;
  static __m256i weights(const uint8_t* b) {
    return _mm256_or_si256(unpack_nibbles(b + 6), unpack_high_bits(b + 2));
  }
  static float min(const uint8_t*) { return 0.0f; }
};
struct Q5_1Kind {
  static constexpr size_t kBytes = 24;
  static constexpr int kOffset = 0;
  static constexpr bool kMin = true, kSigned = false;
  static __m256i weights(const uint8_t* b) {
    return _mm256_or_si256(unpack_nibbles(b + 8), unpack_high_bits(b + 4));
  }
  static float min(const uint8_t* b) { return load_half(b + 2); }
};
struct Q8_0Kind {
  static constexpr size_t kBytes = 34;
  static constexpr int kOffset = 0;
  static constexpr bool kMin = false, kSigned = true;
  static __m256i weights(const uint8_t* b) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));
  }
  static float min(const uint8_t*) { return 0.0f; }
};

// One Q8 activation block laid out for the kernel: d broadcast, and in aux lane 0 either
// offset * sum(qs) (int32, offset types) or s (float, types with a minimum); other lanes 0.
struct alignas(32) XUnit {
  int8_t qs[32];
  float d[8];
  int32_t aux[8];
};

template <class K>
void repack_activations(const BlockQ8* xq, int64_t n_blocks, XUnit* units) {
  const __m256i ones8 = _mm256_set1_epi8(1);
  const __m256i ones16 = _mm256_set1_epi16(1);
  for (int64_t i = 0; i < n_blocks; ++i) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[i].qs));
    _mm256_store_si256(reinterpret_cast<__m256i*>(units[i].qs), q);
    _mm256_store_ps(units[i].d, _mm256_set1_ps(xq[i].d));
    int32_t lane0 = 0;
    if constexpr (K::kOffset != 0) {
      const __m256i sums = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q), ones16);
      __m128i s = _mm_add_epi32(_mm256_castsi256_si128(sums), _mm256_extracti128_si256(sums, 1));
      s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
      s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
      lane0 = K::kOffset * _mm_cvtsi128_si32(s);
    } else if constexpr (K::kMin) {
      std::memcpy(&lane0, &xq[i].s, 4);
    }
    _mm256_store_si256(reinterpret_cast<__m256i*>(units[i].aux), _mm256_setr_epi32(lane0, 0, 0, 0, 0, 0, 0, 0));
  }
}

template <class K, int R, int T>
void quant_tile(const Job& job, const XUnit* units, int64_t nb, int64_t r0, int64_t t0) {
  const uint8_t* rows[R];
  for (int r = 0; r < R; ++r) rows[r] = job.w.data + (r0 + r) * job.w.row_bytes;
  const XUnit* xs = units + t0 * nb;
  const __m256i ones16 = _mm256_set1_epi16(1);
  __m256 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    __m256i wq[R], wabs[R];
    __m256 dw[R], mw[R];
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = rows[r] + b * K::kBytes;
      wq[r] = K::weights(blk);
      if constexpr (K::kSigned) wabs[r] = _mm256_abs_epi8(wq[r]);
      int32_t fp16_fields;  // d, then m (kinds with a minimum) or quant bytes
      std::memcpy(&fp16_fields, blk, 4);
      const __m128 halves = _mm_cvtph_ps(_mm_cvtsi32_si128(fp16_fields));
      dw[r] = _mm256_broadcastss_ps(halves);
      if constexpr (K::kMin) mw[r] = _mm256_broadcastss_ps(_mm_movehdup_ps(halves));
    }
    for (int t = 0; t < T; ++t) {
      const XUnit& u = xs[t * nb + b];
      const __m256i xv = _mm256_load_si256(reinterpret_cast<const __m256i*>(u.qs));
      const __m256 dx = _mm256_load_ps(u.d);
      for (int r = 0; r < R; ++r) {
        __m256i pairs;
        if constexpr (K::kSigned)
          pairs = _mm256_maddubs_epi16(wabs[r], _mm256_sign_epi8(xv, wq[r]));
        else
          pairs = _mm256_maddubs_epi16(wq[r], xv);
        __m256i isum = _mm256_madd_epi16(pairs, ones16);
        if constexpr (K::kOffset != 0)
          isum = _mm256_sub_epi32(isum, _mm256_load_si256(reinterpret_cast<const __m256i*>(u.aux)));
        acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw[r], dx), acc[r][t]);
        if constexpr (K::kMin)
          acc[r][t] = _mm256_fmadd_ps(mw[r], _mm256_castsi256_ps(_mm256_load_si256(
                                                  reinterpret_cast<const __m256i*>(u.aux))),
                                      acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) job.out[(t0 + t) * job.out_stride + r0 + r] = hsum(acc[r][t]);
}

// A row's block unpacked once for a whole batch: weights (absolute values for signed kinds),
// the signed weights, d and m broadcast.
struct alignas(32) WUnit {
  uint8_t q[32];
  uint8_t sign[32];
  float d[8];
  float m[8];
};

template <class K>
void unpack_rows(const Job& job, int64_t r0, int n_rows, int64_t nb, WUnit* units) {
  for (int r = 0; r < n_rows; ++r) {
    const uint8_t* row = job.w.data + (r0 + r) * job.w.row_bytes;
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = row + b * K::kBytes;
      WUnit& u = units[r * nb + b];
      const __m256i wq = K::weights(blk);
      if constexpr (K::kSigned) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(u.q), _mm256_abs_epi8(wq));
        _mm256_store_si256(reinterpret_cast<__m256i*>(u.sign), wq);
      } else {
        _mm256_store_si256(reinterpret_cast<__m256i*>(u.q), wq);
      }
      _mm256_store_ps(u.d, _mm256_set1_ps(load_half(blk)));
      if constexpr (K::kMin) _mm256_store_ps(u.m, _mm256_set1_ps(K::min(blk)));
    }
  }
}

// Same arithmetic per (row, token) as quant_tile, reading unpacked rows.
template <class K, int R, int T>
void unpacked_tile(const Job& job, const WUnit* rows, const XUnit* units, int64_t nb, int64_t r0,
                   int64_t t0) {
  const XUnit* xs = units + t0 * nb;
  const __m256i ones16 = _mm256_set1_epi16(1);
  __m256 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    for (int t = 0; t < T; ++t) {
      const XUnit& u = xs[t * nb + b];
      const __m256i xv = _mm256_load_si256(reinterpret_cast<const __m256i*>(u.qs));
      const __m256 dx = _mm256_load_ps(u.d);
      for (int r = 0; r < R; ++r) {
        const WUnit& w = rows[r * nb + b];
        const __m256i wq = _mm256_load_si256(reinterpret_cast<const __m256i*>(w.q));
        __m256i pairs;
        if constexpr (K::kSigned)
          pairs = _mm256_maddubs_epi16(
              wq, _mm256_sign_epi8(xv, _mm256_load_si256(reinterpret_cast<const __m256i*>(w.sign))));
        else
          pairs = _mm256_maddubs_epi16(wq, xv);
        __m256i isum = _mm256_madd_epi16(pairs, ones16);
        if constexpr (K::kOffset != 0)
          isum = _mm256_sub_epi32(isum, _mm256_load_si256(reinterpret_cast<const __m256i*>(u.aux)));
        acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(_mm256_load_ps(w.d), dx),
                                    acc[r][t]);
        if constexpr (K::kMin)
          acc[r][t] = _mm256_fmadd_ps(_mm256_load_ps(w.m),
                                      _mm256_castsi256_ps(_mm256_load_si256(
                                          reinterpret_cast<const __m256i*>(u.aux))),
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
  XUnit* units = reinterpret_cast<XUnit*>(
      thread_scratch(0, static_cast<size_t>(job.n_tokens * nb) * sizeof(XUnit)));
  repack_activations<K>(job.xq, job.n_tokens * nb, units);
  if (job.n_tokens == 1) {
    auto tile = [&]<int R, int T>(int64_t r, int64_t t) { quant_tile<K, R, T>(job, units, nb, r, t); };
    sweep<4, 1>(tile, job.row_begin, job.row_end, job.n_tokens);
    return;
  }
  constexpr int kRows = 4;
  WUnit* rows = reinterpret_cast<WUnit*>(
      thread_scratch(2, static_cast<size_t>(kRows * nb) * sizeof(WUnit)));
  auto group = [&]<int R>(int64_t r0) {
    unpack_rows<K>(job, r0, R, nb, rows);
    auto tile = [&]<int R2, int T>(int64_t r, int64_t t) {
      unpacked_tile<K, R2, T>(job, rows, units, nb, r, t);
    };
    sweep_tokens<R, 2>(tile, r0, job.n_tokens);
  };
  int64_t r = job.row_begin;
  for (; r + kRows <= job.row_end; r += kRows) group.template operator()<kRows>(r);
  for (; r < job.row_end; ++r) group.template operator()<1>(r);
}

struct F32Kind {
  static __m256 load8(const uint8_t* row, int64_t i) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + i);
  }
  static float at(const uint8_t* row, int64_t i) {
    float f;
    std::memcpy(&f, row + 4 * i, 4);
    return f;
  }
};
struct F16Kind {
  static __m256 load8(const uint8_t* row, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i)));
  }
  static float at(const uint8_t* row, int64_t i) { return load_half(row + 2 * i); }
};
struct BF16Kind {
  static __m256 load8(const uint8_t* row, int64_t i) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static float at(const uint8_t* row, int64_t i) {
    uint16_t h;
    std::memcpy(&h, row + 2 * i, 2);
    return bf16_to_float(h);
  }
};

template <class K, int R, int T>
void float_tile(const Job& job, int64_t r0, int64_t t0) {
  const int64_t cols = job.w.cols;
  const uint8_t* rows[R];
  for (int r = 0; r < R; ++r) rows[r] = job.w.data + (r0 + r) * job.w.row_bytes;
  const float* xs = job.x + t0 * cols;
  __m256 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= cols; i += 8) {
    __m256 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = K::load8(rows[r], i);
    for (int t = 0; t < T; ++t) {
      const __m256 xv = _mm256_loadu_ps(xs + t * cols + i);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) {
      float sum = hsum(acc[r][t]);
      for (int64_t j = i; j < cols; ++j) sum += K::at(rows[r], j) * xs[t * cols + j];
      job.out[(t0 + t) * job.out_stride + r0 + r] = sum;
    }
}

template <class K>
void float_matmul(const Job& job) {
  auto tile = [&]<int R, int T>(int64_t r, int64_t t) { float_tile<K, R, T>(job, r, t); };
  if (job.n_tokens == 1)
    sweep<4, 1>(tile, job.row_begin, job.row_end, job.n_tokens);
  else
    sweep<4, 2>(tile, job.row_begin, job.row_end, job.n_tokens);
}

}  // namespace

void run_avx2(const Job& job) {
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
