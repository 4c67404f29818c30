#include "gpu/matmul.hpp"

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>

#include "gpu/matmul_kernels.hpp"
#include "gpu/matmul_packed_kernels.hpp"

namespace troupe {

namespace matmul_detail {

uint8_t* thread_scratch(int slot, size_t bytes) {
  struct Buffer {
    std::unique_ptr<uint8_t, decltype(&std::free)> data{nullptr, &std::free};
    size_t size = 0;
  };
  thread_local Buffer buffers[3];
  Buffer& buffer = buffers[slot];
  if (buffer.size < bytes) {
    const size_t size = (std::max(bytes, buffer.size * 2) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, size);
    if (p == nullptr) throw std::bad_alloc();
    buffer.data.reset(static_cast<uint8_t*>(p));
    buffer.size = size;
  }
  return buffer.data.get();
}

}  // namespace matmul_detail

namespace {

bool is_k_quant(GgmlType type) {
  return type == GgmlType::Q4_K || type == GgmlType::Q5_K || type == GgmlType::Q6_K;
}

void run_kernel(KernelIsa isa, const matmul_detail::Job& job) {
  switch (isa) {
    case KernelIsa::avx512: return matmul_detail::run_avx512(job);
    case KernelIsa::avx2: return matmul_detail::run_avx2(job);
    case KernelIsa::scalar: return matmul_detail::run_scalar(job);
  }
}

// K-quants: dequantize a few rows at a time into this thread's buffer, then multiply as F32.
void run_k_quant(KernelIsa isa, const matmul_detail::Job& job) {
  constexpr int64_t kGroupRows = 4;
  const WeightView& w = job.w;
  const size_t float_row_bytes = static_cast<size_t>(w.cols) * sizeof(float);
  float* rows = reinterpret_cast<float*>(
      matmul_detail::thread_scratch(1, kGroupRows * float_row_bytes));
  for (int64_t r0 = job.row_begin; r0 < job.row_end; r0 += kGroupRows) {
    const int64_t n = std::min(kGroupRows, job.row_end - r0);
    for (int64_t i = 0; i < n; ++i)
      dequantize_row(w.type, w.data + (r0 + i) * w.row_bytes, rows + i * w.cols, w.cols);
    const WeightView group{GgmlType::F32, reinterpret_cast<const uint8_t*>(rows), n, w.cols,
                           float_row_bytes};
    run_kernel(isa, {group, job.x, nullptr, job.n_tokens, job.out + r0, job.out_stride, 0, n});
  }
}

void run_packed_kernel(KernelIsa isa, const matmul_detail::PackedJob& job) {
  switch (isa) {
    case KernelIsa::avx512: return matmul_detail::run_packed_avx512(job);
    case KernelIsa::avx2: return matmul_detail::run_packed_avx2(job);
    case KernelIsa::scalar: return matmul_detail::run_packed_scalar(job);
  }
}

void check_packed_copy(const WeightView& w) {
  const PackedMatrix& p = *w.packed;
  if (p.type() != w.type || p.rows() != w.rows || p.cols() != w.cols)
    throw std::invalid_argument("matmul: the packed copy (" + std::string(traits_of(p.type()).name) +
                                ", " + std::to_string(p.rows()) + " x " + std::to_string(p.cols()) +
                                ") is not of this weight (" + std::string(traits_of(w.type).name) +
                                ", " + std::to_string(w.rows) + " x " + std::to_string(w.cols) + ")");
}

}  // namespace

bool matmul_supports(GgmlType type) {
  switch (type) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16:
    case GgmlType::Q4_0: case GgmlType::Q4_1: case GgmlType::Q5_0: case GgmlType::Q5_1:
    case GgmlType::Q8_0: case GgmlType::Q4_K: case GgmlType::Q5_K: case GgmlType::Q6_K:
      return true;
    default:
      return false;
  }
}

bool matmul_uses_q8(GgmlType type) {
  return type == GgmlType::Q4_0 || type == GgmlType::Q4_1 || type == GgmlType::Q5_0 ||
         type == GgmlType::Q5_1 || type == GgmlType::Q8_0;
}

void matmul_with_isa(KernelIsa isa, const WeightView& w, const float* x, const BlockQ8* xq,
                     int64_t n_tokens, float* out, int64_t out_stride, int64_t row_begin,
                     int64_t row_end) {
  const GgmlTypeTraits& traits = traits_of(w.type);
  if (!matmul_supports(w.type))
    throw std::invalid_argument("matmul: weight type " + std::string(traits.name) +
                                " is not supported");
  if (w.cols <= 0 || w.cols % traits.block_elems != 0)
    throw std::invalid_argument("matmul: row length " + std::to_string(w.cols) +
                                " must be a positive multiple of " +
                                std::to_string(traits.block_elems) + " for " +
                                std::string(traits.name) + " weights");
  if (ggml_row_bytes(w.type, w.cols) > w.row_bytes)
    throw std::invalid_argument("matmul: " + std::to_string(w.cols) + " " +
                                std::string(traits.name) + " elements do not fit rows of " +
                                std::to_string(w.row_bytes) + " bytes");
  if (row_begin < 0 || row_end > w.rows || row_begin > row_end)
    throw std::invalid_argument("matmul: row range [" + std::to_string(row_begin) + ", " +
                                std::to_string(row_end) + ") is outside the " +
                                std::to_string(w.rows) + " rows");
  if (n_tokens < 0 || out_stride < w.rows)
    throw std::invalid_argument("matmul: needs n_tokens >= 0 and out_stride >= rows");
  if (matmul_uses_q8(w.type) ? xq == nullptr : x == nullptr)
    throw std::invalid_argument("matmul: " + std::string(traits.name) +
                                (matmul_uses_q8(w.type) ? " weights need the Q8 activations"
                                                        : " weights need the float activations"));
  if (w.packed != nullptr) check_packed_copy(w);
  if (n_tokens == 0 || row_begin == row_end) return;
  if (isa > best_supported_isa()) isa = best_supported_isa();
  if (w.packed != nullptr)
    return run_packed_kernel(isa, {*w.packed, xq, n_tokens, out, out_stride, row_begin, row_end});
  const matmul_detail::Job job{w, x, xq, n_tokens, out, out_stride, row_begin, row_end};
  if (is_k_quant(w.type)) return run_k_quant(isa, job);
  run_kernel(isa, job);
}

void matmul(const WeightView& w, const float* x, const BlockQ8* xq, int64_t n_tokens,
            float* out, int64_t out_stride, int64_t row_begin, int64_t row_end) {
  static const KernelIsa isa = active_isa();
  matmul_with_isa(isa, w, x, xq, n_tokens, out, out_stride, row_begin, row_end);
}

}  // namespace troupe
