// troupe-cuda-speed: decode speed of the cuda backend on one model (the GPU machine's probe;
// no GoogleTest, no bench layer). For each batch size B, B sequences hold a prompt of
// --context tokens, then --steps decode steps (all B sequences, one token each, logits copied
// back) are timed; every round re-decodes the same positions, so rounds are alike. Contenders
// (each B, and batch 1 without CUDA graphs) run interleaved, round by round; medians and
// ranges of the per-step time over --rounds rounds.
// Reported per B: step time, tokens/s, the memory-bandwidth bound of the step ((weights read
// + KV read) / 4.8 TB/s, the H200's HBM) and the step time over that bound. Also: the time of
// the logits copy-back alone (B x vocab floats to pinned host memory), the price of sampling
// on the CPU, and the GPU memory the backend holds.
//   troupe-cuda-speed --model FILE [--batches 1,8,32] [--context 64] [--steps 64] [--rounds 5]
// Exit status: 0 done, 2 bad usage or an error, 3 no CUDA device.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "gpu/backend.hpp"
#include "gpu/cuda/cuda_backend.hpp"
#include "model/gguf.hpp"
#include "model/model_desc.hpp"

namespace {

using namespace troupe;
using Clock = std::chrono::steady_clock;
constexpr double kHbmBytesPerSecond = 4.8e12;

struct Options {
  std::string model;
  std::vector<int> batches = {1, 8, 32};
  int context = 64;
  int steps = 64;
  int rounds = 5;
};

struct Contender {
  std::string name;
  int batch;
  bool graphs;
  std::vector<double> step_seconds;  // one median-free mean per round
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Bytes of the weights a step streams: every layer matrix, the norms and the output matrix
// (the embedding table only when it is the output, i.e. tied).
uint64_t weight_bytes_per_step(const ModelDesc& d) {
  uint64_t bytes = d.output->n_bytes + d.output_norm->n_bytes;
  for (const LayerTensors& l : d.layers)
    for (const GgufTensor* t : {l.attn_norm, l.wq, l.wk, l.wv, l.wo, l.bq, l.bk, l.bv,
                                l.ffn_norm, l.ffn_gate, l.ffn_up, l.ffn_down})
      if (t) bytes += t->n_bytes;
  return bytes;
}

class Runner {
 public:
  Runner(const ModelDesc& desc, const Options& o) : desc_(desc), o_(o) {
    max_batch_ = *std::max_element(o.batches.begin(), o.batches.end());
    blocks_per_seq_ = (o.context + o.steps + 15) / 16;
    BackendOptions bo;
    bo.name = "cuda";
    bo.max_batch_tokens = std::max(max_batch_, o.context);
    bo.kv_block_tokens = 16;
    bo.kv_blocks = int64_t(max_batch_) * blocks_per_seq_;
    backend_ = make_backend(desc, bo);
    tokens_.resize(size_t(max_batch_));
    tables_.resize(size_t(max_batch_));
    for (int s = 0; s < max_batch_; ++s) {
      for (int i = 0; i < o.context + o.steps; ++i)
        tokens_[size_t(s)].push_back(int32_t((s * 7919 + i * 104729) % desc.n_vocab));
      for (int b = 0; b < blocks_per_seq_; ++b)
        tables_[size_t(s)].push_back(int32_t(s * blocks_per_seq_ + b));
      const SeqStep prompt{uint64_t(s), std::span(tokens_[size_t(s)]).first(size_t(o.context)),
                           0, tables_[size_t(s)], false};
      backend_->step({&prompt, 1}, nullptr);
    }
    logits_.resize(size_t(max_batch_) * desc.n_vocab);
  }

  // Mean seconds per decode step of `batch` sequences over the timed steps.
  double decode(int batch, bool graphs) {
    set_cuda_graphs(*backend_, graphs);
    std::vector<SeqStep> steps(static_cast<size_t>(batch));
    auto run_step = [&](int i) {
      for (int s = 0; s < batch; ++s)
        steps[size_t(s)] = {uint64_t(s),
                            std::span(tokens_[size_t(s)]).subspan(size_t(o_.context + i), 1),
                            o_.context + i, tables_[size_t(s)], true};
      backend_->step(steps, logits_.data());
    };
    run_step(0);  // warm-up: captures the graph of this shape the first time
    if (graphs && !kernels_.count(batch))
      if (auto n = cuda_graph_kernels(*backend_)) kernels_[batch] = *n;
    const auto start = Clock::now();
    for (int i = 1; i < o_.steps; ++i) run_step(i);
    return std::chrono::duration<double>(Clock::now() - start).count() / (o_.steps - 1);
  }

  Backend& backend() { return *backend_; }
  // Kernels per decode step by batch size (the captured graph's nodes).
  const std::map<int, int>& kernels() const { return kernels_; }

