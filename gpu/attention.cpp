#include "gpu/attention.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "gpu/ops_simd.hpp"

namespace troupe {

namespace {

// Positions per online-softmax update: windows [0, 64), [64, 128), ... whatever the block
// size, so the result does not depend on it either.
constexpr int kWindowPositions = 64;

size_t padded8(int n) { return size_t(n + 7) / 8 * 8; }

void half_rows_to_float(const uint16_t* src, float* dst, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, simd::load_half8(src + i));
  for (; i < n; ++i) dst[i] = simd::half_to_float(src[i]);
}

// scores[s] = scale * q . k[s] for s < n_slots (k: n_slots rows of dim floats). Four slots
// at a time share the q loads and one combined horizontal reduction.
void dot_rows(const float* q, const float* k, int dim, int n_slots, float scale, float* scores) {
  const int vec_dim = dim / 8 * 8;
  int s = 0;
  for (; s + 4 <= n_slots; s += 4) {
    const float* k0 = k + size_t(s) * dim;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int c = 0; c < vec_dim; c += 8) {
      const __m256 qc = _mm256_loadu_ps(q + c);
      a0 = _mm256_fmadd_ps(qc, _mm256_loadu_ps(k0 + c), a0);
      a1 = _mm256_fmadd_ps(qc, _mm256_loadu_ps(k0 + dim + c), a1);
      a2 = _mm256_fmadd_ps(qc, _mm256_loadu_ps(k0 + 2 * dim + c), a2);
      a3 = _mm256_fmadd_ps(qc, _mm256_loadu_ps(k0 + 3 * dim + c), a3);
    }
    const __m256 pairs = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    __m128 sums = _mm_add_ps(_mm256_castps256_ps128(pairs), _mm256_extractf128_ps(pairs, 1));
    if (vec_dim < dim) {
      alignas(16) float tails[4] = {0, 0, 0, 0};
      for (int r = 0; r < 4; ++r)
        for (int c = vec_dim; c < dim; ++c) tails[r] += q[c] * k0[size_t(r) * dim + c];
      sums = _mm_add_ps(sums, _mm_load_ps(tails));
    }
    _mm_storeu_ps(scores + s, _mm_mul_ps(sums, _mm_set1_ps(scale)));
  }
  for (; s < n_slots; ++s) {
    const float* ks = k + size_t(s) * dim;
    __m256 a = _mm256_setzero_ps();
    for (int c = 0; c < vec_dim; c += 8)
      a = _mm256_fmadd_ps(_mm256_loadu_ps(q + c), _mm256_loadu_ps(ks + c), a);
    float sum = simd::hsum(a);
    for (int c = vec_dim; c < dim; ++c) sum += q[c] * ks[c];
    scores[s] = sum * scale;
  }
}

// out[0, 8 * N) = out * keep + sum_s p[s] * v[s][0, 8 * N): N independent FMA chains.
template <int N>
void accumulate_columns(float* out, float keep, const float* p, const float* v, int dim,
                        int n_slots) {
  const __m256 vk = _mm256_set1_ps(keep);
  __m256 acc[N];
  for (int i = 0; i < N; ++i) acc[i] = _mm256_mul_ps(_mm256_loadu_ps(out + 8 * i), vk);
  for (int s = 0; s < n_slots; ++s) {
    const __m256 ps = _mm256_set1_ps(p[s]);
    const float* row = v + size_t(s) * dim;
    for (int i = 0; i < N; ++i) acc[i] = _mm256_fmadd_ps(ps, _mm256_loadu_ps(row + 8 * i), acc[i]);
  }
  for (int i = 0; i < N; ++i) _mm256_storeu_ps(out + 8 * i, acc[i]);
}

// out = out * keep + sum_s p[s] * v[s] over s < n_slots (v: rows of dim floats).
void accumulate_rows(float* out, float keep, const float* p, const float* v, int dim,
                     int n_slots) {
  int c = 0;
  for (; c + 64 <= dim; c += 64) accumulate_columns<8>(out + c, keep, p, v + c, dim, n_slots);
  for (; c + 8 <= dim; c += 8) accumulate_columns<1>(out + c, keep, p, v + c, dim, n_slots);
  for (; c < dim; ++c) {
    float acc = out[c] * keep;
    for (int s = 0; s < n_slots; ++s) acc += p[s] * v[size_t(s) * dim + c];
    out[c] = acc;
  }
}

