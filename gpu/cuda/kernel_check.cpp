#include "gpu/cuda/kernel_check.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>

#include "gpu/cuda/kernels.hpp"

namespace troupe::cuda_check {

namespace {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string("cuda kernel check: ") + what + ": " +
                             cudaGetErrorString(status));
}

// A device copy of host data (or zeroed space), freed on scope exit.
template <class T>
class Device {
 public:
  explicit Device(size_t count) : count_(count) {
    check(cudaMalloc(&data_, std::max<size_t>(count, 1) * sizeof(T)), "cudaMalloc");
    check(cudaMemset(data_, 0, std::max<size_t>(count, 1) * sizeof(T)), "cudaMemset");
  }
  explicit Device(std::span<const T> host) : Device(host.size()) {
    if (!host.empty())
      check(cudaMemcpy(data_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
            "upload");
  }
  ~Device() { cudaFree(data_); }
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  T* get() const { return data_; }
  // nullptr for an empty copy (optional inputs).
  T* or_null() const { return count_ ? data_ : nullptr; }
  std::vector<T> download() const {
    std::vector<T> out(count_);
    check(cudaMemcpy(out.data(), data_, count_ * sizeof(T), cudaMemcpyDeviceToHost), "download");
    return out;
  }

 private:
  T* data_ = nullptr;
  size_t count_;
};

void finish() {
  check(cudaGetLastError(), "kernel launch");
  check(cudaDeviceSynchronize(), "kernel run");
}

cuda::DeviceKv device_kv(const KvPool& pool, uint16_t* data) {
  const KvShape& s = pool.shape();
  return {data, s.n_layer, s.n_head_kv, s.head_dim, s.block_tokens};
}

// The pool's bytes: KvPool's memory starts at block 0, layer 0, K, head 0.
std::span<const uint16_t> pool_halves(const KvPool& pool) {
  return {pool.k_rows(0, 0, 0), size_t(pool.bytes() / sizeof(uint16_t))};
}

struct OneSequence {
  Device<int32_t> pos, offsets, table;
  OneSequence(std::span<const int32_t> positions, std::span<const int32_t> block_table)
      : pos(positions), offsets(positions.size()), table(block_table) {}
  cuda::DeviceTokens tokens() const { return {pos.get(), offsets.get(), table.get()}; }
};

}  // namespace

std::vector<BlockQ8> quantize_q8(std::span<const float> x, int rows, int cols) {
  Device<float> in(x);
  Device<BlockQ8> out(size_t(rows) * (cols / 32));
  cuda::quantize_q8(in.get(), rows, cols, out.get(), nullptr);
  finish();
  return out.download();
}

std::vector<float> matmul(GgmlType type, std::span<const uint8_t> weights, int64_t rows,
                          int64_t cols, std::span<const float> x, int n_tokens) {
  Device<uint8_t> w(weights);
  Device<float> in(x);
  Device<BlockQ8> xq(size_t(n_tokens) * size_t(cols / 32));
  Device<float> out(size_t(n_tokens) * size_t(rows));
  if (cuda::uses_q8(type)) cuda::quantize_q8(in.get(), n_tokens, int(cols), xq.get(), nullptr);
  const cuda::DeviceWeight dw{type, w.get(), rows, cols, size_t(ggml_row_bytes(type, cols))};
  cuda::matmul(dw, in.get(), xq.get(), n_tokens, out.get(), rows, nullptr);
  finish();
  return out.download();
}

std::vector<float> embed(GgmlType type, std::span<const uint8_t> table, int64_t cols,
                         std::span<const int32_t> ids) {
  Device<uint8_t> w(table);
  Device<int32_t> dev_ids(ids);
  Device<float> out(ids.size() * size_t(cols));
  const int64_t row_bytes = int64_t(ggml_row_bytes(type, cols));
  const cuda::DeviceWeight dw{type, w.get(), int64_t(table.size()) / row_bytes, cols,
                              size_t(row_bytes)};
  cuda::embed(dw, dev_ids.get(), int(ids.size()), out.get(), nullptr);
  finish();
  return out.download();
}

WithQ8 rmsnorm(std::span<const float> x, std::span<const float> weight, float eps, int rows,
               int n) {
  Device<float> dx(x), dw(weight), out(size_t(rows) * n);
  Device<BlockQ8> q8(size_t(rows) * (n / 32));
  cuda::rmsnorm(dx.get(), dw.get(), eps, n, rows, nullptr, out.get(), q8.get(), nullptr);
  finish();
  return {out.download(), q8.download()};
}

namespace {
cuda::DeviceWeight device_weight(GgmlType type, const Device<uint8_t>& w, int64_t rows,
                                 int64_t cols) {
  return {type, w.get(), rows, cols, size_t(ggml_row_bytes(type, cols))};
}
}  // namespace

std::vector<float> matmul_add(GgmlType type, std::span<const uint8_t> weights, int64_t rows,
                              int64_t cols, std::span<const float> x, int n_tokens,
                              std::span<const float> residual) {
  Device<uint8_t> w(weights);
  Device<float> in(x), out(residual);
  Device<BlockQ8> xq(size_t(n_tokens) * size_t(cols / 32));
  if (cuda::uses_q8(type)) cuda::quantize_q8(in.get(), n_tokens, int(cols), xq.get(), nullptr);
  cuda::matmul(device_weight(type, w, rows, cols), in.get(), xq.get(), n_tokens, out.get(), rows,
               nullptr, true);
  finish();
  return out.download();
}

