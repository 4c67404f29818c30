// Scalar reference kernels: one (row, token) at a time, integer block sums for quantized
// weights, sequential float sums for float weights.
#include <cstring>

#include "gpu/matmul_kernels.hpp"

namespace troupe::matmul_detail {

namespace {

// Weight block b of a quantized row as signed integers w[i] with W = d * w[i] + m.
struct IntBlock {
  int q[32];
  float d;
  float m;
};

void unpack_q5_bits(const uint8_t* qh_bytes, const uint8_t* qs, int offset, int* q) {
  uint32_t qh;
  std::memcpy(&qh, qh_bytes, sizeof qh);
  for (int j = 0; j < 16; ++j) {
    q[j] = ((qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1) << 4)) - offset;
    q[j + 16] = ((qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4)) - offset;
  }
}

void load_block(GgmlType type, const uint8_t* row, int64_t b, IntBlock& out) {
  out.m = 0.0f;
  switch (type) {
    case GgmlType::Q4_0: {
      const auto& blk = reinterpret_cast<const BlockQ4_0*>(row)[b];
      out.d = fp16_to_float(blk.d);
      for (int j = 0; j < 16; ++j) {
        out.q[j] = (blk.qs[j] & 0x0F) - 8;
        out.q[j + 16] = (blk.qs[j] >> 4) - 8;
      }
      return;
    }
    case GgmlType::Q4_1: {
      const auto& blk = reinterpret_cast<const BlockQ4_1*>(row)[b];
      out.d = fp16_to_float(blk.d);
      out.m = fp16_to_float(blk.m);
      for (int j = 0; j < 16; ++j) {
        out.q[j] = blk.qs[j] & 0x0F;
        out.q[j + 16] = blk.qs[j] >> 4;
      }
      return;
    }
    case GgmlType::Q5_0: {
      const auto& blk = reinterpret_cast<const BlockQ5_0*>(row)[b];
      out.d = fp16_to_float(blk.d);
      unpack_q5_bits(blk.qh, blk.qs, 16, out.q);
      return;
    }
    case GgmlType::Q5_1: {
      const auto& blk = reinterpret_cast<const BlockQ5_1*>(row)[b];
      out.d = fp16_to_float(blk.d);
      out.m = fp16_to_float(blk.m);
      unpack_q5_bits(blk.qh, blk.qs, 0, out.q);
      return;
    }
    default: {  // Q8_0
      const auto& blk = reinterpret_cast<const BlockQ8_0*>(row)[b];
      out.d = fp16_to_float(blk.d);
      for (int j = 0; j < 32; ++j) out.q[j] = blk.qs[j];
      return;
    }
  }
}

float weight_at(GgmlType type, const uint8_t* row, int64_t i) {
  uint16_t h;
  switch (type) {
    case GgmlType::F32: {
      float f;
      std::memcpy(&f, row + 4 * i, 4);
      return f;
    }
    case GgmlType::F16:
      std::memcpy(&h, row + 2 * i, 2);
      return fp16_to_float(h);
    default:  // BF16
      std::memcpy(&h, row + 2 * i, 2);
      return bf16_to_float(h);
  }
}

}  // namespace

void run_scalar(const Job& job) {
  const WeightView& w = job.w;
  const bool quantized = traits_of(w.type).quantized;
  const int64_t nb = w.cols / 32;
  IntBlock blk;
  for (int64_t r = job.row_begin; r < job.row_end; ++r) {
    const uint8_t* row = w.data + r * w.row_bytes;
    for (int64_t t = 0; t < job.n_tokens; ++t) {
      float sum = 0.0f;
      if (quantized) {
        const BlockQ8* xt = job.xq + t * nb;
        for (int64_t b = 0; b < nb; ++b) {
          load_block(w.type, row, b, blk);
          int32_t isum = 0;
          for (int j = 0; j < 32; ++j) isum += blk.q[j] * xt[b].qs[j];
          sum += blk.d * xt[b].d * static_cast<float>(isum) + blk.m * xt[b].s;
        }
      } else {
        const float* xt = job.x + t * w.cols;
        for (int64_t i = 0; i < w.cols; ++i) sum += weight_at(w.type, row, i) * xt[i];
      }
      job.out[t * job.out_stride + r] = sum;
    }
  }
}

}  // namespace troupe::matmul_detail
