// Packed AVX2 kernel: each 16-row group is processed as two halves of 8 rows (the low and
// high 32 bytes of every 64-byte chunk), lane j of a register holding row 8h+j. maddubs
// (u8 x s8 -> pairs of i16) then madd -> i32 adds 4 columns of 8 rows for one token. Q4:
// the 8 i16 partial sums of a block stay below 8 * 2 * 15 * 127 = 30480 (no saturation), so
// they are added in i16 and widened once. Q8_0: the stored q + 128 is turned back into a
// signed byte and multiplied through the abs / sign trick (pairs <= 2 * 128 * 127).
#include <immintrin.h>

#include <cstring>

#include "gpu/matmul_kernels.hpp"
#include "gpu/matmul_packed_kernels.hpp"

namespace troupe::matmul_detail {

namespace {

constexpr int kTileTokens = 4;

struct Q4_0Kind {
  static constexpr bool kNibbles = true, kMin = false;
  static constexpr int kOffset = 8;
};
struct Q4_1Kind {
  static constexpr bool kNibbles = true, kMin = true;
  static constexpr int kOffset = 0;
};
struct Q8_0Kind {
  static constexpr bool kNibbles = false, kMin = false;
  static constexpr int kOffset = 0;  // signed weights here
};

inline __m256i broadcast_word(const int8_t* p) {
  int32_t word;
  std::memcpy(&word, p, 4);
  return _mm256_set1_epi32(word);
}

// Tokens [t0, t0 + T) against half h (rows 8h..8h+7) of one group.
template <class K, int T>
void half_tile(const uint8_t* group, const uint8_t* next_group, int half, const BlockQ8* xq,
               const int32_t* corrections, int64_t nb, int64_t t0, float* out, int64_t out_stride,
               __m256i lane_mask) {
  constexpr size_t kTile = K::kNibbles ? 256 : 512;
  const uint8_t* d_area = group + nb * kTile + 16 * half;
  const uint8_t* m_area = d_area + nb * 32;
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i ones16 = _mm256_set1_epi16(1);
  __m256 acc[T], acc_min[T];
  for (int t = 0; t < T; ++t) acc[t] = acc_min[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* tile = group + b * kTile + 32 * half;
    if (next_group != nullptr) prefetch_block(next_group, nb, b, kTile, K::kMin);
    const BlockQ8* x[T];
    for (int t = 0; t < T; ++t) x[t] = xq + (t0 + t) * nb + b;
    __m256i isum[T];
    if constexpr (K::kNibbles) {
      __m256i pairs[T];
      for (int t = 0; t < T; ++t) pairs[t] = _mm256_setzero_si256();
      for (int k = 0; k < 4; ++k) {
        const __m256i packed = _mm256_load_si256(reinterpret_cast<const __m256i*>(tile + 64 * k));
        const __m256i low = _mm256_and_si256(packed, low4);
        const __m256i high = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low4);
        for (int t = 0; t < T; ++t) {
          pairs[t] = _mm256_add_epi16(pairs[t], _mm256_maddubs_epi16(low, broadcast_word(x[t]->qs + 4 * k)));
          pairs[t] = _mm256_add_epi16(pairs[t],
                                      _mm256_maddubs_epi16(high, broadcast_word(x[t]->qs + 16 + 4 * k)));
        }
      }
      for (int t = 0; t < T; ++t) isum[t] = _mm256_madd_epi16(pairs[t], ones16);
    } else {
      for (int t = 0; t < T; ++t) isum[t] = _mm256_setzero_si256();
      for (int k = 0; k < 8; ++k) {
        const __m256i stored = _mm256_load_si256(reinterpret_cast<const __m256i*>(tile + 64 * k));
        const __m256i weights = _mm256_xor_si256(stored, _mm256_set1_epi8(static_cast<char>(0x80)));
        const __m256i magnitude = _mm256_abs_epi8(weights);
        for (int t = 0; t < T; ++t) {
          const __m256i signed_x = _mm256_sign_epi8(broadcast_word(x[t]->qs + 4 * k), weights);
          isum[t] = _mm256_add_epi32(isum[t],
                                     _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, signed_x), ones16));
        }
      }
    }
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(d_area + 32 * b)));
    __m256 mw;
    if constexpr (K::kMin)
      mw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(m_area + 32 * b)));
    for (int t = 0; t < T; ++t) {
      if constexpr (K::kOffset != 0)
        isum[t] = _mm256_add_epi32(isum[t], _mm256_set1_epi32(corrections[(t0 + t) * nb + b]));
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(dw, _mm256_set1_ps(x[t]->d)),
                               acc[t]);
      if constexpr (K::kMin) acc_min[t] = _mm256_fmadd_ps(mw, _mm256_set1_ps(x[t]->s), acc_min[t]);
    }
  }
  for (int t = 0; t < T; ++t) {
    if constexpr (K::kMin) acc[t] = _mm256_add_ps(acc[t], acc_min[t]);
    _mm256_maskstore_ps(out + (t0 + t) * out_stride + 8 * half, lane_mask, acc[t]);
  }
}

template <class K>
void packed_matmul(const PackedJob& job) {
  const int64_t nb = job.w.blocks();
  int32_t* corrections = nullptr;
  if constexpr (K::kOffset != 0) {
    corrections = reinterpret_cast<int32_t*>(
        thread_scratch(0, static_cast<size_t>(job.n_tokens * nb) * sizeof(int32_t)));
    offset_corrections(job.xq, job.n_tokens * nb, K::kOffset, corrections);
  }
  const __m256i lane_index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const int64_t end_group = (job.row_end + kPackedGroupRows - 1) / kPackedGroupRows;
  for_each_group(job, [&](const GroupLanes& lanes) {
    const uint8_t* group = job.w.group(lanes.group);
    const uint8_t* next_group = lanes.group + 1 < end_group ? job.w.group(lanes.group + 1) : nullptr;
    bool prefetched = false;
    float* out = job.out + lanes.group * kPackedGroupRows;
    for (int half = 0; half < 2; ++half) {
      const int first = lanes.first - 8 * half, end = lanes.end - 8 * half;
      if (end <= 0 || first >= 8) continue;
      // All ones in lanes first <= j < end.
      const __m256i lane_mask = _mm256_andnot_si256(
          _mm256_cmpgt_epi32(_mm256_set1_epi32(first), lane_index),
          _mm256_cmpgt_epi32(_mm256_set1_epi32(end), lane_index));
      auto tile = [&]<int T>(int64_t t0) {
        half_tile<K, T>(group, prefetched ? nullptr : next_group, half, job.xq, corrections, nb, t0, out,
                        job.out_stride, lane_mask);
        prefetched = true;
      };
      for_each_token_tile<kTileTokens>(0, job.n_tokens, tile);
    }
  });
}

}  // namespace

void run_packed_avx2(const PackedJob& job) {
  switch (job.w.type()) {
    case GgmlType::Q4_0: return packed_matmul<Q4_0Kind>(job);
    case GgmlType::Q4_1: return packed_matmul<Q4_1Kind>(job);
    default: return packed_matmul<Q8_0Kind>(job);
  }
}

}  // namespace troupe::matmul_detail
