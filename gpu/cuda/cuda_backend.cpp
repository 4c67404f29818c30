#include "gpu/cuda/cuda_backend.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "gpu/cuda/kernels.hpp"
#include "gpu/kv_pool.hpp"

namespace troupe {

namespace {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string("cuda backend: ") + what + " failed: " +
                             cudaGetErrorString(status));
}

// A device allocation; its size counts toward the backend's memory.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(size_t bytes, std::atomic<uint64_t>& counter) : bytes_(bytes), counter_(&counter) {
    if (bytes == 0) return;
    const cudaError_t status = cudaMalloc(&data_, bytes);
    if (status != cudaSuccess)
      throw std::runtime_error("cuda backend: cannot allocate " + std::to_string(bytes >> 20) +
                               " MiB of device memory (" + cudaGetErrorString(status) + ")");
    *counter_ += bytes;
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(bytes_, o.bytes_);
    std::swap(counter_, o.counter_);
    return *this;
  }
  ~DeviceBuffer() {
    if (!data_) return;
    cudaFree(data_);
    *counter_ -= bytes_;
  }
  template <class T>
  T* as() const { return static_cast<T*>(data_); }
  size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  std::atomic<uint64_t>* counter_ = nullptr;
};

class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t bytes) {
    if (bytes) check(cudaMallocHost(&data_, bytes), "cudaMallocHost");
  }
  PinnedBuffer(PinnedBuffer&& o) noexcept { std::swap(data_, o.data_); }
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
    std::swap(data_, o.data_);
    return *this;
  }
  ~PinnedBuffer() {
    if (data_) cudaFreeHost(data_);
  }
  template <class T>
  T* as() const { return static_cast<T*>(data_); }

 private:
  void* data_ = nullptr;
};

struct LayerWeights {
  const float* attn_norm;
  cuda::DeviceWeight wq, wk, wv, wo;
  const float *bq, *bk, *bv;
  const float* ffn_norm;
  cuda::DeviceWeight gate, up, down;
};

constexpr size_t kUploadAlignment = 256;

size_t aligned(size_t n) { return (n + kUploadAlignment - 1) / kUploadAlignment * kUploadAlignment; }

// Every tensor the forward pass reads, uploaded once into one allocation.
class DeviceWeights {
 public:
  DeviceWeights(const ModelDesc& d, std::atomic<uint64_t>& counter) {
    std::vector<const GgufTensor*> tensors = {d.token_embd, d.output_norm, d.output};
    for (const LayerTensors& l : d.layers)
      for (const GgufTensor* t : {l.attn_norm, l.wq, l.wk, l.wv, l.wo, l.bq, l.bk, l.bv,
                                  l.ffn_norm, l.ffn_gate, l.ffn_up, l.ffn_down})
        if (t) tensors.push_back(t);
    size_t total = 0;
    for (const GgufTensor* t : tensors)
      if (offsets_.emplace(t, total).second) total += aligned(size_t(t->n_bytes));
    buffer_ = DeviceBuffer(total, counter);
    for (const auto& [t, offset] : offsets_)
      check(cudaMemcpy(buffer_.as<uint8_t>() + offset, t->data, size_t(t->n_bytes),
                       cudaMemcpyHostToDevice),
            "uploading the weights");
  }

  const uint8_t* bytes_of(const GgufTensor* t) const {
    return t ? buffer_.as<uint8_t>() + offsets_.at(t) : nullptr;
  }
  const float* f32(const GgufTensor* t) const {
    return reinterpret_cast<const float*>(bytes_of(t));
  }
  cuda::DeviceWeight matrix(const GgufTensor& t) const {
    if (!cuda::kernels_support(t.type))
      throw std::invalid_argument("tensor '" + t.name + "' has type " +
                                  std::string(traits_of(t.type).name) +
                                  ", which the cuda backend cannot multiply (it takes Q4_0, "
                                  "Q4_1, Q8_0, F16, BF16 and F32)");
    return {t.type, bytes_of(&t), int64_t(t.rows()), int64_t(t.dims[0]), size_t(t.row_bytes())};
  }
  size_t bytes() const { return buffer_.bytes(); }

 private:
  std::map<const GgufTensor*, size_t> offsets_;
  DeviceBuffer buffer_;
};

