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

// attend() (gpu/attention.hpp) on 16-float vectors; needs head_dim % 16 == 0 and a CPU with
// AVX-512 F.
void attend_avx512(const KvPool& kv, int layer, int kv_head, std::span<const int32_t> block_table,
                   int32_t first_pos, int n_tokens, int n_heads, const float* q,
                   size_t row_stride, float scale, float* out, float* scratch);

}  // namespace troupe::attention_detail
