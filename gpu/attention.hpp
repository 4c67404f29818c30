// Causal attention of one query vector over the K/V a sequence has in the KvPool, read
// through its block table: out = softmax(scale * q . K[p]) V[p] over positions p < n_pos.
// Online softmax in f32, block by block, in position order; the result depends only on q and
// the K/V cells read, never on which thread or batch runs it.
// Thread safety: reads the pool only; distinct outputs may be computed concurrently.
#pragma once

#include <cstdint>
#include <span>

#include "gpu/kv_pool.hpp"

namespace troupe {

// Floats of scratch attend() needs: the scores of one block, padded to 8.
inline int attention_scratch_floats(int block_tokens) { return (block_tokens + 7) / 8 * 8; }

// q and out: head_dim floats (out must not alias q). n_pos >= 1 and the table covers n_pos.
void attend(const KvPool& kv, int layer, int kv_head, std::span<const int32_t> block_table,
            int32_t n_pos, const float* q, float scale, float* out, float* scratch);

}  // namespace troupe
