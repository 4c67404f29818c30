// Host-side drivers for the cuda kernels (gpu/cuda/kernels.hpp), for parity checks against
// the cpu functions: each copies its inputs to the current device, runs one kernel on a
// private stream, waits and returns the result. Slow by design (allocates per call); never
// used by the backend. Throws std::runtime_error when a CUDA call fails (no device included).
// Thread safety: calls are independent; safe from any thread.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "gpu/kv_pool.hpp"
#include "gpu/quant.hpp"
#include "model/ggml_types.hpp"
#include "model/model_desc.hpp"

namespace troupe::cuda_check {

// rows x cols floats -> rows x cols/32 Q8 blocks (compare with quantize_row_q8).
std::vector<BlockQ8> quantize_q8(std::span<const float> x, int rows, int cols);

// out[t * rows + r] = W[r] . x_t for n_tokens rows of x (cols floats each); weights in ggml's
// row layout. Quantized types read x through the Q8 kernel first, as the backend does.
std::vector<float> matmul(GgmlType type, std::span<const uint8_t> weights, int64_t rows,
                          int64_t cols, std::span<const float> x, int n_tokens);

// Rows of the embedding table as f32.
std::vector<float> embed(GgmlType type, std::span<const uint8_t> table, int64_t cols,
                         std::span<const int32_t> ids);

// out row i = rmsnorm(x row i) * weight, and its Q8 blocks from the same launch.
struct WithQ8 {
  std::vector<float> values;
  std::vector<BlockQ8> q8;
};
WithQ8 rmsnorm(std::span<const float> x, std::span<const float> weight, float eps, int rows,
               int n);

// matmul into out = residual (accumulate): residual + W . x_t.
std::vector<float> matmul_add(GgmlType type, std::span<const uint8_t> weights, int64_t rows,
                              int64_t cols, std::span<const float> x, int n_tokens,
                              std::span<const float> residual);

// Three weights of one input in one matmul_parts launch; one output per weight.
std::vector<std::vector<float>> matmul_parts(GgmlType type,
                                             std::span<const std::vector<uint8_t>> weights,
                                             std::span<const int64_t> rows, int64_t cols,
                                             std::span<const float> x, int n_tokens);

// ffn_swiglu (gate, up: rows x cols of one Q8-read type): silu(gate . x) * (up . x) per token,
// and its Q8 blocks.
WithQ8 ffn_swiglu(GgmlType type, std::span<const uint8_t> gate, std::span<const uint8_t> up,
                  int64_t rows, int64_t cols, std::span<const float> x, int n_tokens);

std::vector<float> swiglu(std::span<const float> gate, std::span<const float> up);

// One sequence's tokens at positions[t] through block_table: biases (may be empty) and rope on
// q and k, then k and v stored into `pool` (layer `layer`; its other contents are kept).
struct QkvResult {
  std::vector<float> q, k;
};
QkvResult qkv_finish(std::span<const float> q, std::span<const float> k, std::span<const float> v,
                     std::span<const float> bq, std::span<const float> bk,
                     std::span<const float> bv, int n_head, RopeLayout layout, float freq_base,
                     std::span<const int32_t> positions, std::span<const int32_t> block_table,
                     int layer, KvPool& pool);

// Attention of one sequence's queries (n_tokens x n_head*head_dim; token t at positions[t])
// over `pool` through block_table, and the Q8 blocks of the result (head_dim % 32 == 0;
// empty otherwise) from the same launch.
WithQ8 attention(const KvPool& pool, int layer, std::span<const int32_t> block_table,
                             std::span<const int32_t> positions, std::span<const float> q,
                             int n_head, float scale);

}  // namespace troupe::cuda_check