std::vector<std::vector<float>> matmul_parts(GgmlType type,
                                             std::span<const std::vector<uint8_t>> weights,
                                             std::span<const int64_t> rows, int64_t cols,
                                             std::span<const float> x, int n_tokens) {
  std::vector<std::unique_ptr<Device<uint8_t>>> w;
  std::vector<std::unique_ptr<Device<float>>> out;
  std::vector<cuda::DeviceWeight> parts;
  std::vector<float*> outs;
  for (size_t p = 0; p < weights.size(); ++p) {
    w.push_back(std::make_unique<Device<uint8_t>>(std::span<const uint8_t>(weights[p])));
    out.push_back(std::make_unique<Device<float>>(size_t(n_tokens) * size_t(rows[p])));
    parts.push_back(device_weight(type, *w.back(), rows[p], cols));
    outs.push_back(out.back()->get());
  }
  Device<float> in(x);
  Device<BlockQ8> xq(size_t(n_tokens) * size_t(cols / 32));
  if (cuda::uses_q8(type)) cuda::quantize_q8(in.get(), n_tokens, int(cols), xq.get(), nullptr);
  cuda::matmul_parts(parts, outs, rows, in.get(), xq.get(), n_tokens, nullptr);
  finish();
  std::vector<std::vector<float>> result;
  for (const auto& o : out) result.push_back(o->download());
  return result;
}

WithQ8 ffn_swiglu(GgmlType type, std::span<const uint8_t> gate, std::span<const uint8_t> up,
                  int64_t rows, int64_t cols, std::span<const float> x, int n_tokens) {
  Device<uint8_t> g(gate), u(up);
  Device<float> in(x), act(size_t(n_tokens) * size_t(rows));
  Device<BlockQ8> xq(size_t(n_tokens) * size_t(cols / 32));
  Device<BlockQ8> act_q8(size_t(n_tokens) * size_t(rows / 32));
  cuda::quantize_q8(in.get(), n_tokens, int(cols), xq.get(), nullptr);
  cuda::ffn_swiglu(device_weight(type, g, rows, cols), device_weight(type, u, rows, cols),
                   xq.get(), n_tokens, act.get(), act_q8.get(), nullptr);
  finish();
  return {act.download(), act_q8.download()};
}

std::vector<float> swiglu(std::span<const float> gate, std::span<const float> up) {
  Device<float> g(gate), u(up);
  cuda::swiglu(g.get(), u.get(), int64_t(gate.size()), nullptr);
  finish();
  return g.download();
}

QkvResult qkv_finish(std::span<const float> q, std::span<const float> k, std::span<const float> v,
                     std::span<const float> bq, std::span<const float> bk,
                     std::span<const float> bv, int n_head, RopeLayout layout, float freq_base,
                     std::span<const int32_t> positions, std::span<const int32_t> block_table,
                     int layer, KvPool& pool) {
  const int n_tokens = int(positions.size());
  const int head_dim = pool.shape().head_dim;
  Device<float> dq(q), dk(k), dv(v), dbq(bq), dbk(bk), dbv(bv);
  Device<float> cos(size_t(n_tokens) * head_dim / 2), sin(size_t(n_tokens) * head_dim / 2);
  Device<uint16_t> kv(pool_halves(pool));
  OneSequence seq(positions, block_table);
  cuda::rope_angles(seq.pos.get(), n_tokens, head_dim, freq_base, cos.get(), sin.get(), nullptr);
  cuda::qkv_finish(dq.get(), dk.get(), dv.get(), dbq.or_null(), dbk.or_null(), dbv.or_null(),
                   n_tokens, n_head, layout, cos.get(), sin.get(), device_kv(pool, kv.get()),
                   layer, seq.tokens(), nullptr);
  finish();
  const std::vector<uint16_t> halves = kv.download();
  std::copy(halves.begin(), halves.end(), pool.k_rows(0, 0, 0));
  return {dq.download(), dk.download()};
}

WithQ8 attention(const KvPool& pool, int layer, std::span<const int32_t> block_table,
                 std::span<const int32_t> positions, std::span<const float> q, int n_head,
                 float scale) {
  if (pool.shape().head_dim > cuda::kMaxHeadDim)
    throw std::invalid_argument("cuda attention: head_dim above " +
                                std::to_string(cuda::kMaxHeadDim));
  const int n_tokens = int(positions.size());
  const bool with_q8 = pool.shape().head_dim % 32 == 0;
  Device<float> dq(q), out(q.size());
  Device<BlockQ8> q8(with_q8 ? q.size() / 32 : 0);
  Device<uint16_t> kv(pool_halves(pool));
  OneSequence seq(positions, block_table);
  cuda::attention(dq.get(), n_tokens, n_head, scale, device_kv(pool, kv.get()), layer,
                  seq.tokens(), out.get(), q8.or_null(), nullptr);
  finish();
  return {out.download(), q8.download()};
}

}  // namespace troupe::cuda_check
