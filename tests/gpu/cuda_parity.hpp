// Parity of the cuda backend with the cpu backend, shared by the GoogleTest suite
// (cuda_backend_test.cpp) and the plain probe of the GPU machine (troupe-cuda-parity).
// - kernel_checks(): every kernel against the cpu function it mirrors, on seeded random data.
//   Tolerances (stated in each check's detail): Q8 quantization exact; matmul, rmsnorm,
//   swiglu, rope, attention within float rounding (relative 1e-4 of the output's scale);
//   the f16 K/V cells within one f16 rounding step (relative 1e-3).
// - model_checks(): whole steps on one model, cpu vs cuda: a prompt prefilled in chunks, then
//   `steps` greedy decode steps (both backends fed the cpu's token), a batch of sequences at
//   different positions (a prefill chunk among decodes), and decode with CUDA graphs vs
//   without (bit-identical). Logits pass on their pooled relative RMS error against a bound
//   set by the cpu's own sensitivity (the same run on the model with its norm weights moved
//   by one ulp), with floors, and greedy tokens equal except near-ties; the reasoning is at
//   judge() in cuda_parity.cpp.
// - depth_probe(): the same single-sequence run on the model cut to 1, 2, 4, 8, 16, 30 layers:
//   one line per depth with the cuda error and the cpu's one-ulp sensitivity, to show whether
//   the error grows with depth as rounding amplification does.
// Every check needs a CUDA device (callers check cuda_unavailable_reason() first).
#pragma once

#include <string>
#include <vector>

#include "model/model_desc.hpp"

namespace troupe::test::cuda_parity {

// Near-ties: greedy picks may differ where the cpu's top two logits are closer than
// 2 x kLogitTolerance x max(1, max|logit|).
inline constexpr float kLogitTolerance = 2e-2f;

struct Check {
  std::string name;
  bool passed = false;
  std::string detail;  // the figures behind the verdict
};

std::vector<Check> kernel_checks();

struct ModelParityOptions {
  int prompt_tokens = 37;
  int prefill_chunk = 16;
  int steps = 64;
  int batch = 4;
};
std::vector<Check> model_checks(const std::string& label, const ModelDesc& desc,
                                const ModelParityOptions& options = {});

std::vector<std::string> depth_probe(const ModelDesc& desc, const ModelParityOptions& options);

// A random Q4_1 model with SmolLM2-135M's shapes (30 layers, 576 embd, 9 heads / 3 kv heads,
// ff 1536, vocab 49152, tied output); about 85 MB.
void write_smollm_shaped_model(const std::string& path);

}  // namespace troupe::test::cuda_parity