void require_device(int device) {
  if (auto reason = cuda_unavailable_reason()) throw std::runtime_error(*reason);
  int count = 0;
  check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  if (device < 0 || device >= count)
    throw std::invalid_argument("CUDA device " + std::to_string(device) +
                                " does not exist (devices: 0.." + std::to_string(count - 1) +
                                ")");
  check(cudaSetDevice(device), "cudaSetDevice");
}

std::shared_ptr<KvPool> kv_description(const ModelDesc& d, const BackendOptions& o) {
  if (o.kv_pool)
    throw std::invalid_argument(
        "a shared KV pool (BackendOptions::kv_pool) is for cpu backends; the cuda backend keeps "
        "its pool in device memory");
  return make_kv_pool(d, o);
}

// The step's metadata, one int32 array uploaded at once: token ids, positions, block-table
// offsets and logit rows (max_tokens each), then the concatenated block tables.
struct MetaLayout {
  size_t max_tokens;
  size_t table_capacity;
  size_t ids() const { return 0; }
  size_t pos() const { return max_tokens; }
  size_t table_offset() const { return 2 * max_tokens; }
  size_t logit_rows() const { return 3 * max_tokens; }
  size_t tables() const { return 4 * max_tokens; }
  size_t ints() const { return 4 * max_tokens + table_capacity; }
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(const ModelDesc& desc, const BackendOptions& options, const CudaOptions& cuda)
      : desc_(desc),
        device_(cuda.device),
        graphs_enabled_(cuda.graphs),
        max_tokens_(options.max_batch_tokens),
        kv_host_((require_device(cuda.device), kv_description(desc, options))),
        weights_(desc, weight_bytes_),
        embd_(int(desc.n_embd)),
        q_dim_(int(desc.n_head * desc.head_dim)),
        kv_dim_(int(desc.n_head_kv * desc.head_dim)),
        ff_(int(desc.n_ff)),
        vocab_(int(desc.n_vocab)),
        attention_scale_(1.0f / std::sqrt(float(desc.head_dim))) {
    if (max_tokens_ < 1)
      throw std::invalid_argument("max batch tokens must be >= 1, got " +
                                  std::to_string(max_tokens_));
    if (desc.head_dim > uint32_t(cuda::kMaxHeadDim) || desc.head_dim % 2 != 0)
      throw std::invalid_argument("the cuda backend needs an even head_dim <= " +
                                  std::to_string(cuda::kMaxHeadDim) + ", the model has " +
                                  std::to_string(desc.head_dim));
    token_embd_ = weights_.matrix(*desc.token_embd);
    output_ = weights_.matrix(*desc.output);
    for (const LayerTensors& l : desc.layers)
      layers_.push_back({weights_.f32(l.attn_norm), weights_.matrix(*l.wq),
                         weights_.matrix(*l.wk), weights_.matrix(*l.wv), weights_.matrix(*l.wo),
                         weights_.f32(l.bq), weights_.f32(l.bk), weights_.f32(l.bv),
                         weights_.f32(l.ffn_norm), weights_.matrix(*l.ffn_gate),
                         weights_.matrix(*l.ffn_up), weights_.matrix(*l.ffn_down)});

    kv_buffer_ = DeviceBuffer(kv_host_->bytes(), kv_bytes_);
    check(cudaMemset(kv_buffer_.as<void>(), 0, kv_buffer_.bytes()), "clearing the KV pool");
    const KvShape& s = kv_host_->shape();
    kv_ = {kv_buffer_.as<uint16_t>(), s.n_layer, s.n_head_kv, s.head_dim, s.block_tokens};

    const size_t t = size_t(max_tokens_);
    const size_t widest = size_t(std::max({embd_, q_dim_, ff_}));
    auto floats = [&](size_t n) { return DeviceBuffer(n * sizeof(float), scratch_bytes_); };
    x_ = floats(t * embd_);
    xn_ = floats(t * embd_);
    q_ = floats(t * q_dim_);
    k_ = floats(t * kv_dim_);
    v_ = floats(t * kv_dim_);
    attn_ = floats(t * q_dim_);
    gate_ = floats(t * ff_);
    up_ = floats(t * ff_);
    rope_cos_ = floats(t * desc.head_dim / 2);
    rope_sin_ = floats(t * desc.head_dim / 2);
    logits_ = floats(t * vocab_);
    xq_ = DeviceBuffer(t * (widest / 32) * sizeof(BlockQ8), scratch_bytes_);
    ffn_xq_ = DeviceBuffer(t * size_t(ff_ / 32) * sizeof(BlockQ8), scratch_bytes_);
    logits_host_ = PinnedBuffer(t * vocab_ * sizeof(float));
    resize_meta(t * 64);

    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    // The KV clear ran on the legacy stream, which a non-blocking stream does not wait for.
    check(cudaDeviceSynchronize(), "clearing the KV pool");
  }

