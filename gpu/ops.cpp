#include "gpu/ops.hpp"

#include <cmath>
#include <limits>

#include "gpu/ops_simd.hpp"

namespace troupe {

void rmsnorm(const float* x, const float* weight, float eps, int n, float* out) {
  __m256 acc = _mm256_setzero_ps();
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    acc = _mm256_fmadd_ps(v, v, acc);
  }
  float sum = simd::hsum(acc);
  for (; i < n; ++i) sum += x[i] * x[i];
  const float scale = 1.0f / std::sqrt(sum / float(n) + eps);
  const __m256 s = _mm256_set1_ps(scale);
  i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), s),
                                            _mm256_loadu_ps(weight + i)));
  for (; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

void rope_angles(int32_t pos, int head_dim, float freq_base, float* cos_out, float* sin_out) {
  for (int i = 0; i < head_dim / 2; ++i) {
    const double freq = std::pow(double(freq_base), -2.0 * i / head_dim);
    const double angle = double(pos) * freq;
    cos_out[i] = float(std::cos(angle));
    sin_out[i] = float(std::sin(angle));
  }
}

void rope(float* heads, int n_heads, int head_dim, RopeLayout layout, const float* cos,
          const float* sin) {
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = heads + size_t(h) * head_dim;
    for (int i = 0; i < half; ++i) {
      const int a = layout == RopeLayout::Adjacent ? 2 * i : i;
      const int b = layout == RopeLayout::Adjacent ? 2 * i + 1 : i + half;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * cos[i] - x1 * sin[i];
      v[b] = x0 * sin[i] + x1 * cos[i];
    }
  }
}

void swiglu(const float* gate, const float* up, int n, float* out) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = simd::exp(_mm256_sub_ps(_mm256_setzero_ps(), g));
    const __m256 silu = _mm256_div_ps(g, _mm256_add_ps(one, e));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
  }
  for (; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void add_into(float* x, const float* y, int n) {
  for (int i = 0; i < n; ++i) x[i] += y[i];
}

int64_t highest_index(const float* x, int64_t n) {
  // max_ps(v, m) returns m where v is NaN, so NaNs never enter the running maximum.
  __m256 vmax = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(_mm256_loadu_ps(x + i), vmax);
  float highest = simd::hmax(vmax);
  for (; i < n; ++i)
    if (x[i] > highest) highest = x[i];
  const __m256 target = _mm256_set1_ps(highest);
  for (i = 0; i + 8 <= n; i += 8) {
    const int equal = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), target, _CMP_EQ_OQ));
    if (equal != 0) return i + __builtin_ctz(unsigned(equal));
  }
  for (; i < n; ++i)
    if (x[i] == highest) return i;
  return -1;
}

}  // namespace troupe
