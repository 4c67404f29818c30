// Matrix x activations for the CPU backend: out[t * out_stride + r] = dot(W[r], x_t) for every
// token t < n_tokens and row r in [row_begin, row_end).
// - W is a WeightView over raw ggml rows (row r starts at data + r * row_bytes; cols elements).
// - x: n_tokens x cols floats, contiguous. xq: the same rows quantized with quantize_row_q8
//   (n_tokens x cols/32 blocks). Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 weights use xq with integer dot
//   products (the result is the dot of the dequantized weights with the dequantized xq);
//   F32, F16, BF16 use x with FMA; Q4_K, Q5_K, Q6_K use the slower path: each group of rows
//   is dequantized into a per-thread buffer, then multiplied with x like F32.
//   matmul_uses_q8(type) says which input a type reads; the other may be null.
// - Each weight row is read once for the whole batch: with one token, blocks are unpacked in
//   registers, 4 rows per pass; with several, each group of 4 rows is unpacked once into a
//   per-thread buffer and swept by a micro-kernel of 4 rows x 4 tokens (AVX-512) or
//   4 x 2 (AVX2). Call it once per weight for all tokens, and give threads row ranges
//   aligned to 4 (split(rows, parts, i, 4)).
// - Packed weights: when w.packed points at pack(w) (gpu/packed_matrix.hpp; Q4_0, Q4_1, Q8_0),
//   the packed kernels run instead: 16 rows per SIMD register, tiles of up to 8 tokens
//   (AVX-512) or 4 (AVX2) per weight load. Give threads row ranges aligned to
//   kPackedGroupRows (16); other ranges are correct but recompute the shared group.
//   Their results are bit-identical across scalar, AVX2 and AVX-512 (integer block sums,
//   then the same float operations in the same order) and agree with the unpacked kernels
//   within float rounding.
// - Kernels: AVX-512 VNNI, AVX2 or scalar, chosen once at run time by active_isa()
//   (TROUPE_CPU_KERNELS caps it); matmul_with_isa picks one explicitly (tests, benchmarks).
// - Determinism: for a given ISA, the value of out[t, r] depends only on W[r] and token t's
//   inputs: not on row_begin/row_end, the thread count, n_tokens or the token's position in
//   the batch (bit-identical). Different ISAs agree within float rounding (packed: exactly).
// - Thread safety: calls on disjoint output rows may run concurrently; scratch buffers are
//   per thread and grow only when a larger shape is first seen (no steady-state allocation).
// - Errors: std::invalid_argument for an unsupported type, cols not a multiple of the block
//   size, a bad row range, a missing input, or a packed copy of another shape or type.
#pragma once

#include <cstddef>
#include <cstdint>

#include "gpu/cpu_features.hpp"
#include "gpu/packed_matrix.hpp"
#include "gpu/quant.hpp"
#include "model/ggml_types.hpp"

namespace troupe {

struct WeightView {
  GgmlType type;
  const uint8_t* data;
  int64_t rows;
  int64_t cols;  // elements per row
  size_t row_bytes;
  const PackedMatrix* packed = nullptr;  // not owned; set by PackedWeights::attach
};

void matmul(const WeightView& w, const float* x, const BlockQ8* xq, int64_t n_tokens,
            float* out, int64_t out_stride, int64_t row_begin, int64_t row_end);

void matmul_with_isa(KernelIsa isa, const WeightView& w, const float* x, const BlockQ8* xq,
                     int64_t n_tokens, float* out, int64_t out_stride, int64_t row_begin,
                     int64_t row_end);

// True when matmul reads xq (integer path) for this weight type, false when it reads x.
bool matmul_uses_q8(GgmlType type);

// True when matmul accepts weights of this type.
bool matmul_supports(GgmlType type);

}  // namespace troupe