 private:
  const ModelDesc& desc_;
  const Options& o_;
  int max_batch_ = 1, blocks_per_seq_ = 1;
  std::unique_ptr<Backend> backend_;
  std::vector<std::vector<int32_t>> tokens_, tables_;
  std::vector<float> logits_;
  std::map<int, int> kernels_;
};

// Seconds to copy `bytes` of logits device -> pinned host (the backend's copy-back), median of
// 20; 0 when a CUDA call fails.
double logits_copy_seconds(size_t bytes) {
  void* device = nullptr;
  void* host = nullptr;
  std::vector<double> times;
  if (cudaMalloc(&device, bytes) == cudaSuccess && cudaMallocHost(&host, bytes) == cudaSuccess) {
    for (int i = 0; i < 21; ++i) {
      const auto start = Clock::now();
      if (cudaMemcpy(host, device, bytes, cudaMemcpyDeviceToHost) != cudaSuccess) break;
      if (i > 0) times.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    }
  }
  cudaFree(device);
  cudaFreeHost(host);
  return median(times);
}

std::vector<int> parse_list(const std::string& text) {
  std::vector<int> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) out.push_back(std::stoi(item));
  return out;
}

int usage() {
  std::fprintf(stderr, "usage: troupe-cuda-speed --model FILE [--batches 1,8,32] [--context 64] "
                       "[--steps 64] [--rounds 5]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) return usage();
    const std::string value = argv[++i];
    if (arg == "--model") o.model = value;
    else if (arg == "--batches") o.batches = parse_list(value);
    else if (arg == "--context") o.context = std::atoi(value.c_str());
    else if (arg == "--steps") o.steps = std::atoi(value.c_str());
    else if (arg == "--rounds") o.rounds = std::atoi(value.c_str());
    else return usage();
  }
  if (o.model.empty() || o.batches.empty() || o.context < 1 || o.steps < 2 || o.rounds < 1)
    return usage();
  try {
    if (auto reason = cuda_unavailable_reason()) {
      std::printf("troupe-cuda-speed: %s\n", reason->c_str());
      return 3;
    }
    const GgufFile file = GgufFile::open(o.model);
    const ModelDesc desc = ModelDesc::from_gguf(file);
    Runner runner(desc, o);

    std::vector<Contender> contenders;
    for (int b : o.batches) contenders.push_back({"decode batch " + std::to_string(b), b, true, {}});
    contenders.push_back({"decode batch 1, no CUDA graphs", 1, false, {}});
    for (int r = 0; r < o.rounds; ++r)
      for (Contender& c : contenders) c.step_seconds.push_back(runner.decode(c.batch, c.graphs));

    const uint64_t weights = weight_bytes_per_step(desc);
    const uint64_t kv_per_position =
        uint64_t(desc.n_layer) * 2 * desc.n_head_kv * desc.head_dim * sizeof(uint16_t);
    const double mean_positions = o.context + o.steps / 2.0;
    std::printf("model %s: %u layers, embd %u, heads %u/%u, ff %u, vocab %u; weights read per "
                "step %.1f MB\n",
                o.model.c_str(), desc.n_layer, desc.n_embd, desc.n_head, desc.n_head_kv,
                desc.n_ff, desc.n_vocab, weights / 1e6);
    std::printf("context %d tokens + %d decode steps, %d rounds interleaved; medians [min, max]\n",
                o.context, o.steps, o.rounds);
    std::printf("%-32s %12s %22s %12s %12s %10s\n", "contender", "step ms", "range ms",
                "tokens/s", "bound us", "x bound");
    for (const Contender& c : contenders) {
      const double step = median(c.step_seconds);
      const auto [lo, hi] = std::minmax_element(c.step_seconds.begin(), c.step_seconds.end());
      const double kv_bytes = c.batch * mean_positions * double(kv_per_position);
      const double bound = (double(weights) + kv_bytes) / kHbmBytesPerSecond;
      std::printf("%-32s %12.4f   [%8.4f, %8.4f] %12.0f %12.1f %10.2f\n", c.name.c_str(),
                  step * 1e3, *lo * 1e3, *hi * 1e3, c.batch / step, bound * 1e6, step / bound);
    }
    for (int b : o.batches) {
      const size_t bytes = size_t(b) * desc.n_vocab * sizeof(float);
      const double copy = logits_copy_seconds(bytes);
      std::printf("logits copy-back, batch %d: %.2f MB in %.1f us (sampling stays on the CPU)\n",
                  b, bytes / 1e6, copy * 1e6);
    }
    for (const auto& [batch, kernels] : runner.kernels())
      std::printf("kernels per decode step, batch %d: %d (%.1f per layer)\n", batch, kernels,
                  double(kernels) / desc.n_layer);
    const double with = median(contenders.front().step_seconds);
    const double without = median(contenders.back().step_seconds);
    if (contenders.front().batch == 1)
      std::printf("CUDA graphs, batch 1: %.4f ms with, %.4f ms without: %.2fx\n", with * 1e3,
                  without * 1e3, without / with);
    if (auto use = gpu_memory_in_use(runner.backend()))
      std::printf("GPU memory: backend %.1f MiB (weights %.1f, KV %.1f), device %.0f of %.0f MiB in "
                  "use\n",
                  use->backend_bytes / 1048576.0, use->weight_bytes / 1048576.0,
                  use->kv_bytes / 1048576.0, use->device_used_bytes / 1048576.0,
                  use->device_total_bytes / 1048576.0);
    return 0;
  } catch (const std::exception& e) {
    std::printf("troupe-cuda-speed: error: %s\n", e.what());
    return 2;
  }
}
