// Internal to gpu/matmul*.cpp: the packed kernels behind matmul() (layout: packed_matrix.hpp).
// Every ISA computes, for row r and token t, over blocks b in order:
//   isum    = the 32 integer products summed exactly, less offset * sum(x_q) where the
//             stored values carry an offset (Q4_0: 8; Q8_0 in the VNNI kernel: 128)
//   acc     = fma(float(isum), d_w * d_x, acc)
//   acc_min = fma(m_w, s_x, acc_min)  (Q4_1 only)
// and writes acc + acc_min (Q4_1) or acc, so results are bit-identical across ISAs, token
// tiles, row ranges and batch positions.
#pragma once

#include <algorithm>
#include <cstdint>

#include "gpu/matmul.hpp"

namespace troupe::matmul_detail {

struct PackedJob {
  const PackedMatrix& w;
  const BlockQ8* xq;
  int64_t n_tokens;
  float* out;
  int64_t out_stride;
  int64_t row_begin;
  int64_t row_end;
};

void run_packed_scalar(const PackedJob& job);
void run_packed_avx2(const PackedJob& job);
void run_packed_avx512(const PackedJob& job);

}  // namespace troupe::matmul_detail

namespace troupe::matmul_detail {
// Internal linkage on purpose: the ISA files are compiled with different flags.
namespace {

// Rows [first, end) of group g that the job writes, as lanes 0..15.
struct GroupLanes {
  int64_t group;
  int first;
  int end;
};

template <class Fn>
inline void for_each_group(const PackedJob& job, Fn&& fn) {
  const int64_t first_group = job.row_begin / kPackedGroupRows;
  const int64_t end_group = (job.row_end + kPackedGroupRows - 1) / kPackedGroupRows;
  for (int64_t g = first_group; g < end_group; ++g) {
    const int64_t base = g * kPackedGroupRows;
    fn(GroupLanes{g, static_cast<int>(std::max(job.row_begin, base) - base),
                  static_cast<int>(std::min(job.row_end, base + kPackedGroupRows) - base)});
  }
}

// Calls fn.template operator()<T>(t0) over tokens [t, n_tokens) in tiles of T tokens, then
// the remainder in tiles of T/2, T/4, ... (T a power of two).
template <int T, class Fn>
inline void for_each_token_tile(int64_t t, int64_t n_tokens, Fn& fn) {
  for (; t + T <= n_tokens; t += T) fn.template operator()<T>(t);
  if constexpr (T > 1) for_each_token_tile<T / 2>(t, n_tokens, fn);
}

// Fetches block b's quant tile and scales of `group` into the cache. The kernels call it for
// the next group while they work on block b of the current one, so that weights streamed from
// memory arrive one group ahead.
inline void prefetch_block(const uint8_t* group, int64_t nb, int64_t b, size_t tile_bytes,
                           bool has_min) {
  const uint8_t* tile = group + b * tile_bytes;
  for (size_t line = 0; line < tile_bytes; line += 64) __builtin_prefetch(tile + line, 0, 3);
  const uint8_t* d_area = group + nb * tile_bytes;
  __builtin_prefetch(d_area + 32 * b, 0, 3);
  if (has_min) __builtin_prefetch(d_area + nb * 32 + 32 * b, 0, 3);
}

// -offset * sum(x_q) of each of n_blocks activation blocks: the start value of a block's
// integer sum when the stored weights carry an offset.
inline void offset_corrections(const BlockQ8* xq, int64_t n_blocks, int32_t offset, int32_t* out) {
  for (int64_t i = 0; i < n_blocks; ++i) {
    int32_t sum = 0;
    for (int j = 0; j < 32; ++j) sum += xq[i].qs[j];
    out[i] = -offset * sum;
  }
}

}  // namespace
}  // namespace troupe::matmul_detail
