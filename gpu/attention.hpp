// Causal attention of one sequence's query vectors over the K/V it has in the KvPool, read
// through its block table. The queries are n_tokens consecutive tokens (token i at position
// first_pos + i, which attends to positions [0, first_pos + i]) times n_heads query heads
// that share the KV head kv_head (grouped-query attention):
//   out(i, j) = softmax_p(scale * q(i, j) . K[p]) V[p]
// K and V are gathered as f32 in windows of 64 positions, each used by every query of the
// call; each query runs an online softmax in f32, window by window in position order, so its
// result depends only on its own vector, its position and the K/V values: not on the other
// queries of the call, the thread that runs it, nor the pool's block size.
// Thread safety: reads the pool only; calls with distinct outputs may run concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "gpu/kv_pool.hpp"

namespace troupe {

// Floats of scratch one attend() call needs for up to max_queries (n_tokens * n_heads).
size_t attention_scratch_floats(const KvShape& shape, int max_queries);

// Query (i, j) is the head_dim floats at q + i * row_stride + j * head_dim, and its result
// goes to the same place in out (out must not overlap q). first_pos >= 0, the table covers
// [0, first_pos + n_tokens).
void attend(const KvPool& kv, int layer, int kv_head, std::span<const int32_t> block_table,
            int32_t first_pos, int n_tokens, int n_heads, const float* q, size_t row_stride,
            float scale, float* out, float* scratch);

}  // namespace troupe
