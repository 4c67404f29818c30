#include "gpu/cuda/kernels.hpp"

#include <cuda_fp16.h>

#include <stdexcept>
#include <string>

namespace troupe::cuda {

namespace {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xFFFFFFFFu;

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}
__device__ __forceinline__ int warp_sum_int(int v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

__device__ __forceinline__ float half_bits_to_float(uint16_t bits) {
  return __half2float(__ushort_as_half(bits));
}
__device__ __forceinline__ float bf16_bits_to_float(uint16_t bits) {
  return __uint_as_float(uint32_t(bits) << 16);
}
__device__ __forceinline__ uint32_t load_u16_pair(const uint8_t* p) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(p);
  return uint32_t(h[0]) | (uint32_t(h[1]) << 16);
}

// ---- Q8 activations -------------------------------------------------------------------

// A warp quantizes one block of 32 (lane i holds element i) as quantize_row_q8 does.
__device__ __forceinline__ void quantize_block(float v, BlockQ8& out, int lane) {
  const float amax = warp_max(fabsf(v));
  const float d = amax / 127.0f;
  const float inv_d = d != 0.0f ? 1.0f / d : 0.0f;
  const int q = int(rintf(__fmul_rn(v, inv_d)));
  const int sum = warp_sum_int(q);
  out.qs[lane] = int8_t(q);
  if (lane == 0) {
    out.d = d;
    out.s = __fmul_rn(d, float(sum));
  }
}

// One warp per block of 32.
__global__ void quantize_q8_kernel(const float* x, int64_t n_blocks, BlockQ8* out) {
  const int64_t block = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (block >= n_blocks) return;
  quantize_block(x[block * 32 + lane], out[block], lane);
}

// ---- matmul ---------------------------------------------------------------------------

constexpr int kRowsPerCta = 4;  // one warp per output row

// Weight block b of a quantized row as 8 packed int8x4 words w (elements 4i..4i+3 in word i,
// unsigned nibbles for Q4) with W = d * (w - offset) + m.
template <GgmlType T>
struct QuantBlock;

template <>
struct QuantBlock<GgmlType::Q4_0> {
  static constexpr int kBytes = 18;
  static constexpr int kOffset = 8;
  __device__ static void load(const uint8_t* p, int (&w)[8], float& d, float& m) {
    d = half_bits_to_float(*reinterpret_cast<const uint16_t*>(p));
    m = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint32_t qs = load_u16_pair(p + 2 + 4 * i);
      w[i] = int(qs & 0x0F0F0F0Fu);
      w[i + 4] = int((qs >> 4) & 0x0F0F0F0Fu);
    }
  }
};

template <>
struct QuantBlock<GgmlType::Q4_1> {
  static constexpr int kBytes = 20;
  static constexpr int kOffset = 0;
  __device__ static void load(const uint8_t* p, int (&w)[8], float& d, float& m) {
    const uint32_t dm = *reinterpret_cast<const uint32_t*>(p);
    d = half_bits_to_float(uint16_t(dm & 0xFFFF));
    m = half_bits_to_float(uint16_t(dm >> 16));
    const uint32_t* qs = reinterpret_cast<const uint32_t*>(p + 4);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      w[i] = int(qs[i] & 0x0F0F0F0Fu);
      w[i + 4] = int((qs[i] >> 4) & 0x0F0F0F0Fu);
    }
  }
};

template <>
struct QuantBlock<GgmlType::Q8_0> {
  static constexpr int kBytes = 34;
  static constexpr int kOffset = 0;
  __device__ static void load(const uint8_t* p, int (&w)[8], float& d, float& m) {
    d = half_bits_to_float(*reinterpret_cast<const uint16_t*>(p));
    m = 0.0f;
#pragma unroll
    for (int i = 0; i < 8; ++i) w[i] = int(load_u16_pair(p + 2 + 4 * i));
  }
};

// The weights one matmul launch multiplies: parts of `rows` rows each, stacked (a warp's row
// index runs through part 0's rows, then part 1's...), all of one type and row length.
struct MatmulTargets {
  const uint8_t* w[kMaxMatmulParts];
  int64_t rows[kMaxMatmulParts];
  float* out[kMaxMatmulParts];
  int64_t out_stride[kMaxMatmulParts];
  int n_parts;
  int64_t total_rows;
};

