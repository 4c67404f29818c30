// Parity of the cuda backend with the cpu backend, shared by the GoogleTest suite
// (cuda_backend_test.cpp) and the plain probe of the GPU machine (troupe-cuda-parity).
// - kernel_checks(): every kernel against the cpu function it mirrors, on seeded random data.
//   Tolerances (stated in each check's detail): Q8 quantization exact; matmul, rmsnorm,
//   swiglu, rope, attention within float rounding (relative 1e-4 of the output's scale);
//   the f16 K/V cells within one f16 rounding step (relative 1e-3).
// - model_checks(): whole steps on one model, cpu vs cuda: a prompt prefilled in chunks, then
//   `steps` greedy decode steps, every step's logits within kLogitTolerance x max(1, max|cpu
//   logit|); greedy tokens equal at every step, except near-ties (the cpu's two candidates
//   closer than twice that tolerance), which are counted and reported, never hidden. Both
//   backends are fed the cpu's token. Also: a batch of sequences at different positions (a
//   prefill chunk among decodes) and decode with CUDA graphs vs without (bit-identical).
// Every check needs a CUDA device (callers check cuda_unavailable_reason() first).
#pragma once

#include <string>
#include <vector>

#include "model/model_desc.hpp"

namespace troupe::test::cuda_parity {

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

// A random Q4_1 model with SmolLM2-135M's shapes (30 layers, 576 embd, 9 heads / 3 kv heads,
// ff 1536, vocab 49152, tied output); about 85 MB.
void write_smollm_shaped_model(const std::string& path);

}  // namespace troupe::test::cuda_parity