// One query's online-softmax update with the first n_slots positions of a window. The
// scores are padded to whole vectors (-inf before exp, 0 after) so every pass is vector wide.
void attend_window(const float* q, const float* k, const float* v, int dim, int n_slots,
                   float scale, float& max_score, float& denom, float* out, float* scores) {
  const int padded = int(padded8(n_slots));
  dot_rows(q, k, dim, n_slots, scale, scores);
  std::fill(scores + n_slots, scores + padded, -std::numeric_limits<float>::infinity());
  __m256 vmax = _mm256_set1_ps(max_score);
  for (int s = 0; s < padded; s += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(scores + s));
  const float window_max = simd::hmax(vmax);
  const float keep = window_max > max_score ? std::exp(max_score - window_max) : 1.0f;
  max_score = window_max;

  const __m256 m = _mm256_set1_ps(max_score);
  for (int s = 0; s < padded; s += 8)
    _mm256_storeu_ps(scores + s, simd::exp(_mm256_sub_ps(_mm256_loadu_ps(scores + s), m)));
  std::fill(scores + n_slots, scores + padded, 0.0f);
  __m256 sum = _mm256_setzero_ps();
  for (int s = 0; s < padded; s += 8) sum = _mm256_add_ps(sum, _mm256_loadu_ps(scores + s));
  denom = denom * keep + simd::hsum(sum);
  accumulate_rows(out, keep, scores, v, dim, n_slots);
}

}  // namespace

size_t attention_scratch_floats(const KvShape& shape, int max_queries) {
  const size_t window = size_t(kWindowPositions) * size_t(shape.head_dim);
  return 2 * window + kWindowPositions + 2 * size_t(max_queries);
}

void attend(const KvPool& kv, int layer, int kv_head, std::span<const int32_t> block_table,
            int32_t first_pos, int n_tokens, int n_heads, const float* q, size_t row_stride,
            float scale, float* out, float* scratch) {
  const int dim = kv.shape().head_dim;
  const int block_tokens = kv.block_tokens();
  const int n_queries = n_tokens * n_heads;
  float* k_window = scratch;
  float* v_window = k_window + size_t(kWindowPositions) * dim;
  float* scores = v_window + size_t(kWindowPositions) * dim;
  float* max_score = scores + kWindowPositions;
  float* denom = max_score + n_queries;
  std::fill(max_score, max_score + n_queries, -std::numeric_limits<float>::infinity());
  std::fill(denom, denom + n_queries, 0.0f);
  for (int i = 0; i < n_tokens; ++i)
    std::fill(out + size_t(i) * row_stride, out + size_t(i) * row_stride + size_t(n_heads) * dim,
              0.0f);

  const int32_t end_pos = first_pos + n_tokens;  // one past the last position read
  for (int32_t start = 0; start < end_pos; start += kWindowPositions) {
    const int32_t window_end = std::min(end_pos, start + kWindowPositions);
    // Gather the window's K and V as f32, one run of a block's slots at a time.
    for (int32_t pos = start; pos < window_end;) {
      const int32_t block = block_table[size_t(pos / block_tokens)];
      const int slot = int(pos % block_tokens);
      const int run = int(std::min<int32_t>(block_tokens - slot, window_end - pos));
      const size_t from = size_t(slot) * dim, to = size_t(pos - start) * dim;
      half_rows_to_float(kv.k_rows(layer, block, kv_head) + from, k_window + to, run * dim);
      half_rows_to_float(kv.v_rows(layer, block, kv_head) + from, v_window + to, run * dim);
      pos += run;
    }
    // Token i sees positions [0, first_pos + i]: tokens before first_seer end before start.
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
      const float inv = 1.0f / denom[i * n_heads + j];
      for (int c = 0; c < dim; ++c) o[c] *= inv;
    }
}

}  // namespace troupe
