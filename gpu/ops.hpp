// Element-wise and per-row operations of the forward pass, on f32 rows (AVX2 at the
// x86-64-v3 baseline). Each result depends only on its own inputs, summed in a fixed order,
// so it is the same whatever the batch or the thread that computes it.
// Thread safety: pure functions; distinct outputs may be computed concurrently.
#pragma once

#include <cstdint>

#include "model/model_desc.hpp"

namespace troupe {

// out = x / sqrt(mean(x^2) + eps) * weight, n elements; out may alias x.
void rmsnorm(const float* x, const float* weight, float eps, int n, float* out);

// cos and sin of the rotation angles pos * base^(-2i / head_dim), i < head_dim / 2.
void rope_angles(int32_t pos, int head_dim, float freq_base, float* cos_out, float* sin_out);

// Rotates each of n_heads vectors of head_dim (contiguous) in place by the angles of
// rope_angles(). Adjacent rotates the pairs (2i, 2i+1); Halves the pairs (i, i + head_dim/2).
void rope(float* heads, int n_heads, int head_dim, RopeLayout layout, const float* cos,
          const float* sin);

// out = silu(gate) * up, n elements; out may alias gate or up.
void swiglu(const float* gate, const float* up, int n, float* out);

// x += y, n elements.
void add_into(float* x, const float* y, int n);

// Index of the highest of x[0, n) (the lowest index on ties; a NaN never wins), or -1 when
// none is a number (n == 0 included).
int64_t highest_index(const float* x, int64_t n);

}  // namespace troupe
