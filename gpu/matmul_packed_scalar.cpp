// Scalar reference of the packed kernels: one (row, token) at a time, reading the packed
// layout, with exactly the float operations of the SIMD kernels (matmul_packed_kernels.hpp).
#include <cmath>
#include <cstring>

#include "gpu/matmul_packed_kernels.hpp"

namespace troupe::matmul_detail {

namespace {

float half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_float(h);
}

// Exact integer dot of lane j of block b's quant tile with one activation block.
int32_t block_dot(GgmlType type, const uint8_t* tile, int j, const BlockQ8& x) {
  int32_t sum = 0;
  if (type == GgmlType::Q8_0) {
    for (int k = 0; k < 8; ++k)
      for (int i = 0; i < 4; ++i)
        sum += (tile[64 * k + 4 * j + i] - 128) * x.qs[4 * k + i];
    return sum;
  }
  const int offset = type == GgmlType::Q4_0 ? 8 : 0;
  for (int k = 0; k < 4; ++k)
    for (int i = 0; i < 4; ++i) {
      const uint8_t byte = tile[64 * k + 4 * j + i];
      sum += ((byte & 0x0F) - offset) * x.qs[4 * k + i];
      sum += ((byte >> 4) - offset) * x.qs[16 + 4 * k + i];
    }
  return sum;
}

}  // namespace

void run_packed_scalar(const PackedJob& job) {
  const PackedMatrix& w = job.w;
  const int64_t nb = w.blocks();
  const size_t tile_bytes = PackedMatrix::tile_bytes(w.type());
  const bool has_min = w.type() == GgmlType::Q4_1;
  for_each_group(job, [&](const GroupLanes& lanes) {
    const uint8_t* group = w.group(lanes.group);
    const uint8_t* d_area = group + static_cast<size_t>(nb) * tile_bytes;
    const uint8_t* m_area = d_area + static_cast<size_t>(nb) * 32;
    for (int j = lanes.first; j < lanes.end; ++j) {
      for (int64_t t = 0; t < job.n_tokens; ++t) {
        const BlockQ8* x = job.xq + t * nb;
        float acc = 0.0f, acc_min = 0.0f;
        for (int64_t b = 0; b < nb; ++b) {
          const int32_t isum = block_dot(w.type(), group + b * tile_bytes, j, x[b]);
          const float scale = half_at(d_area + 32 * b + 2 * j) * x[b].d;
          acc = std::fma(static_cast<float>(isum), scale, acc);
          if (has_min) acc_min = std::fma(half_at(m_area + 32 * b + 2 * j), x[b].s, acc_min);
        }
        job.out[t * job.out_stride + lanes.group * kPackedGroupRows + j] = has_min ? acc + acc_min : acc;
      }
    }
  });
}

}  // namespace troupe::matmul_detail
