// Token sampling for one sequence. The chain, in llama.cpp's documented order: penalties
// (repetition, frequency, presence) -> top-k -> top-p -> min-p -> temperature -> draw.
// Greedy (argmax of the penalized logits, lowest id on ties) when temperature == 0.
// Logprobs are those of the full softmax of the penalized logits at temperature 1, as
// OpenAI reports them, whatever the temperature and filters.
// Thread safety: none; one Sampler per sequence, used by one thread at a time. It owns its
// random state (seeded from SamplingParams::seed, same seed + same inputs = same tokens) and
// its buffers, which grow to the vocabulary size once and are reused afterwards.
// Work per call: O(vocab) plus a partial sort of the candidates that top-k/top-p keep.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace troupe {

struct SamplingParams {
  float temperature = 1.0f;         // 0 = greedy; must be >= 0
  int32_t top_k = 0;                // <= 0: off
  float top_p = 1.0f;               // (0, 1]; 1: off
  float min_p = 0.0f;               // [0, 1]; 0: off
  float repetition_penalty = 1.0f;  // > 0; 1: off (llama.cpp: divide positive logits, multiply negative)
  float frequency_penalty = 0.0f;   // subtracted once per occurrence in the history
  float presence_penalty = 0.0f;    // subtracted once if the token occurs in the history
  uint64_t seed = 0;
  int32_t n_logprobs = 0;           // top alternatives to report, 0 to kMaxLogprobs
  bool logprob = true;              // compute SampleResult::logprob; false (a caller that never
                                    // reads it) skips the softmax normalizer, one exp per token

  static constexpr int32_t kMaxLogprobs = 20;
  // Throws std::invalid_argument naming the first field out of range.
  void validate() const;
};

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

struct SampleResult {
  int32_t token = 0;
  float logprob = 0.0f;                // of `token` (0 when params.logprob is off and n_logprobs 0)
  std::span<const TokenLogprob> top;   // n_logprobs best, highest first; valid until next sample()
};

// splitmix64: a small deterministic generator, identical on every platform and library
// (unlike std:: distributions). Also used by the test utilities to make tiny models.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next();
  double uniform();  // [0, 1), 53 random bits

 private:
  uint64_t state_;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);  // validates params

  // Applies the penalties to `logits` in place (one entry per vocabulary token; NaN counts
  // as -inf), then picks a token. `history` holds the tokens the penalties look at.
  // Throws std::invalid_argument when logits is empty or has no finite entry, or when a
  // history token is outside [0, logits.size()).
  SampleResult sample(std::span<float> logits, std::span<const int32_t> history);

  const SamplingParams& params() const { return params_; }
  // True when sample() would return only the token of the highest logit, lowest id on ties
  // (temperature 0, no penalty, no logprob, no top logprobs) and draw nothing: a backend that
  // picks greedy tokens itself (Backend::picks_greedy) may then stand in for sample().
  bool plain_greedy() const;

 private:
  struct Candidate {
    int32_t token;
    float logit;
  };
  void apply_penalties(std::span<float> logits, std::span<const int32_t> history);
  // Extends the sorted prefix of candidates [0, n) (highest logit first) to `count`; the
  // already sorted prefix is kept and the rest stays worse than it.
  void sort_prefix(std::size_t n, std::size_t count);

  SamplingParams params_;
  SplitMix64 rng_;
  std::vector<Candidate> candidates_;
  std::size_t sorted_ = 0;
  std::vector<float> weights_;
  std::vector<int32_t> history_sorted_;
  std::vector<TokenLogprob> top_;
};

}  // namespace troupe
