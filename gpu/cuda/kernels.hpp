// The cuda backend's kernels, as host functions that enqueue them on a stream (no
// synchronisation, no allocation: every pointer is device memory the caller owns). Each
// mirrors a CPU function so the two backends agree within float rounding:
// - quantize_q8 mirrors quantize_row_q8 (same BlockQ8 layout and rounding);
// - matmul mirrors matmul(): Q4_0 / Q4_1 / Q8_0 weights take the Q8 rows with integer dot
//   products (dp4a), F32 / F16 / BF16 weights take the f32 rows; out[t * out_stride + r];
// - rmsnorm, rope_angles (in double, as ops.cpp), qkv_finish (biases, rope, f16 K/V
//   store through the block tables), attention (causal, grouped-query, over the paged pool),
//   swiglu and embed (dequantized rows of the embedding table).
// Fused forms (fewer launches per layer, same values as the separate kernels): rmsnorm and
// attention can also write the Q8 blocks of their output; matmul can add into its output
// (the residual); matmul_parts runs several weights of one input; ffn_swiglu runs gate, up,
// SwiGLU and the Q8 blocks of the result.
// Thread safety: enqueueing is thread-safe; kernels on one stream run in order.
// Errors: launch failures surface at the next cudaStreamSynchronize / cudaGetLastError of
// the caller; unsupported weight types throw std::invalid_argument before any launch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include <cuda_runtime.h>

#include "gpu/quant.hpp"
#include "model/ggml_types.hpp"
#include "model/model_desc.hpp"

namespace troupe::cuda {

// A weight matrix in device memory, in ggml's row layout (rows of cols elements).
struct DeviceWeight {
  GgmlType type = GgmlType::F32;
  const uint8_t* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  size_t row_bytes = 0;
};

// True for the weight types matmul and embed accept.
bool kernels_support(GgmlType type);
// True when matmul reads the Q8 rows for this type (false: the f32 rows).
bool uses_q8(GgmlType type);

// The KV pool in device memory, with KvPool's layout (gpu/kv_pool.hpp): block-major; in a
// block, for each layer, K then V, each [kv_head][slot][head_dim] f16.
struct DeviceKv {
  uint16_t* data = nullptr;
  int n_layer = 0;
  int n_head_kv = 0;
  int head_dim = 0;
  int block_tokens = 0;
};

// Per token of a step: its position and where its sequence's block table starts in tables.
struct DeviceTokens {
  const int32_t* pos = nullptr;
  const int32_t* table_offset = nullptr;
  const int32_t* tables = nullptr;
};

// x: rows x cols floats (cols % 32 == 0) -> rows x cols/32 blocks.
void quantize_q8(const float* x, int rows, int cols, BlockQ8* out, cudaStream_t stream);

// out[t * out_stride + r] = W[r] . x_t (accumulate: out += instead of =, the residual add).
void matmul(const DeviceWeight& w, const float* x, const BlockQ8* xq, int n_tokens, float* out,
            int64_t out_stride, cudaStream_t stream, bool accumulate = false);

// One input through several weights in one launch (the q, k, v projections): part i writes
// out[i] with stride out_stride[i], exactly as matmul(w[i], ...) would. Every weight must have
// the same type and cols (std::invalid_argument otherwise); at most kMaxMatmulParts.
constexpr int kMaxMatmulParts = 3;
void matmul_parts(std::span<const DeviceWeight> w, std::span<float* const> out,
                  std::span<const int64_t> out_stride, const float* x, const BlockQ8* xq,
                  int n_tokens, cudaStream_t stream);

// The feed-forward's first half in one launch: act[t * rows + r] = silu(gate[r] . x_t) *
// (up[r] . x_t), and act_q8 = its Q8 blocks (rows/32 per token), each value as the separate
// matmul and swiglu kernels compute it. Needs gate and up of one Q8-read type (uses_q8) and
// rows % 32 == 0 (ffn_swiglu_supported); std::invalid_argument otherwise.
bool ffn_swiglu_supported(const DeviceWeight& gate, const DeviceWeight& up);
void ffn_swiglu(const DeviceWeight& gate, const DeviceWeight& up, const BlockQ8* xq,
                int n_tokens, float* act, BlockQ8* act_q8, cudaStream_t stream);

// out[i] = table row ids[i] as f32 (n_tokens rows of table.cols).
void embed(const DeviceWeight& table, const int32_t* ids, int n_tokens, float* out,
           cudaStream_t stream);

// For each output row i (source row s = gather ? gather[i] : i): out[i] = rmsnorm(x[s]) *
// weight, rows of n floats; when out_q8 is set (n % 32 == 0), also its Q8 blocks, exactly
// as quantize_q8 of out.
void rmsnorm(const float* x, const float* weight, float eps, int n, int n_rows,
             const int32_t* gather, float* out, BlockQ8* out_q8, cudaStream_t stream);

// cos/sin[t * head_dim/2 + i] of pos[t] * base^(-2i / head_dim).
void rope_angles(const int32_t* pos, int n_tokens, int head_dim, float freq_base, float* cos,
                 float* sin, cudaStream_t stream);

// Adds the biases (each may be null), rotates q and k and stores k, v of every token into
// layer `layer` of the pool. q: n_tokens x n_head*head_dim; k, v: n_tokens x n_head_kv*head_dim.
void qkv_finish(float* q, float* k, float* v, const float* bq, const float* bk, const float* bv,
                int n_tokens, int n_head, RopeLayout layout, const float* cos, const float* sin,
                const DeviceKv& kv, int layer, const DeviceTokens& tokens, cudaStream_t stream);

// out (n_tokens x n_head*head_dim) = causal attention of q over the pool: token t attends to
// positions [0, pos[t]] of its sequence; one CTA per (token, head), its warps splitting the
// positions. When out_q8 is set (head_dim % 32 == 0), also out's Q8 blocks, exactly as
// quantize_q8 of out.
void attention(const float* q, int n_tokens, int n_head, float scale, const DeviceKv& kv,
               int layer, const DeviceTokens& tokens, float* out, BlockQ8* out_q8,
               cudaStream_t stream);

// gate = silu(gate) * up, n elements.
void swiglu(float* gate, const float* up, int64_t n, cudaStream_t stream);

// The largest head_dim attention() accepts.
constexpr int kMaxHeadDim = 256;

}  // namespace troupe::cuda