// The part and the row in it of stacked row `row`; false past the last part.
struct TargetRow {
  const uint8_t* w;
  float* out;
  int64_t stride;
  int64_t row;
};
__device__ __forceinline__ bool target_row(const MatmulTargets& t, int64_t row, size_t row_bytes,
                                           TargetRow& r) {
#pragma unroll
  for (int p = 0; p < kMaxMatmulParts; ++p) {
    if (p >= t.n_parts) break;
    if (row < t.rows[p]) {
      r = {t.w[p] + row * row_bytes, t.out[p], t.out_stride[p], row};
      return true;
    }
    row -= t.rows[p];
  }
  return false;
}

// One weight block against one Q8 block: d * xd * (w . xq) + m * xs, with the integer dot
// products of the CPU kernels.
template <GgmlType T>
__device__ __forceinline__ float block_dot(const int (&wq)[8], float d, float m,
                                           const BlockQ8& xb) {
  const int* xs = reinterpret_cast<const int*>(xb.qs);
  int isum = 0;
#pragma unroll
  for (int i = 0; i < 8; ++i) isum = __dp4a(wq[i], xs[i], isum);
  if (QuantBlock<T>::kOffset != 0) {
    int xsum = 0;
#pragma unroll
    for (int i = 0; i < 8; ++i) xsum = __dp4a(0x01010101, xs[i], xsum);
    isum -= QuantBlock<T>::kOffset * xsum;
  }
  return d * xb.d * float(isum) + m * xb.s;
}

__device__ __forceinline__ void store(float* out, float value, bool accumulate) {
  *out = accumulate ? *out + value : value;
}

// Warp per row, lane per weight block (strided), kTokens tokens per pass of the weights.
template <GgmlType T, int kTokens>
__global__ void matmul_q_kernel(MatmulTargets targets, int64_t n_blocks, size_t row_bytes,
                                const BlockQ8* xq, int n_tokens, bool accumulate) {
  const int64_t stacked = int64_t(blockIdx.x) * kRowsPerCta + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  const int t0 = blockIdx.y * kTokens;
  TargetRow target;
  if (!target_row(targets, stacked, row_bytes, target)) return;
  float acc[kTokens];
#pragma unroll
  for (int t = 0; t < kTokens; ++t) acc[t] = 0.0f;
  for (int64_t b = lane; b < n_blocks; b += kWarp) {
    int wq[8];
    float d, m;
    QuantBlock<T>::load(target.w + b * QuantBlock<T>::kBytes, wq, d, m);
#pragma unroll
    for (int t = 0; t < kTokens; ++t) {
      if (t0 + t >= n_tokens) break;
      acc[t] += block_dot<T>(wq, d, m, xq[int64_t(t0 + t) * n_blocks + b]);
    }
  }
#pragma unroll
  for (int t = 0; t < kTokens; ++t) {
    const float sum = warp_sum(acc[t]);
    if (lane == 0 && t0 + t < n_tokens)
      store(target.out + int64_t(t0 + t) * target.stride + target.row, sum, accumulate);
  }
}

template <GgmlType T>
__device__ __forceinline__ float float_weight(const uint8_t* row, int64_t i) {
  if constexpr (T == GgmlType::F32) return reinterpret_cast<const float*>(row)[i];
  if constexpr (T == GgmlType::F16)
    return half_bits_to_float(reinterpret_cast<const uint16_t*>(row)[i]);
  return bf16_bits_to_float(reinterpret_cast<const uint16_t*>(row)[i]);
}

