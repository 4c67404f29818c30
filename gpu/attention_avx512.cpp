// AVX-512 attention (contract: gpu/attention.hpp). Same windows and online softmax as the
// AVX2 kernel; the vectors are 16 floats wide: 16 scores come out of one transposing
// reduction of 16 dot-product vectors, and the value rows are accumulated in two
// interleaved sets (even and odd positions) so the FMA chains do not wait on each other.
// Every query's result is computed in an order fixed by its own vector and position.
// GCC 12 warns inside its own AVX-512 headers (the _mm512_undefined_* idiom, GCC PR105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <algorithm>
#include <cmath>
#include <limits>

#include "gpu/attention_kernels.hpp"

namespace troupe::attention_detail {

namespace {

constexpr int kLanes = 16;
constexpr float kMinusInfinity = -std::numeric_limits<float>::infinity();

// e^x per lane: the polynomial of simd::exp (gpu/ops_simd.hpp) on 16 lanes.
__m512 exp16(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606820309417e-6f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  const __m512i scale =
      _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(scale));
}

// Lane i of the result is the sum of the 16 lanes of v[i].
__m512 sum_each(__m512 v[kLanes]) {
  __m512 pairs[8], quads[4], octets[2];
  for (int i = 0; i < 8; ++i)  // per 128-bit lane: (a0+a2, b0+b2, a1+a3, b1+b3)
    pairs[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]),
                             _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  for (int i = 0; i < 4; ++i)  // per 128-bit lane: one partial sum of each of 4 vectors
    quads[i] = _mm512_add_ps(_mm512_shuffle_ps(pairs[2 * i], pairs[2 * i + 1], 0x44),
                             _mm512_shuffle_ps(pairs[2 * i], pairs[2 * i + 1], 0xEE));
  for (int i = 0; i < 2; ++i)
    octets[i] = _mm512_add_ps(_mm512_shuffle_f32x4(quads[2 * i], quads[2 * i + 1], 0x88),
                              _mm512_shuffle_f32x4(quads[2 * i], quads[2 * i + 1], 0xDD));
  return _mm512_add_ps(_mm512_shuffle_f32x4(octets[0], octets[1], 0x88),
                       _mm512_shuffle_f32x4(octets[0], octets[1], 0xDD));
}

// scores[s] = scale * q . k[s] for s < n_slots, and -inf up to the next multiple of 16
// (k rows up to there must be readable).
void dot_rows(const float* q, const float* k, int dim, int n_slots, float scale, float* scores) {
  for (int s = 0; s < n_slots; s += kLanes) {
    const float* k0 = k + size_t(s) * dim;
    __m512 acc[kLanes];
    for (int r = 0; r < kLanes; ++r) acc[r] = _mm512_setzero_ps();
    for (int c = 0; c < dim; c += kLanes) {
      const __m512 qc = _mm512_loadu_ps(q + c);
      for (int r = 0; r < kLanes; ++r)
        acc[r] = _mm512_fmadd_ps(qc, _mm512_loadu_ps(k0 + size_t(r) * dim + c), acc[r]);
    }
    const int live = std::min(kLanes, n_slots - s);
    const __mmask16 mask = __mmask16((1u << live) - 1);
    const __m512 scaled = _mm512_mul_ps(sum_each(acc), _mm512_set1_ps(scale));
    _mm512_storeu_ps(scores + s, _mm512_mask_blend_ps(mask, _mm512_set1_ps(kMinusInfinity), scaled));
  }
}

// out[0, 16 * N) = out * keep + sum_s p[s] * v[s][0, 16 * N), even and odd positions in two
// sets of N chains added at the end.
template <int N>
void accumulate_columns(float* out, float keep, const float* p, const float* v, int dim,
                        int n_slots) {
  __m512 even[N], odd[N];
  for (int i = 0; i < N; ++i) {
    even[i] = _mm512_mul_ps(_mm512_loadu_ps(out + kLanes * i), _mm512_set1_ps(keep));
    odd[i] = _mm512_setzero_ps();
  }
  int s = 0;
  for (; s + 2 <= n_slots; s += 2) {
    const __m512 p0 = _mm512_set1_ps(p[s]), p1 = _mm512_set1_ps(p[s + 1]);
    const float* row = v + size_t(s) * dim;
    for (int i = 0; i < N; ++i) {
      even[i] = _mm512_fmadd_ps(p0, _mm512_loadu_ps(row + kLanes * i), even[i]);
      odd[i] = _mm512_fmadd_ps(p1, _mm512_loadu_ps(row + dim + kLanes * i), odd[i]);
    }
  }
  if (s < n_slots) {
    const __m512 p0 = _mm512_set1_ps(p[s]);
    const float* row = v + size_t(s) * dim;
    for (int i = 0; i < N; ++i)
      even[i] = _mm512_fmadd_ps(p0, _mm512_loadu_ps(row + kLanes * i), even[i]);
  }
  for (int i = 0; i < N; ++i) _mm512_storeu_ps(out + kLanes * i, _mm512_add_ps(even[i], odd[i]));
}

