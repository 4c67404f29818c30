#include "gpu/attention.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "gpu/ops_simd.hpp"

namespace troupe {

namespace {

float dot_half(const float* q, const uint16_t* k, int n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), simd::load_half8(k + i), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), simd::load_half8(k + i + 8), a1);
  }
  for (; i + 8 <= n; i += 8)
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), simd::load_half8(k + i), a0);
  float sum = simd::hsum(_mm256_add_ps(a0, a1));
  for (; i < n; ++i) sum += q[i] * simd::half_to_float(k[i]);
  return sum;
}

// acc = acc * keep + p * v
void scale_add_half(float* acc, float keep, float p, const uint16_t* v, int n) {
  const __m256 vk = _mm256_set1_ps(keep), vp = _mm256_set1_ps(p);
  int i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(acc + i, _mm256_fmadd_ps(vp, simd::load_half8(v + i),
                                              _mm256_mul_ps(_mm256_loadu_ps(acc + i), vk)));
  for (; i < n; ++i) acc[i] = acc[i] * keep + p * simd::half_to_float(v[i]);
}

}  // namespace

void attend(const KvPool& kv, int layer, int kv_head, std::span<const int32_t> block_table,
            int32_t n_pos, const float* q, float scale, float* out, float* scratch) {
  const int head_dim = kv.shape().head_dim;
  const int block_tokens = kv.block_tokens();
  float max_score = -std::numeric_limits<float>::infinity();
  float denom = 0.0f;
  std::fill(out, out + head_dim, 0.0f);

  for (int32_t first = 0, b = 0; first < n_pos; first += block_tokens, ++b) {
    const int n_slots = int(std::min<int32_t>(block_tokens, n_pos - first));
    const uint16_t* k = kv.k_rows(layer, block_table[size_t(b)], kv_head);
    const uint16_t* v = kv.v_rows(layer, block_table[size_t(b)], kv_head);

    float block_max = max_score;
    for (int s = 0; s < n_slots; ++s) {
      scratch[s] = dot_half(q, k + size_t(s) * head_dim, head_dim) * scale;
      block_max = std::max(block_max, scratch[s]);
    }
    // Rescale what was accumulated under the old maximum (once per block, folded into the
    // first slot's update).
    float keep = block_max > max_score ? std::exp(max_score - block_max) : 1.0f;
    max_score = block_max;
    denom *= keep;

    const __m256 m = _mm256_set1_ps(max_score);
    std::fill(scratch + n_slots, scratch + attention_scratch_floats(n_slots), max_score);
    for (int s = 0; s < n_slots; s += 8)
      _mm256_storeu_ps(scratch + s, simd::exp(_mm256_sub_ps(_mm256_loadu_ps(scratch + s), m)));
    for (int s = 0; s < n_slots; ++s) {
      denom += scratch[s];
      scale_add_half(out, keep, scratch[s], v + size_t(s) * head_dim, head_dim);
      keep = 1.0f;
    }
  }
  const float inv = 1.0f / denom;
  for (int i = 0; i < head_dim; ++i) out[i] *= inv;
}

}  // namespace troupe