template <GgmlType T, int kTokens>
__global__ void matmul_f_kernel(MatmulTargets targets, int64_t cols, size_t row_bytes,
                                const float* x, int n_tokens, bool accumulate) {
  const int64_t stacked = int64_t(blockIdx.x) * kRowsPerCta + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  const int t0 = blockIdx.y * kTokens;
  TargetRow target;
  if (!target_row(targets, stacked, row_bytes, target)) return;
  float acc[kTokens];
#pragma unroll
  for (int t = 0; t < kTokens; ++t) acc[t] = 0.0f;
  for (int64_t i = lane; i < cols; i += kWarp) {
    const float wi = float_weight<T>(target.w, i);
#pragma unroll
    for (int t = 0; t < kTokens; ++t) {
      if (t0 + t >= n_tokens) break;
      acc[t] += wi * x[int64_t(t0 + t) * cols + i];
    }
  }
#pragma unroll
  for (int t = 0; t < kTokens; ++t) {
    const float sum = warp_sum(acc[t]);
    if (lane == 0 && t0 + t < n_tokens)
      store(target.out + int64_t(t0 + t) * target.stride + target.row, sum, accumulate);
  }
}

template <GgmlType T, int kTokens>
void launch_matmul_tokens(const MatmulTargets& targets, int64_t cols, size_t row_bytes,
                          const float* x, const BlockQ8* xq, int n_tokens, bool accumulate,
                          cudaStream_t stream) {
  const dim3 grid(unsigned((targets.total_rows + kRowsPerCta - 1) / kRowsPerCta),
                  unsigned((n_tokens + kTokens - 1) / kTokens));
  const dim3 block(kRowsPerCta * kWarp);
  if constexpr (T == GgmlType::Q4_0 || T == GgmlType::Q4_1 || T == GgmlType::Q8_0)
    matmul_q_kernel<T, kTokens><<<grid, block, 0, stream>>>(targets, cols / 32, row_bytes, xq,
                                                             n_tokens, accumulate);
  else
    matmul_f_kernel<T, kTokens><<<grid, block, 0, stream>>>(targets, cols, row_bytes, x,
                                                             n_tokens, accumulate);
}

template <GgmlType T>
void launch_matmul_type(const MatmulTargets& targets, int64_t cols, size_t row_bytes,
                        const float* x, const BlockQ8* xq, int n_tokens, bool accumulate,
                        cudaStream_t stream) {
  if (n_tokens == 1)
    launch_matmul_tokens<T, 1>(targets, cols, row_bytes, x, xq, n_tokens, accumulate, stream);
  else if (n_tokens <= 4)
    launch_matmul_tokens<T, 4>(targets, cols, row_bytes, x, xq, n_tokens, accumulate, stream);
  else
    launch_matmul_tokens<T, 8>(targets, cols, row_bytes, x, xq, n_tokens, accumulate, stream);
}

void launch_matmul(GgmlType type, const MatmulTargets& targets, int64_t cols, size_t row_bytes,
                   const float* x, const BlockQ8* xq, int n_tokens, bool accumulate,
                   cudaStream_t stream) {
  switch (type) {
    case GgmlType::Q4_0: return launch_matmul_type<GgmlType::Q4_0>(targets, cols, row_bytes, x, xq, n_tokens, accumulate, stream);
    case GgmlType::Q4_1: return launch_matmul_type<GgmlType::Q4_1>(targets, cols, row_bytes, x, xq, n_tokens, accumulate, stream);
    case GgmlType::Q8_0: return launch_matmul_type<GgmlType::Q8_0>(targets, cols, row_bytes, x, xq, n_tokens, accumulate, stream);
    case GgmlType::F32: return launch_matmul_type<GgmlType::F32>(targets, cols, row_bytes, x, xq, n_tokens, accumulate, stream);
    case GgmlType::F16: return launch_matmul_type<GgmlType::F16>(targets, cols, row_bytes, x, xq, n_tokens, accumulate, stream);
    case GgmlType::BF16: return launch_matmul_type<GgmlType::BF16>(targets, cols, row_bytes, x, xq, n_tokens, accumulate, stream);
    default:
      throw std::invalid_argument("cuda matmul: weight type " +
                                  std::string(traits_of(type).name) + " is not supported");
  }
}

// ---- feed-forward: gate, up, SwiGLU, Q8 -----------------------------------------------

constexpr int kFfnRowsPerCta = 32;  // one Q8 block of the result; one warp per row