void accumulate_rows(float* out, float keep, const float* p, const float* v, int dim,
                     int n_slots) {
  int c = 0;
  for (; c + 4 * kLanes <= dim; c += 4 * kLanes)
    accumulate_columns<4>(out + c, keep, p, v + c, dim, n_slots);
  for (; c < dim; c += kLanes) accumulate_columns<1>(out + c, keep, p, v + c, dim, n_slots);
}

// One query's online-softmax update with the first n_slots positions of a window.
void attend_window(const float* q, const float* k, const float* v, int dim, int n_slots,
                   float scale, float& max_score, float& denom, float* out, float* scores) {
  const int padded = (n_slots + kLanes - 1) / kLanes * kLanes;
  dot_rows(q, k, dim, n_slots, scale, scores);
  __m512 vmax = _mm512_set1_ps(max_score);
  for (int s = 0; s < padded; s += kLanes) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(scores + s));
  const float window_max = _mm512_reduce_max_ps(vmax);
  const float keep = window_max > max_score ? std::exp(max_score - window_max) : 1.0f;
  max_score = window_max;

  const __m512 m = _mm512_set1_ps(max_score);
  __m512 sum = _mm512_setzero_ps();
  for (int s = 0; s < padded; s += kLanes) {
    const __mmask16 live = __mmask16((1u << std::min(kLanes, n_slots - s)) - 1);
    const __m512 p = _mm512_maskz_mov_ps(live, exp16(_mm512_sub_ps(_mm512_loadu_ps(scores + s), m)));
    _mm512_storeu_ps(scores + s, p);
    sum = _mm512_add_ps(sum, p);
  }
  denom = denom * keep + _mm512_reduce_add_ps(sum);
  accumulate_rows(out, keep, scores, v, dim, n_slots);
}


void half_rows_to_float(const uint16_t* src, float* dst, int n) {
  for (int i = 0; i < n; i += kLanes)
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
}

}  // namespace

void attend_avx512(const KvPool& kv, int layer, int kv_head, std::span<const int32_t> block_table,
                   int32_t first_pos, int n_tokens, int n_heads, const float* q,
                   size_t row_stride, float scale, float* out, float* scratch) {
  const int dim = kv.shape().head_dim;
  const int block_tokens = kv.block_tokens();
  const int n_queries = n_tokens * n_heads;
  float* k_window = scratch;
  float* v_window = k_window + size_t(kWindowPositions) * dim;
  float* scores = v_window + size_t(kWindowPositions) * dim;
  float* max_score = scores + kWindowPositions;
  float* denom = max_score + n_queries;
  std::fill(max_score, max_score + n_queries, kMinusInfinity);
  std::fill(denom, denom + n_queries, 0.0f);
  for (int i = 0; i < n_tokens; ++i)
    std::fill(out + size_t(i) * row_stride, out + size_t(i) * row_stride + size_t(n_heads) * dim,
              0.0f);

  const int32_t end_pos = first_pos + n_tokens;
  for (int32_t start = 0; start < end_pos; start += kWindowPositions) {
    const int32_t window_end = std::min(end_pos, start + kWindowPositions);
    for (int32_t pos = start; pos < window_end;) {
      const int32_t block = block_table[size_t(pos / block_tokens)];
      const int slot = int(pos % block_tokens);
      const int run = int(std::min<int32_t>(block_tokens - slot, window_end - pos));
      const size_t from = size_t(slot) * dim, to = size_t(pos - start) * dim;
      half_rows_to_float(kv.k_rows(layer, block, kv_head) + from, k_window + to, run * dim);
      half_rows_to_float(kv.v_rows(layer, block, kv_head) + from, v_window + to, run * dim);
      pos += run;
    }
    // dot_rows reads K rows up to the next multiple of 16: zeros past the window's end.
    const int n_rows = int(window_end - start);
    const int padded_rows = (n_rows + kLanes - 1) / kLanes * kLanes;
    std::fill(k_window + size_t(n_rows) * dim, k_window + size_t(padded_rows) * dim, 0.0f);

    const int first_seer = std::max(0, int(start - first_pos));
    for (int i = first_seer; i < n_tokens; ++i) {
      const int n_slots = int(std::min<int32_t>(kWindowPositions, first_pos + i + 1 - start));
      for (int j = 0; j < n_heads; ++j) {
        const size_t at = size_t(i) * row_stride + size_t(j) * dim;
        const int query = i * n_heads + j;
        attend_window(q + at, k_window, v_window, dim, n_slots, scale, max_score[query],
                      denom[query], out + at, scores);
      }
    }
  }
  for (int i = 0; i < n_tokens; ++i)
    for (int j = 0; j < n_heads; ++j) {
      float* o = out + size_t(i) * row_stride + size_t(j) * dim;
      const __m512 inv = _mm512_set1_ps(1.0f / denom[i * n_heads + j]);
      for (int c = 0; c < dim; c += kLanes)
        _mm512_storeu_ps(o + c, _mm512_mul_ps(_mm512_loadu_ps(o + c), inv));
    }
}

}  // namespace troupe::attention_detail
