// Internal to gpu/attention*.cpp: what the AVX2 and AVX-512 attention kernels share.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "gpu/kv_pool.hpp"

namespace troupe::attention_detail {

// Positions per online-softmax update: windows [0, 64), [64, 128), ... whatever the block
// size, so a query's result does not depend on it.
inline constexpr int kWindowPositions = 64;

// Cache hints (no effect on results) for the K and V rows a call reading positions
// [0, end_pos) needs next: at window 0 that window and the one after, later the one after
// `start`. The rows of one (layer, block, kv head) are a short run in a large pool, too short
// for the hardware prefetcher to start before the window's work needs them.
void prefetch_windows(const KvPool& kv, int layer, int kv_head,
                      std::span<const int32_t> block_table, int32_t start, int32_t end_pos);

// attend() (gpu/attention.hpp) on 16-float vectors; needs head_dim % 16 == 0 and a CPU with
// AVX-512 F.
void attend_avx512(const KvPool& kv, int layer, int kv_head, std::span<const int32_t> block_table,
                   int32_t first_pos, int n_tokens, int n_heads, const float* q,
                   size_t row_stride, float scale, float* out, float* scratch);

}  // namespace troupe::attention_detail