template <GgmlType T, int kTokens>
__global__ void __launch_bounds__(kFfnRowsPerCta * kWarp)
    ffn_swiglu_kernel(const uint8_t* gate, const uint8_t* up, int64_t rows, int64_t n_blocks,
                      size_t row_bytes, const BlockQ8* xq, int n_tokens, float* act,
                      BlockQ8* act_q8) {
  __shared__ float values[kTokens][kFfnRowsPerCta];
  const int warp = threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  const int64_t row = int64_t(blockIdx.x) * kFfnRowsPerCta + warp;
  const int t0 = blockIdx.y * kTokens;
  float g[kTokens], u[kTokens];
#pragma unroll
  for (int t = 0; t < kTokens; ++t) g[t] = u[t] = 0.0f;
  for (int64_t b = lane; b < n_blocks; b += kWarp) {
    int gq[8], uq[8];
    float gd, gm, ud, um;
    QuantBlock<T>::load(gate + row * row_bytes + b * QuantBlock<T>::kBytes, gq, gd, gm);
    QuantBlock<T>::load(up + row * row_bytes + b * QuantBlock<T>::kBytes, uq, ud, um);
#pragma unroll
    for (int t = 0; t < kTokens; ++t) {
      if (t0 + t >= n_tokens) break;
      const BlockQ8& xb = xq[int64_t(t0 + t) * n_blocks + b];
      g[t] += block_dot<T>(gq, gd, gm, xb);
      u[t] += block_dot<T>(uq, ud, um, xb);
    }
  }
#pragma unroll
  for (int t = 0; t < kTokens; ++t) {
    const float gs = warp_sum(g[t]);
    const float us = warp_sum(u[t]);
    const float value = gs / (1.0f + expf(-gs)) * us;
    if (lane == 0) {
      values[t][warp] = value;
      if (t0 + t < n_tokens) act[int64_t(t0 + t) * rows + row] = value;
    }
  }
  __syncthreads();
  if (warp < kTokens && t0 + warp < n_tokens)
    quantize_block(values[warp][lane], act_q8[int64_t(t0 + warp) * (rows / 32) + blockIdx.x],
                   lane);
}

template <GgmlType T, int kTokens>
void launch_ffn_tokens(const DeviceWeight& gate, const DeviceWeight& up, const BlockQ8* xq,
                       int n_tokens, float* act, BlockQ8* act_q8, cudaStream_t stream) {
  const dim3 grid(unsigned(gate.rows / kFfnRowsPerCta),
                  unsigned((n_tokens + kTokens - 1) / kTokens));
  ffn_swiglu_kernel<T, kTokens><<<grid, kFfnRowsPerCta * kWarp, 0, stream>>>(
      gate.data, up.data, gate.rows, gate.cols / 32, gate.row_bytes, xq, n_tokens, act, act_q8);
}

template <GgmlType T>
void launch_ffn_type(const DeviceWeight& gate, const DeviceWeight& up, const BlockQ8* xq,
                     int n_tokens, float* act, BlockQ8* act_q8, cudaStream_t stream) {
  if (n_tokens == 1)
    launch_ffn_tokens<T, 1>(gate, up, xq, n_tokens, act, act_q8, stream);
  else if (n_tokens <= 4)
    launch_ffn_tokens<T, 4>(gate, up, xq, n_tokens, act, act_q8, stream);
  else
    launch_ffn_tokens<T, 8>(gate, up, xq, n_tokens, act, act_q8, stream);
}

// ---- embedding ------------------------------------------------------------------------

__device__ float weight_element(GgmlType type, const uint8_t* row, int64_t i) {
  const int64_t b = i / 32;
  const int j = int(i % 32);
  switch (type) {
    case GgmlType::F32: return float_weight<GgmlType::F32>(row, i);
    case GgmlType::F16: return float_weight<GgmlType::F16>(row, i);
    case GgmlType::BF16: return float_weight<GgmlType::BF16>(row, i);
    case GgmlType::Q4_0: {
      const uint8_t* p = row + b * 18;
      const float d = half_bits_to_float(*reinterpret_cast<const uint16_t*>(p));
      const uint8_t q = p[2 + (j % 16)];
      return d * float((j < 16 ? (q & 0x0F) : (q >> 4)) - 8);
    }
    case GgmlType::Q4_1: {
      const uint8_t* p = row + b * 20;
      const float d = half_bits_to_float(*reinterpret_cast<const uint16_t*>(p));
      const float m = half_bits_to_float(*reinterpret_cast<const uint16_t*>(p + 2));
      const uint8_t q = p[4 + (j % 16)];
      return d * float(j < 16 ? (q & 0x0F) : (q >> 4)) + m;
    }
    default: {  // Q8_0
      const uint8_t* p = row + b * 34;
      const float d = half_bits_to_float(*reinterpret_cast<const uint16_t*>(p));
      return d * float(reinterpret_cast<const int8_t*>(p + 2)[j]);
    }
  }
}

