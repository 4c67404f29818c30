#include "cli/local_model.hpp"

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "gpu/kv_pool.hpp"

namespace troupe {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

LocalModel::LocalModel(const std::string& path, const BackendOptions& backend_options,
                       int32_t context_tokens)
    : file_(std::make_unique<GgufFile>(GgufFile::open(path))),
      desc_(ModelDesc::from_gguf(*file_)),
      tokenizer_(std::make_unique<Tokenizer>(Tokenizer::from_gguf(*file_))) {
  context_tokens_ = context_tokens > 0 ? context_tokens : static_cast<int32_t>(desc_.n_ctx_train);
  if (context_tokens_ <= 0) context_tokens_ = 2048;
  // One full context, twice over, so a chat's previous turn stays cached while the next runs.
  BackendOptions options = backend_options;
  const int64_t blocks_per_context =
      (context_tokens_ + options.kv_block_tokens - 1) / options.kv_block_tokens;
  if (options.kv_blocks == 0) options.kv_blocks = 2 * blocks_per_context;
  backend_ = make_backend(desc_, options);
  kv_ = std::make_unique<KvCacheCore>(KvCacheConfig{
      static_cast<int32_t>(backend_->kv().n_blocks()), backend_->kv().block_tokens()});
  logits_.resize(desc_.n_vocab);
}

void LocalModel::run_step(uint64_t seq, std::span<const int32_t> tokens, int32_t n_past,
                          bool want_logits) {
  const SeqStep step{seq, tokens, n_past, kv_->block_table(seq), want_logits};
  backend_->step(std::span<const SeqStep>(&step, 1), logits_.data());
}

GenerationStats LocalModel::generate(std::span<const int32_t> prompt, const SamplingParams& params,
                                     int32_t max_tokens, bool ignore_eos, const TokenSink& sink) {
  if (prompt.empty()) throw std::invalid_argument("the prompt has no tokens");
  if (max_tokens < 0) throw std::invalid_argument("max_tokens must not be negative");
  if (int64_t(prompt.size()) + max_tokens > context_tokens_)
    throw std::invalid_argument("prompt (" + std::to_string(prompt.size()) + " tokens) plus " +
                                std::to_string(max_tokens) + " new tokens exceeds the context of " +
                                std::to_string(context_tokens_) + " tokens");
  Sampler sampler(params);
  GenerationStats stats;
  stats.prompt_tokens = static_cast<int32_t>(prompt.size());

  const uint64_t seq = next_seq_++;
  const KvReserveResult reserved = kv_->reserve(seq, prompt);
  if (!reserved.ok())
    throw std::runtime_error("the KV cache cannot hold a prompt of " +
                             std::to_string(prompt.size()) + " tokens");
  struct Release {
    KvCacheCore& kv;
    uint64_t seq;
    ~Release() { kv.free(seq); }
  } release{*kv_, seq};

  // The last prompt token is always computed: its logits start the generation.
  const int32_t n_prompt = stats.prompt_tokens;
  const int32_t first = std::min(reserved.cached_tokens, n_prompt - 1);
  stats.cached_tokens = first;
  history_.assign(prompt.begin(), prompt.end());

  const auto prompt_start = std::chrono::steady_clock::now();
  const int32_t chunk = backend_->max_batch_tokens();
  for (int32_t pos = first; pos < n_prompt; pos += chunk) {
    const int32_t n = std::min(chunk, n_prompt - pos);
    run_step(seq, prompt.subspan(pos, n), pos, pos + n == n_prompt);
  }

  auto generation_start = prompt_start;
  for (int32_t i = 0; i < max_tokens; ++i) {
    const SampleResult sampled = sampler.sample(logits_, history_);
    if (i == 0) {
      stats.prompt_seconds = seconds_since(prompt_start);
      generation_start = std::chrono::steady_clock::now();
    }
    if (!ignore_eos && tokenizer_->vocab().is_eog(sampled.token)) {
      stats.stopped_at_eog = true;
      break;
    }
    ++stats.generated_tokens;
    history_.push_back(sampled.token);
    const bool more = sink(sampled);
    if (!more || i + 1 == max_tokens) break;
    const KvAppendResult slot = kv_->append_slot(seq, sampled.token);
    if (!slot.ok()) throw std::runtime_error("the KV cache is full");
    run_step(seq, std::span<const int32_t>(&sampled.token, 1), slot.position, true);
  }
  if (stats.generated_tokens > 0) stats.generation_seconds = seconds_since(generation_start);
  return stats;
}

}  // namespace troupe
