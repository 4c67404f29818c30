#include "gpu/backend.hpp"

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "gpu/cpu_backend.hpp"
#include "gpu/cuda/cuda_backend.hpp"
#include "gpu/kv_pool.hpp"
#include "gpu/sim_backend.hpp"

namespace troupe {

std::unique_ptr<Backend> make_backend(const ModelDesc& desc, const BackendOptions& options) {
  if (options.name == "cpu") return make_cpu_backend(desc, options);
  if (options.name == "sim") return make_sim_backend(options);
  if (options.name == "cuda") return make_cuda_backend(desc, options);
  throw std::invalid_argument("unknown backend '" + options.name +
                              "' (available: cpu, cuda, sim; resolve \"auto\" with "
                              "resolve_backend_name first)");
}

size_t validate_greedy_room(std::span<const SeqStep> batch, std::span<const int32_t> tokens) {
  const auto wanting = size_t(std::count_if(batch.begin(), batch.end(),
                                            [](const SeqStep& seq) { return seq.want_logits; }));
  if (tokens.size() != wanting)
    throw std::invalid_argument("step_greedy: room for " + std::to_string(tokens.size()) +
                                " tokens, but " + std::to_string(wanting) +
                                " entries of the batch want logits");
  return wanting;
}

void Backend::step_greedy(std::span<const SeqStep>, std::span<int32_t>) {
  throw std::logic_error("backend '" + name() + "' does not pick greedy tokens itself; "
                         "call step() and sample (ask picks_greedy() first)");
}

Backend::StepTimes Backend::step_overlapping(std::span<const SeqStep> batch, StepOutput out,
                                             FunctionRef<void()> host_work) {
  host_work();
  const auto started = std::chrono::steady_clock::now();
  if (!out.picked.empty())
    step_greedy(batch, out.picked);
  else
    step(batch, out.logits);
  return {started, std::chrono::steady_clock::now()};
}

std::string resolve_backend_name(const std::string& name, std::string* fallback) {
  if (name != "auto") return name;
  const std::optional<std::string> why = cuda_unavailable_reason();
  if (!why) return "cuda";
  if (fallback) *fallback = "no usable GPU (" + *why + "): using the cpu backend";
  return "cpu";
}

#ifndef TROUPE_HAVE_CUDA
// This build has no cuda backend (nvcc was not found, or -DTROUPE_CUDA=OFF).

namespace {
const char* const kNoCudaBuild =
    "this build has no CUDA backend (nvcc was not found when it was configured, or "
    "-DTROUPE_CUDA=OFF); use --backend cpu, or rebuild with the CUDA toolkit installed";
}  // namespace

std::optional<std::string> cuda_unavailable_reason() { return std::string(kNoCudaBuild); }

std::unique_ptr<Backend> make_cuda_backend(const ModelDesc&, const BackendOptions&,
                                           const CudaOptions&) {
  throw std::runtime_error(kNoCudaBuild);
}

std::optional<GpuMemoryUse> gpu_memory_in_use(const Backend&) { return std::nullopt; }

std::optional<int> cuda_graph_kernels(const Backend&) { return std::nullopt; }

bool set_cuda_graphs(Backend&, bool) { return false; }
#endif

namespace {

[[noreturn]] void reject(const SeqStep& seq, const std::string& what) {
  throw std::invalid_argument("batch entry for sequence " + std::to_string(seq.seq_id) + ": " +
                              what);
}

}  // namespace

void validate_batch(std::span<const SeqStep> batch, const ModelDesc& desc, const KvPool& kv,
                    int max_batch_tokens) {
  int64_t total = 0;
  for (const SeqStep& seq : batch) {
    if (seq.tokens.empty()) reject(seq, "no tokens");
    if (seq.n_past < 0) reject(seq, "n_past is negative (" + std::to_string(seq.n_past) + ")");
    total += int64_t(seq.tokens.size());
    if (total > max_batch_tokens)
      throw std::invalid_argument("batch has more than " + std::to_string(max_batch_tokens) +
                                  " tokens (the backend's max batch tokens)");
    for (int32_t id : seq.tokens)
      if (id < 0 || uint32_t(id) >= desc.n_vocab)
        reject(seq, "token " + std::to_string(id) + " is outside the vocabulary [0, " +
                        std::to_string(desc.n_vocab) + ")");
    const int64_t end = int64_t(seq.n_past) + int64_t(seq.tokens.size());
    if (end > INT32_MAX) reject(seq, "positions overflow int32");
    const int64_t blocks_needed = (end + kv.block_tokens() - 1) / kv.block_tokens();
    if (int64_t(seq.block_table.size()) < blocks_needed)
      reject(seq, "block table has " + std::to_string(seq.block_table.size()) +
                      " blocks; positions [0, " + std::to_string(end) + ") need " +
                      std::to_string(blocks_needed));
    for (int64_t b = 0; b < blocks_needed; ++b) {
      const int32_t block = seq.block_table[size_t(b)];
      if (block < 0 || block >= kv.n_blocks())
        reject(seq, "block table entry " + std::to_string(b) + " is block " +
                        std::to_string(block) + ", outside the pool [0, " +
                        std::to_string(kv.n_blocks()) + ")");
    }
  }
}

}  // namespace troupe