__global__ void embed_kernel(GgmlType type, const uint8_t* table, size_t row_bytes,
                             int64_t cols, const int32_t* ids, float* out) {
  const int t = blockIdx.x;
  const uint8_t* row = table + size_t(ids[t]) * row_bytes;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x)
    out[int64_t(t) * cols + i] = weight_element(type, row, i);
}

// ---- norms, rope, swiglu --------------------------------------------------------------

constexpr int kNormThreads = 256;

__global__ void rmsnorm_kernel(const float* x, const float* weight, float eps, int n,
                               const int32_t* gather, float* out, BlockQ8* out_q8) {
  const int i = blockIdx.x;
  const int64_t src = gather ? gather[i] : i;
  const float* xr = x + src * n;
  float sum = 0.0f;
  for (int c = threadIdx.x; c < n; c += blockDim.x) sum += xr[c] * xr[c];
  __shared__ float partial[kNormThreads / kWarp];
  sum = warp_sum(sum);
  if (threadIdx.x % kWarp == 0) partial[threadIdx.x / kWarp] = sum;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < kNormThreads / kWarp; ++w) total += partial[w];
  const float scale = 1.0f / sqrtf(total / float(n) + eps);
  float* row = out + int64_t(i) * n;
  if (!out_q8) {
    for (int c = threadIdx.x; c < n; c += blockDim.x) row[c] = xr[c] * scale * weight[c];
    return;
  }
  const int lane = threadIdx.x % kWarp;
  for (int b = threadIdx.x / kWarp; b < n / 32; b += kNormThreads / kWarp) {
    const int c = b * 32 + lane;
    const float v = xr[c] * scale * weight[c];
    row[c] = v;
    quantize_block(v, out_q8[int64_t(i) * (n / 32) + b], lane);
  }
}

__global__ void rope_angles_kernel(const int32_t* pos, int head_dim, float freq_base,
                                   float* cos_out, float* sin_out) {
  const int t = blockIdx.x;
  const int half = head_dim / 2;
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const double freq = pow(double(freq_base), -2.0 * i / head_dim);
    const double angle = double(pos[t]) * freq;
    cos_out[t * half + i] = float(cos(angle));
    sin_out[t * half + i] = float(sin(angle));
  }
}

__device__ __forceinline__ uint16_t* kv_rows(const DeviceKv& kv, int layer, int32_t block,
                                             int k_or_v, int kv_head) {
  const size_t head_stride = size_t(kv.block_tokens) * kv.head_dim;
  const size_t block_stride = size_t(kv.n_layer) * 2 * kv.n_head_kv * head_stride;
  return kv.data + size_t(block) * block_stride +
         ((size_t(layer) * 2 + k_or_v) * kv.n_head_kv + kv_head) * head_stride;
}

__device__ void rotate(float* heads, int n_heads, int head_dim, RopeLayout layout,
                       const float* cos, const float* sin) {
  const int half = head_dim / 2;
  for (int e = threadIdx.x; e < n_heads * half; e += blockDim.x) {
    const int h = e / half, i = e % half;
    float* v = heads + h * head_dim;
    const int a = layout == RopeLayout::Adjacent ? 2 * i : i;
    const int b = layout == RopeLayout::Adjacent ? 2 * i + 1 : i + half;
    const float x0 = v[a], x1 = v[b];
    v[a] = x0 * cos[i] - x1 * sin[i];
    v[b] = x0 * sin[i] + x1 * cos[i];
  }
}

