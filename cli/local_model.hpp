// LocalModel: one GGUF model loaded in this process with its tokenizer, a compute backend
// and a KV cache, driven one sequence at a time by the CLI (no scheduler, no actors).
// generate() runs a prompt (in chunks of the backend's step size, reusing the KV of any
// cached prefix) and then samples up to max_tokens, handing each token to a callback.
// Thread safety: none; one caller at a time. Owns everything it loads; the backend and the
// tokenizer borrow the mapped file, which lives as long as the LocalModel.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "gpu/backend.hpp"
#include "model/gguf.hpp"
#include "model/kv_cache_core.hpp"
#include "model/model_desc.hpp"
#include "model/sampler.hpp"
#include "model/tokenizer.hpp"

namespace troupe {

struct GenerationStats {
  int32_t prompt_tokens = 0;     // tokens of the prompt
  int32_t cached_tokens = 0;     // of which the KV cache already held (not recomputed)
  int32_t generated_tokens = 0;
  double prompt_seconds = 0;     // prefill of the uncached prompt tokens, first sample included
  double generation_seconds = 0; // the decode steps after the first token
  bool stopped_at_eog = false;   // ended on an end-of-generation token (not emitted)
};

class LocalModel {
 public:
  // Throws GgufError / std::invalid_argument / std::runtime_error with a message naming the
  // file and what is wrong. context_tokens: 0 = the model's trained context.
  LocalModel(const std::string& path, const BackendOptions& backend_options,
             int32_t context_tokens = 0);

  const GgufFile& file() const { return *file_; }
  const ModelDesc& desc() const { return desc_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  int32_t context_tokens() const { return context_tokens_; }

  // Called with each sampled token; return false to stop after it.
  using TokenSink = std::function<bool(const SampleResult&)>;

  // Runs prompt (non-empty) then up to max_tokens sampled tokens; stops early at an
  // end-of-generation token unless ignore_eos. Throws std::invalid_argument when the prompt
  // plus max_tokens exceeds the context. The sequence's full blocks stay in the prefix cache.
  GenerationStats generate(std::span<const int32_t> prompt, const SamplingParams& params,
                           int32_t max_tokens, bool ignore_eos, const TokenSink& sink);

 private:
  void run_step(uint64_t seq, std::span<const int32_t> tokens, int32_t n_past, bool want_logits);

  std::unique_ptr<GgufFile> file_;
  ModelDesc desc_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<KvCacheCore> kv_;
  int32_t context_tokens_ = 0;
  uint64_t next_seq_ = 1;
  std::vector<float> logits_;
  std::vector<int32_t> history_;
};

}  // namespace troupe