  ~CudaBackend() override {
    cudaSetDevice(device_);
    if (stream_) cudaStreamSynchronize(stream_);
    drop_graphs();
    if (stream_) cudaStreamDestroy(stream_);
  }

  const ModelDesc& desc() const override { return desc_; }
  std::string name() const override { return "cuda"; }
  KvPool& kv() override { return *kv_host_; }
  int max_batch_tokens() const override { return max_tokens_; }

  void step(std::span<const SeqStep> batch, float* logits) override {
    validate_batch(batch, desc_, *kv_host_, max_tokens_);
    check(cudaSetDevice(device_), "cudaSetDevice");
    plan(batch);
    if (n_tokens_ == 0) return;
    bool decode = true;
    for (const SeqStep& seq : batch) decode = decode && seq.tokens.size() == 1;
    // Captured (not run) before the upload, so the capture never meets pending work.
    const cudaGraphExec_t graph = graphs_enabled_ && decode ? graph_for_shape() : nullptr;
    const size_t meta_ints = meta_.tables() + n_table_ints_;
    check(cudaMemcpyAsync(meta_device_.as<int32_t>(), meta_host_.as<int32_t>(),
                          meta_ints * sizeof(int32_t), cudaMemcpyHostToDevice, stream_),
          "uploading the batch");
    if (graph)
      check(cudaGraphLaunch(graph, stream_), "cudaGraphLaunch");
    else
      forward();
    check(cudaGetLastError(), "launching the forward pass");
    if (n_logits_ > 0)
      check(cudaMemcpyAsync(logits_host_.as<float>(), logits_.as<float>(),
                            size_t(n_logits_) * vocab_ * sizeof(float), cudaMemcpyDeviceToHost,
                            stream_),
            "copying the logits back");
    check(cudaStreamSynchronize(stream_), "the forward pass");
    if (n_logits_ > 0 && logits)
      std::memcpy(logits, logits_host_.as<float>(), size_t(n_logits_) * vocab_ * sizeof(float));
  }

  GpuMemoryUse memory() const {
    GpuMemoryUse use;
    use.weight_bytes = weight_bytes_;
    use.kv_bytes = kv_bytes_;
    use.backend_bytes = weight_bytes_ + kv_bytes_ + scratch_bytes_;
    size_t free = 0, total = 0;
    if (cudaSetDevice(device_) == cudaSuccess && cudaMemGetInfo(&free, &total) == cudaSuccess) {
      use.device_used_bytes = total - free;
      use.device_total_bytes = total;
    }
    return use;
  }

  void set_graphs(bool enabled) { graphs_enabled_ = enabled; }
  std::optional<int> last_graph_nodes() const {
    const int nodes = last_graph_nodes_;
    return nodes > 0 ? std::optional<int>(nodes) : std::nullopt;
  }

 private:
  void resize_meta(size_t table_capacity) {
    if (stream_) check(cudaStreamSynchronize(stream_), "waiting for the stream");
    drop_graphs();  // they captured the old metadata pointers
    meta_ = {size_t(max_tokens_), table_capacity};
    meta_device_ = DeviceBuffer();
    meta_device_ = DeviceBuffer(meta_.ints() * sizeof(int32_t), scratch_bytes_);
    meta_host_ = PinnedBuffer(meta_.ints() * sizeof(int32_t));
    const int32_t* base = meta_device_.as<int32_t>();
    tokens_ = {base + meta_.pos(), base + meta_.table_offset(), base + meta_.tables()};
  }

  void plan(std::span<const SeqStep> batch) {
    size_t table_ints = 0;
    for (const SeqStep& seq : batch) table_ints += seq.block_table.size();
    if (table_ints > meta_.table_capacity) resize_meta(std::max(table_ints, 2 * meta_.table_capacity));
    int32_t* m = meta_host_.as<int32_t>();
    n_tokens_ = n_logits_ = 0;
    n_table_ints_ = 0;
    for (const SeqStep& seq : batch) {
      for (size_t i = 0; i < seq.tokens.size(); ++i) {
        m[meta_.ids() + size_t(n_tokens_)] = seq.tokens[i];
        m[meta_.pos() + size_t(n_tokens_)] = seq.n_past + int32_t(i);
        m[meta_.table_offset() + size_t(n_tokens_)] = int32_t(n_table_ints_);
        ++n_tokens_;
      }
      if (seq.want_logits) m[meta_.logit_rows() + size_t(n_logits_++)] = n_tokens_ - 1;
      std::copy(seq.block_table.begin(), seq.block_table.end(),
                m + meta_.tables() + n_table_ints_);
      n_table_ints_ += seq.block_table.size();
    }
  }