__global__ void qkv_finish_kernel(float* q, float* k, float* v, const float* bq,
                                  const float* bk, const float* bv, int n_head,
                                  RopeLayout layout, const float* cos, const float* sin,
                                  DeviceKv kv, int layer, DeviceTokens tokens) {
  const int t = blockIdx.x;
  const int d = kv.head_dim;
  const int q_dim = n_head * d, kv_dim = kv.n_head_kv * d;
  float* qt = q + int64_t(t) * q_dim;
  float* kt = k + int64_t(t) * kv_dim;
  float* vt = v + int64_t(t) * kv_dim;
  for (int c = threadIdx.x; c < q_dim; c += blockDim.x)
    if (bq) qt[c] += bq[c];
  for (int c = threadIdx.x; c < kv_dim; c += blockDim.x) {
    if (bk) kt[c] += bk[c];
    if (bv) vt[c] += bv[c];
  }
  __syncthreads();
  const float* ct = cos + t * (d / 2);
  const float* st = sin + t * (d / 2);
  rotate(qt, n_head, d, layout, ct, st);
  rotate(kt, kv.n_head_kv, d, layout, ct, st);
  __syncthreads();
  const int32_t pos = tokens.pos[t];
  const int32_t block = tokens.tables[tokens.table_offset[t] + pos / kv.block_tokens];
  const int slot = pos % kv.block_tokens;
  for (int c = threadIdx.x; c < kv_dim; c += blockDim.x) {
    const int h = c / d, i = c % d;
    kv_rows(kv, layer, block, 0, h)[slot * d + i] = __half_as_ushort(__float2half_rn(kt[c]));
    kv_rows(kv, layer, block, 1, h)[slot * d + i] = __half_as_ushort(__float2half_rn(vt[c]));
  }
}

constexpr int kAttentionWarps = 4;

// One CTA per (token, query head); warp w takes the windows of 32 positions w, w + 4, ...:
// one position per lane for the scores, then each lane accumulates its share of the output
// dimensions (online softmax). The warps' partial results merge in shared memory.
__global__ void attention_kernel(const float* q, int n_head, float scale, DeviceKv kv,
                                 int layer, DeviceTokens tokens, float* out, BlockQ8* out_q8) {
  __shared__ float q_shared[kMaxHeadDim];
  __shared__ float part_max[kAttentionWarps], part_sum[kAttentionWarps];
  __shared__ float part_acc[kAttentionWarps][kMaxHeadDim];
  const int warp = threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  const int t = int(blockIdx.x / unsigned(n_head));
  const int head = int(blockIdx.x % unsigned(n_head));
  const int d = kv.head_dim;
  const int kv_head = head / (n_head / kv.n_head_kv);
  const int64_t at = int64_t(t) * n_head * d + int64_t(head) * d;
  for (int i = threadIdx.x; i < d; i += blockDim.x) q_shared[i] = q[at + i];
  __syncthreads();

  const int32_t last = tokens.pos[t];
  const int32_t* table = tokens.tables + tokens.table_offset[t];
  constexpr int kDimsPerLane = kMaxHeadDim / kWarp;
  float acc[kDimsPerLane];
#pragma unroll
  for (int j = 0; j < kDimsPerLane; ++j) acc[j] = 0.0f;
  float running_max = -INFINITY, running_sum = 0.0f;

  for (int32_t p0 = warp * kWarp; p0 <= last; p0 += kWarp * kAttentionWarps) {
    const int32_t p = p0 + lane;
    float score = -INFINITY;
    if (p <= last) {
      const __half2* krow = reinterpret_cast<const __half2*>(
          kv_rows(kv, layer, table[p / kv.block_tokens], 0, kv_head) + (p % kv.block_tokens) * d);
      float dot = 0.0f;
      for (int i = 0; i < d / 2; ++i) {
        const float2 k2 = __half22float2(krow[i]);
        dot += q_shared[2 * i] * k2.x;
        dot += q_shared[2 * i + 1] * k2.y;
      }
      score = dot * scale;
    }
    const float new_max = fmaxf(running_max, warp_max(score));
    const float weight = p <= last ? expf(score - new_max) : 0.0f;
    const float correction = expf(running_max - new_max);
    running_sum = running_sum * correction + warp_sum(weight);
#pragma unroll
    for (int j = 0; j < kDimsPerLane; ++j) acc[j] *= correction;
    const int window = min(kWarp, last - p0 + 1);
    for (int s = 0; s < window; ++s) {
      const float ws = __shfl_sync(kFullMask, weight, s);
      const int32_t ps = p0 + s;
      const uint16_t* vrow = kv_rows(kv, layer, table[ps / kv.block_tokens], 1, kv_head) +
                             (ps % kv.block_tokens) * d;
#pragma unroll
      for (int j = 0; j < kDimsPerLane; ++j) {
        const int i = lane + j * kWarp;
        if (i < d) acc[j] += ws * half_bits_to_float(vrow[i]);
      }
    }
    running_max = new_max;
  }
#pragma unroll
  for (int j = 0; j < kDimsPerLane; ++j) {
    const int i = lane + j * kWarp;
    if (i < d) part_acc[warp][i] = acc[j];
  }
  if (lane == 0) {
    part_max[warp] = running_max;
    part_sum[warp] = running_sum;
  }
  __syncthreads();
  if (warp != 0) return;
  float top = -INFINITY;
  for (int w = 0; w < kAttentionWarps; ++w) top = fmaxf(top, part_max[w]);
  float factor[kAttentionWarps];
  float total = 0.0f;
  for (int w = 0; w < kAttentionWarps; ++w) {
    factor[w] = part_sum[w] > 0.0f ? expf(part_max[w] - top) : 0.0f;
    total += part_sum[w] * factor[w];
  }
  const int q_blocks = n_head * d / 32;
#pragma unroll
  for (int j = 0; j < kDimsPerLane; ++j) {
    const int i = lane + j * kWarp;
    if (j * kWarp >= d) break;  // uniform across the warp
    float v = 0.0f;
    for (int w = 0; w < kAttentionWarps; ++w)
      if (i < d) v += part_acc[w][i] * factor[w];
    v /= total;
    if (i < d) out[at + i] = v;
    if (out_q8) quantize_block(v, out_q8[int64_t(t) * q_blocks + (head * d) / 32 + j], lane);
  }
}

