// Internal to gpu/matmul*.cpp: the per-ISA kernels behind matmul(). Arguments are already
// validated by matmul(); row_begin/row_end index W's rows and out's columns.
#pragma once

#include <cstddef>
#include <cstdint>

#include "gpu/matmul.hpp"

namespace troupe::matmul_detail {

struct Job {
  const WeightView& w;
  const float* x;
  const BlockQ8* xq;
  int64_t n_tokens;
  float* out;
  int64_t out_stride;
  int64_t row_begin;
  int64_t row_end;
};

// Each handles F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0.
void run_scalar(const Job& job);
void run_avx2(const Job& job);
void run_avx512(const Job& job);

// A 64-byte aligned buffer of at least `bytes` owned by the calling thread, kept between
// calls (slot 0: activation repacking, slot 1: dequantized rows, slot 2: unpacked weights).
uint8_t* thread_scratch(int slot, size_t bytes);

}  // namespace troupe::matmul_detail

namespace troupe::matmul_detail {
// Internal linkage on purpose: the ISA files are compiled with different flags, so no
// instantiation may be shared between them.
namespace {

// Calls fn.template operator()<R, T>(row, token) over [row_begin, row_end) x [0, n_tokens)
// in tiles of R rows (remainder rows one by one) and Tmax tokens (remainder by 2 and 1).
template <int R, int Tmax, class Fn>
inline void sweep_tokens(Fn& fn, int64_t r, int64_t n_tokens) {
  int64_t t = 0;
  for (; t + Tmax <= n_tokens; t += Tmax) fn.template operator()<R, Tmax>(r, t);
  if constexpr (Tmax > 2) {
    if (n_tokens - t >= 2) {
      fn.template operator()<R, 2>(r, t);
      t += 2;
    }
  }
  if constexpr (Tmax > 1) {
    if (t < n_tokens) fn.template operator()<R, 1>(r, t);
  }
}

template <int R, int Tmax, class Fn>
inline void sweep(Fn& fn, int64_t row_begin, int64_t row_end, int64_t n_tokens) {
  int64_t r = row_begin;
  for (; r + R <= row_end; r += R) sweep_tokens<R, Tmax>(fn, r, n_tokens);
  for (; r < row_end; ++r) sweep_tokens<1, Tmax>(fn, r, n_tokens);
}

}  // namespace
}  // namespace troupe::matmul_detail