  // The graph of the planned shape (tokens, logits), captured the first time it is seen.
  cudaGraphExec_t graph_for_shape() {
    const std::pair<int, int> key{n_tokens_, n_logits_};
    if (auto it = graphs_.find(key); it != graphs_.end()) return it->second;
    check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "graph capture");
    forward();
    cudaGraph_t graph = nullptr;
    check(cudaStreamEndCapture(stream_, &graph), "graph capture");
    size_t nodes = 0;
    if (cudaGraphGetNodes(graph, nullptr, &nodes) == cudaSuccess) last_graph_nodes_ = int(nodes);
    cudaGraphExec_t exec = nullptr;
    const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    check(status, "cudaGraphInstantiate");
    graphs_.emplace(key, exec);
    return exec;
  }

  void drop_graphs() {
    for (auto& [key, exec] : graphs_) cudaGraphExecDestroy(exec);
    graphs_.clear();
  }

  // The layers for the planned tokens; enqueues only (so it can be captured).
  void forward() {
    const int32_t* meta = meta_device_.as<int32_t>();
    const int32_t* ids = meta + meta_.ids();
    const int32_t* logit_rows = meta + meta_.logit_rows();
    float* x = x_.as<float>();
    float* xn = xn_.as<float>();
    float* q = q_.as<float>();
    float* k = k_.as<float>();
    float* v = v_.as<float>();
    float* attn = attn_.as<float>();
    float* gate = gate_.as<float>();
    float* up = up_.as<float>();
    BlockQ8* xq = xq_.as<BlockQ8>();
    BlockQ8* ffn_xq = ffn_xq_.as<BlockQ8>();
    const int n = n_tokens_;
    const float eps = desc_.rms_eps;

    cuda::embed(token_embd_, ids, n, x, stream_);
    cuda::rope_angles(tokens_.pos, n, int(desc_.head_dim), desc_.rope_freq_base,
                      rope_cos_.as<float>(), rope_sin_.as<float>(), stream_);
    // Per layer, for Q4/Q8 weights: 8 kernels (norm+Q8, q/k/v, rope+KV store, attention+Q8,
    // wo+residual, norm+Q8, gate/up+SwiGLU+Q8, down+residual).
    for (int l = 0; l < int(layers_.size()); ++l) {
      const LayerWeights& w = layers_[size_t(l)];
      const bool qkv_q8 =
          cuda::uses_q8(w.wq.type) || cuda::uses_q8(w.wk.type) || cuda::uses_q8(w.wv.type);
      cuda::rmsnorm(x, w.attn_norm, eps, embd_, n, nullptr, xn, qkv_q8 ? xq : nullptr, stream_);
      if (w.wq.type == w.wk.type && w.wq.type == w.wv.type) {
        const cuda::DeviceWeight parts[] = {w.wq, w.wk, w.wv};
        float* const outs[] = {q, k, v};
        const int64_t strides[] = {q_dim_, kv_dim_, kv_dim_};
        cuda::matmul_parts(parts, outs, strides, xn, xq, n, stream_);
      } else {
        cuda::matmul(w.wq, xn, xq, n, q, q_dim_, stream_);
        cuda::matmul(w.wk, xn, xq, n, k, kv_dim_, stream_);
        cuda::matmul(w.wv, xn, xq, n, v, kv_dim_, stream_);
      }
      cuda::qkv_finish(q, k, v, w.bq, w.bk, w.bv, n, int(desc_.n_head), desc_.rope_layout,
                       rope_cos_.as<float>(), rope_sin_.as<float>(), kv_, l, tokens_, stream_);
      const bool wo_q8 = cuda::uses_q8(w.wo.type);
      const bool attention_q8 = wo_q8 && desc_.head_dim % 32 == 0;
      cuda::attention(q, n, int(desc_.n_head), attention_scale_, kv_, l, tokens_, attn,
                      attention_q8 ? xq : nullptr, stream_);
      if (wo_q8 && !attention_q8) cuda::quantize_q8(attn, n, q_dim_, xq, stream_);
      cuda::matmul(w.wo, attn, xq, n, x, embd_, stream_, /*accumulate=*/true);

      const bool ffn_q8 = cuda::uses_q8(w.gate.type) || cuda::uses_q8(w.up.type);
      cuda::rmsnorm(x, w.ffn_norm, eps, embd_, n, nullptr, xn, ffn_q8 ? xq : nullptr, stream_);
      if (cuda::ffn_swiglu_supported(w.gate, w.up)) {
        cuda::ffn_swiglu(w.gate, w.up, xq, n, gate, ffn_xq, stream_);
      } else {
        cuda::matmul(w.gate, xn, xq, n, gate, ff_, stream_);
        cuda::matmul(w.up, xn, xq, n, up, ff_, stream_);
        cuda::swiglu(gate, up, int64_t(n) * ff_, stream_);
        if (cuda::uses_q8(w.down.type)) cuda::quantize_q8(gate, n, ff_, ffn_xq, stream_);
      }
      cuda::matmul(w.down, gate, ffn_xq, n, x, embd_, stream_, /*accumulate=*/true);
    }
    if (n_logits_ == 0) return;
    const bool out_q8 = cuda::uses_q8(output_.type);
    cuda::rmsnorm(x, weights_.f32(desc_.output_norm), eps, embd_, n_logits_, logit_rows, xn,
                  out_q8 ? xq : nullptr, stream_);
    cuda::matmul(output_, xn, xq, n_logits_, logits_.as<float>(), vocab_, stream_);
  }

  const ModelDesc& desc_;
  const int device_;
  bool graphs_enabled_;
  const int max_tokens_;
  // Device bytes allocated, by use (read by memory() from any thread).
  std::atomic<uint64_t> weight_bytes_ = 0, kv_bytes_ = 0, scratch_bytes_ = 0;
  std::shared_ptr<KvPool> kv_host_;  // the pool's description; its host memory stays unused
  DeviceWeights weights_;
  const int embd_, q_dim_, kv_dim_, ff_, vocab_;
  const float attention_scale_;
  cuda::DeviceWeight token_embd_, output_;
  std::vector<LayerWeights> layers_;

  DeviceBuffer kv_buffer_;
  cuda::DeviceKv kv_;
  DeviceBuffer x_, xn_, q_, k_, v_, attn_, gate_, up_, rope_cos_, rope_sin_, logits_;
  DeviceBuffer xq_, ffn_xq_;
  PinnedBuffer logits_host_;

  MetaLayout meta_{0, 0};
  DeviceBuffer meta_device_;
  PinnedBuffer meta_host_;
  cuda::DeviceTokens tokens_;
  int n_tokens_ = 0, n_logits_ = 0;
  size_t n_table_ints_ = 0;

  cudaStream_t stream_ = nullptr;
  std::map<std::pair<int, int>, cudaGraphExec_t> graphs_;
  std::atomic<int> last_graph_nodes_ = 0;
};

}  // namespace

std::optional<std::string> cuda_unavailable_reason() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess)
    return std::string("no CUDA device: ") + cudaGetErrorString(status) +
           " (is an NVIDIA GPU and its driver present?)";
  if (count == 0) return std::string("no CUDA device: the driver reports none");
  return std::nullopt;
}

std::unique_ptr<Backend> make_cuda_backend(const ModelDesc& desc, const BackendOptions& options,
                                           const CudaOptions& cuda) {
  return std::make_unique<CudaBackend>(desc, options, cuda);
}

std::optional<GpuMemoryUse> gpu_memory_in_use(const Backend& backend) {
  if (const auto* cuda = dynamic_cast<const CudaBackend*>(&backend)) return cuda->memory();
  return std::nullopt;
}

std::optional<int> cuda_graph_kernels(const Backend& backend) {
  const auto* cuda = dynamic_cast<const CudaBackend*>(&backend);
  return cuda ? cuda->last_graph_nodes() : std::nullopt;
}

bool set_cuda_graphs(Backend& backend, bool enabled) {
  auto* cuda = dynamic_cast<CudaBackend*>(&backend);
  if (cuda) cuda->set_graphs(enabled);
  return cuda != nullptr;
}

}  // namespace troupe