__global__ void swiglu_kernel(float* gate, const float* up, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float g = gate[i];
  gate[i] = g / (1.0f + expf(-g)) * up[i];
}

unsigned blocks_for(int64_t n, int threads) { return unsigned((n + threads - 1) / threads); }

}  // namespace

bool kernels_support(GgmlType type) {
  switch (type) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16:
    case GgmlType::Q4_0: case GgmlType::Q4_1: case GgmlType::Q8_0:
      return true;
    default:
      return false;
  }
}

bool uses_q8(GgmlType type) {
  return type == GgmlType::Q4_0 || type == GgmlType::Q4_1 || type == GgmlType::Q8_0;
}

void quantize_q8(const float* x, int rows, int cols, BlockQ8* out, cudaStream_t stream) {
  const int64_t n_blocks = int64_t(rows) * (cols / 32);
  constexpr int kThreads = 256;
  quantize_q8_kernel<<<blocks_for(n_blocks * kWarp, kThreads), kThreads, 0, stream>>>(
      x, n_blocks, out);
}

void matmul(const DeviceWeight& w, const float* x, const BlockQ8* xq, int n_tokens, float* out,
            int64_t out_stride, cudaStream_t stream, bool accumulate) {
  MatmulTargets targets{};
  targets.w[0] = w.data;
  targets.rows[0] = w.rows;
  targets.out[0] = out;
  targets.out_stride[0] = out_stride;
  targets.n_parts = 1;
  targets.total_rows = w.rows;
  launch_matmul(w.type, targets, w.cols, w.row_bytes, x, xq, n_tokens, accumulate, stream);
}

void matmul_parts(std::span<const DeviceWeight> w, std::span<float* const> out,
                  std::span<const int64_t> out_stride, const float* x, const BlockQ8* xq,
                  int n_tokens, cudaStream_t stream) {
  if (w.empty() || w.size() > size_t(kMaxMatmulParts) || out.size() != w.size() ||
      out_stride.size() != w.size())
    throw std::invalid_argument("cuda matmul_parts: 1 to " + std::to_string(kMaxMatmulParts) +
                                " weights, each with an output and a stride");
  MatmulTargets targets{};
  for (size_t p = 0; p < w.size(); ++p) {
    if (w[p].type != w[0].type || w[p].cols != w[0].cols)
      throw std::invalid_argument("cuda matmul_parts: the weights differ in type or row length");
    targets.w[p] = w[p].data;
    targets.rows[p] = w[p].rows;
    targets.out[p] = out[p];
    targets.out_stride[p] = out_stride[p];
    targets.total_rows += w[p].rows;
  }
  targets.n_parts = int(w.size());
  launch_matmul(w[0].type, targets, w[0].cols, w[0].row_bytes, x, xq, n_tokens, false, stream);
}

