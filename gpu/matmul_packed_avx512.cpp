// Packed AVX-512 VNNI kernel: lane j of every register is row 16g+j, so one vpdpbusd adds
// 4 columns of 16 rows for one token (weights u8, the token's 4 activations broadcast).
// Each 64-byte chunk of weights is loaded once per tile of up to kTileTokens tokens, with
// one integer and one float accumulator per token in registers.
// GCC 12 warns inside its own AVX-512 headers (the _mm512_undefined_* idiom, GCC PR105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <cstring>

#include "gpu/matmul_kernels.hpp"
#include "gpu/matmul_packed_kernels.hpp"

namespace troupe::matmul_detail {

namespace {

constexpr int kTileTokens = 8;

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
  static constexpr int kOffset = 128;
};

inline __m512i broadcast_word(const int8_t* p) {
  int32_t word;
  std::memcpy(&word, p, 4);
  return _mm512_set1_epi32(word);
}

// Tokens [t0, t0 + T) against one group: out[(t0 + t) * out_stride + j] for lanes in `lanes`.
template <class K, int T>
void group_tile(const uint8_t* group, const uint8_t* next_group, const BlockQ8* xq,
                const int32_t* corrections, int64_t nb, int64_t t0, float* out, int64_t out_stride,
                __mmask16 lanes) {
  constexpr size_t kTile = K::kNibbles ? 256 : 512;
  const uint8_t* d_area = group + nb * kTile;
  const uint8_t* m_area = d_area + nb * 32;
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  __m512 acc[T], acc_min[T];
  for (int t = 0; t < T; ++t) acc[t] = acc_min[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* tile = group + b * kTile;
    if (next_group != nullptr) prefetch_block(next_group, nb, b, kTile, K::kMin);
    const BlockQ8* x[T];
    for (int t = 0; t < T; ++t) x[t] = xq + (t0 + t) * nb + b;
    __m512i isum[T];
    for (int t = 0; t < T; ++t)
      isum[t] = K::kOffset != 0 ? _mm512_set1_epi32(corrections[(t0 + t) * nb + b]) : _mm512_setzero_si512();
    if constexpr (K::kNibbles) {
      for (int k = 0; k < 4; ++k) {
        const __m512i packed = _mm512_load_si512(tile + 64 * k);
        const __m512i low = _mm512_and_si512(packed, low4);
        const __m512i high = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low4);
        for (int t = 0; t < T; ++t) {
          isum[t] = _mm512_dpbusd_epi32(isum[t], low, broadcast_word(x[t]->qs + 4 * k));
          isum[t] = _mm512_dpbusd_epi32(isum[t], high, broadcast_word(x[t]->qs + 16 + 4 * k));
        }
      }
    } else {
      for (int k = 0; k < 8; ++k) {
        const __m512i weights = _mm512_load_si512(tile + 64 * k);
        for (int t = 0; t < T; ++t)
          isum[t] = _mm512_dpbusd_epi32(isum[t], weights, broadcast_word(x[t]->qs + 4 * k));
      }
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(d_area + 32 * b)));
    __m512 mw;
    if constexpr (K::kMin)
      mw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(m_area + 32 * b)));
    for (int t = 0; t < T; ++t) {
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(dw, _mm512_set1_ps(x[t]->d)),
                               acc[t]);
      if constexpr (K::kMin) acc_min[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(x[t]->s), acc_min[t]);
    }
  }
  for (int t = 0; t < T; ++t) {
    if constexpr (K::kMin) acc[t] = _mm512_add_ps(acc[t], acc_min[t]);
    _mm512_mask_storeu_ps(out + (t0 + t) * out_stride, lanes, acc[t]);
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
  const int64_t end_group = (job.row_end + kPackedGroupRows - 1) / kPackedGroupRows;
  for_each_group(job, [&](const GroupLanes& lanes) {
    const __mmask16 mask = static_cast<__mmask16>(((1u << lanes.end) - 1) & ~((1u << lanes.first) - 1));
    const uint8_t* group = job.w.group(lanes.group);
    const uint8_t* next_group = lanes.group + 1 < end_group ? job.w.group(lanes.group + 1) : nullptr;
    float* out = job.out + lanes.group * kPackedGroupRows;
    auto tile = [&]<int T>(int64_t t0) {
      group_tile<K, T>(group, t0 == 0 ? next_group : nullptr, job.xq, corrections, nb, t0, out, job.out_stride, mask);
    };
    for_each_token_tile<kTileTokens>(0, job.n_tokens, tile);
  });
}

}  // namespace

void run_packed_avx512(const PackedJob& job) {
  switch (job.w.type()) {
    case GgmlType::Q4_0: return packed_matmul<Q4_0Kind>(job);
    case GgmlType::Q4_1: return packed_matmul<Q4_1Kind>(job);
    default: return packed_matmul<Q8_0Kind>(job);
  }
}

}  // namespace troupe::matmul_detail