bool ffn_swiglu_supported(const DeviceWeight& gate, const DeviceWeight& up) {
  return gate.type == up.type && uses_q8(gate.type) && gate.rows == up.rows &&
         gate.cols == up.cols && gate.rows % kFfnRowsPerCta == 0;
}

void ffn_swiglu(const DeviceWeight& gate, const DeviceWeight& up, const BlockQ8* xq,
                int n_tokens, float* act, BlockQ8* act_q8, cudaStream_t stream) {
  if (!ffn_swiglu_supported(gate, up))
    throw std::invalid_argument("cuda ffn_swiglu: gate and up need one Q4_0/Q4_1/Q8_0 type, one "
                                "shape and rows a multiple of 32");
  switch (gate.type) {
    case GgmlType::Q4_0: return launch_ffn_type<GgmlType::Q4_0>(gate, up, xq, n_tokens, act, act_q8, stream);
    case GgmlType::Q4_1: return launch_ffn_type<GgmlType::Q4_1>(gate, up, xq, n_tokens, act, act_q8, stream);
    default: return launch_ffn_type<GgmlType::Q8_0>(gate, up, xq, n_tokens, act, act_q8, stream);
  }
}

void embed(const DeviceWeight& table, const int32_t* ids, int n_tokens, float* out,
           cudaStream_t stream) {
  if (!kernels_support(table.type))
    throw std::invalid_argument("cuda embed: weight type " +
                                std::string(traits_of(table.type).name) + " is not supported");
  embed_kernel<<<n_tokens, 256, 0, stream>>>(table.type, table.data, table.row_bytes,
                                             table.cols, ids, out);
}

void rmsnorm(const float* x, const float* weight, float eps, int n, int n_rows,
             const int32_t* gather, float* out, BlockQ8* out_q8, cudaStream_t stream) {
  if (out_q8 && n % 32 != 0)
    throw std::invalid_argument("cuda rmsnorm: Q8 output needs a row length divisible by 32");
  rmsnorm_kernel<<<n_rows, kNormThreads, 0, stream>>>(x, weight, eps, n, gather, out, out_q8);
}

void rope_angles(const int32_t* pos, int n_tokens, int head_dim, float freq_base, float* cos,
                 float* sin, cudaStream_t stream) {
  rope_angles_kernel<<<n_tokens, 64, 0, stream>>>(pos, head_dim, freq_base, cos, sin);
}

void qkv_finish(float* q, float* k, float* v, const float* bq, const float* bk, const float* bv,
                int n_tokens, int n_head, RopeLayout layout, const float* cos, const float* sin,
                const DeviceKv& kv, int layer, const DeviceTokens& tokens, cudaStream_t stream) {
  qkv_finish_kernel<<<n_tokens, 128, 0, stream>>>(q, k, v, bq, bk, bv, n_head, layout, cos, sin,
                                                  kv, layer, tokens);
}

void attention(const float* q, int n_tokens, int n_head, float scale, const DeviceKv& kv,
               int layer, const DeviceTokens& tokens, float* out, BlockQ8* out_q8,
               cudaStream_t stream) {
  if (out_q8 && kv.head_dim % 32 != 0)
    throw std::invalid_argument("cuda attention: Q8 output needs head_dim divisible by 32");
  attention_kernel<<<unsigned(n_tokens * n_head), kAttentionWarps * kWarp, 0, stream>>>(
      q, n_head, scale, kv, layer, tokens, out, out_q8);
}

void swiglu(float* gate, const float* up, int64_t n, cudaStream_t stream) {
  constexpr int kThreads = 256;
  swiglu_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream>>>(gate, up, n);
}

}  // namespace troupe::cuda
