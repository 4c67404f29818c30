#include "model/sampler.hpp"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace troupe {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

// exp(x) for x <= 0 (a logit minus the maximum), 0 below -87 (so masked tokens weigh
// nothing). Range reduction x = k ln2 + r, |r| <= ln2/2, then a degree-7 Taylor polynomial:
// relative error below 2e-7. Written once for GCC/Clang vector types, which compile to
// AVX2 here and to plain code elsewhere; the scalar form is the same code on one lane.
using f32x8 = float __attribute__((vector_size(32)));
using i32x8 = int32_t __attribute__((vector_size(32)));
using f64x4 = double __attribute__((vector_size(32)));

template <class F, class I>
F exp_nonpositive_impl(F x) {
  constexpr float kLog2e = 1.44269504f, kLn2Hi = 0.693145752f, kLn2Lo = 1.42860677e-6f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const F floor_value = x - x - 87.0f;
  const F clamped = x < floor_value ? floor_value : x;
  const F k = (clamped * kLog2e + kRound) - kRound;
  const F r = (clamped - k * kLn2Hi) - k * kLn2Lo;
  F p = r * (1.0f / 5040) + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  I biased;
  if constexpr (std::is_same_v<F, float>)
    biased = (static_cast<I>(k) + 127) << 23;
  else
    biased = (__builtin_convertvector(k, I) + 127) << 23;
  F scale;
  std::memcpy(&scale, &biased, sizeof scale);
  const F zero = x - x;
  return x < floor_value ? zero : p * scale;
}

inline float exp_nonpositive(float x) {
  return x < -87.0f ? 0.0f : exp_nonpositive_impl<float, int32_t>(x);
}

constexpr std::size_t kLanes = 8;

f32x8 load8(const float* p) {
  f32x8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Replaces NaN by -inf in place and returns the maximum.
float nan_to_neg_inf_and_max(std::span<float> x) {
  const f32x8 neg_inf = f32x8{} + kNegInf;
  f32x8 lane_max = neg_inf;
  const std::size_t whole = x.size() / kLanes * kLanes;
  for (std::size_t i = 0; i < whole; i += kLanes) {
    f32x8 v = load8(&x[i]);
    v = v == v ? v : neg_inf;
    std::memcpy(&x[i], &v, sizeof v);
    lane_max = v > lane_max ? v : lane_max;
  }
  float result = kNegInf;
  for (std::size_t j = 0; j < kLanes; ++j) result = std::max(result, lane_max[j]);
  for (std::size_t i = whole; i < x.size(); ++i) {
    if (x[i] != x[i]) x[i] = kNegInf;
    result = std::max(result, x[i]);
  }
  return result;
}

// Sum of exp((x_i - max) * scale), accumulated in double; each term is also stored in
// `weights` when it is not null.
double sum_exp(std::span<const float> x, float max, float scale, float* weights = nullptr) {
  f64x4 low{}, high{};
  const std::size_t whole = x.size() / kLanes * kLanes;
  for (std::size_t i = 0; i < whole; i += kLanes) {
    const f32x8 e = exp_nonpositive_impl<f32x8, i32x8>((load8(&x[i]) - max) * scale);
    if (weights) std::memcpy(weights + i, &e, sizeof e);
    low += __builtin_convertvector(__builtin_shufflevector(e, e, 0, 1, 2, 3), f64x4);
    high += __builtin_convertvector(__builtin_shufflevector(e, e, 4, 5, 6, 7), f64x4);
  }
  double result = 0.0;
  for (std::size_t j = 0; j < 4; ++j) result += low[j] + high[j];
  for (std::size_t i = whole; i < x.size(); ++i) {
    const float e = exp_nonpositive((x[i] - max) * scale);
    if (weights) weights[i] = e;
    result += e;
  }
  return result;
}

}  // namespace

uint64_t SplitMix64::next() {
  state_ += 0x9E3779B97F4A7C15ull;
  uint64_t z = state_;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double SplitMix64::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

void SamplingParams::validate() const {
  require(std::isfinite(temperature) && temperature >= 0.0f,
          "temperature must be a number >= 0, got " + std::to_string(temperature));
  require(top_p > 0.0f && top_p <= 1.0f, "top_p must be in (0, 1], got " + std::to_string(top_p));
  require(min_p >= 0.0f && min_p <= 1.0f, "min_p must be in [0, 1], got " + std::to_string(min_p));
  require(std::isfinite(repetition_penalty) && repetition_penalty > 0.0f,
          "repetition_penalty must be > 0, got " + std::to_string(repetition_penalty));
  require(std::isfinite(frequency_penalty),
          "frequency_penalty must be a finite number, got " + std::to_string(frequency_penalty));
  require(std::isfinite(presence_penalty),
          "presence_penalty must be a finite number, got " + std::to_string(presence_penalty));
  require(n_logprobs >= 0 && n_logprobs <= kMaxLogprobs,
          "n_logprobs must be in [0, " + std::to_string(kMaxLogprobs) + "], got " +
              std::to_string(n_logprobs));
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {
  params_.validate();
  top_.reserve(SamplingParams::kMaxLogprobs);
}

bool Sampler::plain_greedy() const {
  return params_.temperature == 0.0f && params_.repetition_penalty == 1.0f &&
         params_.frequency_penalty == 0.0f && params_.presence_penalty == 0.0f &&
         !params_.logprob && params_.n_logprobs == 0;
}

void Sampler::apply_penalties(std::span<float> logits, std::span<const int32_t> history) {
  const bool active = params_.repetition_penalty != 1.0f || params_.frequency_penalty != 0.0f ||
                      params_.presence_penalty != 0.0f;
  for (int32_t token : history)
    if (token < 0 || static_cast<std::size_t>(token) >= logits.size())
      throw std::invalid_argument("history token " + std::to_string(token) +
                                  " is outside the vocabulary of " + std::to_string(logits.size()));
  if (!active || history.empty()) return;
  history_sorted_.assign(history.begin(), history.end());
  std::sort(history_sorted_.begin(), history_sorted_.end());
  for (std::size_t i = 0; i < history_sorted_.size();) {
    const int32_t token = history_sorted_[i];
    std::size_t count = 0;
    while (i < history_sorted_.size() && history_sorted_[i] == token) ++i, ++count;
    float& logit = logits[static_cast<std::size_t>(token)];
    logit = logit <= 0.0f ? logit * params_.repetition_penalty : logit / params_.repetition_penalty;
    logit -= static_cast<float>(count) * params_.frequency_penalty + params_.presence_penalty;
  }
}

void Sampler::sort_prefix(std::size_t n, std::size_t count) {
  count = std::min(count, n);
  if (sorted_ >= count) return;
  // A strict total order (ties by id), so the result is the same with every library.
  auto better = [](const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.token < b.token);
  };
  const auto first = candidates_.begin() + static_cast<std::ptrdiff_t>(sorted_);
  const auto last = candidates_.begin() + static_cast<std::ptrdiff_t>(count);
  if (count < n)
    std::nth_element(first, last - 1, candidates_.begin() + static_cast<std::ptrdiff_t>(n), better);
  std::sort(first, last, better);
  sorted_ = count;
}

SampleResult Sampler::sample(std::span<float> logits, std::span<const int32_t> history) {
  require(!logits.empty(), "sample() needs at least one logit");
  require(logits.size() <= static_cast<std::size_t>(std::numeric_limits<int32_t>::max()),
          "vocabulary too large");
  apply_penalties(logits, history);

  const std::size_t vocab = logits.size();
  const float max_logit = nan_to_neg_inf_and_max(logits);
  if (max_logit == -kNegInf) {
    const auto at = std::find(logits.begin(), logits.end(), max_logit) - logits.begin();
    throw std::invalid_argument("logit of token " + std::to_string(at) + " is +inf");
  }
  require(max_logit != kNegInf, "no finite logit to sample from");
  const std::size_t best =
      static_cast<std::size_t>(std::find(logits.begin(), logits.end(), max_logit) - logits.begin());
  const bool filtered = params_.top_k > 0 || params_.top_p < 1.0f || params_.min_p > 0.0f;
  const std::size_t n_top = std::min<std::size_t>(static_cast<std::size_t>(params_.n_logprobs), vocab);
  // sum of exp(l - max): the softmax normalizer at temperature 1, one exp per token; skipped
  // when neither a logprob nor top-p (without top-k) needs it (the greedy path is then two
  // cheap passes).
  const bool report = params_.logprob || n_top > 0;
  const bool need_mass = report || (params_.temperature > 0.0f && params_.top_p < 1.0f);
  const double mass = need_mass ? sum_exp(logits, max_logit, 1.0f) : 0.0;
  const double log_z = need_mass ? max_logit + std::log(mass) : 0.0;
  auto logprob_of = [&](std::size_t token) {
    return report ? static_cast<float>(static_cast<double>(logits[token]) - log_z) : 0.0f;
  };
  std::size_t n = vocab;
  if (n_top > 0 || (params_.temperature > 0.0f && filtered)) {
    candidates_.resize(vocab);
    for (std::size_t i = 0; i < vocab; ++i) candidates_[i] = {static_cast<int32_t>(i), logits[i]};
    sorted_ = 0;
  }
  top_.clear();
  if (n_top > 0) {
    const bool top_k_too = params_.temperature > 0.0f && params_.top_k > 0;
    sort_prefix(n, std::max(n_top, top_k_too ? static_cast<std::size_t>(params_.top_k) : 0));
    for (std::size_t i = 0; i < n_top; ++i)
      top_.push_back({candidates_[i].token, logprob_of(static_cast<std::size_t>(candidates_[i].token))});
  }
  if (params_.temperature == 0.0f) return {static_cast<int32_t>(best), logprob_of(best), top_};

  const float inv_temp = 1.0f / params_.temperature;
  if (!filtered) {
    weights_.resize(vocab);
    const double total = sum_exp(logits, max_logit, inv_temp, weights_.data());
    const double draw = rng_.uniform() * total;
    double cumulative = 0.0;
    std::size_t chosen = best;
    for (std::size_t i = 0; i < vocab; ++i) {
      if (weights_[i] == 0.0f) continue;
      cumulative += weights_[i];
      chosen = i;  // on rounding past the end: the last token with weight
      if (draw < cumulative) break;
    }
    return {static_cast<int32_t>(chosen), logprob_of(chosen), top_};
  }

  double kept_mass = mass;
  if (params_.top_k > 0 && static_cast<std::size_t>(params_.top_k) < n) {
    n = static_cast<std::size_t>(params_.top_k);
    sort_prefix(vocab, n);
    sorted_ = n;  // the logprobs may have sorted further
    kept_mass = 0.0;
    for (std::size_t i = 0; i < n; ++i) kept_mass += exp_nonpositive(candidates_[i].logit - max_logit);
  }
  if (params_.top_p < 1.0f) {
    const double target = params_.top_p * kept_mass;
    double cumulative = 0.0;
    std::size_t kept = 0;
    for (std::size_t window = 64; kept < n; window *= 2) {
      sort_prefix(n, window);
      for (; kept < sorted_ && cumulative < target; ++kept)
        cumulative += exp_nonpositive(candidates_[kept].logit - max_logit);
      if (cumulative >= target) break;
    }
    n = std::max<std::size_t>(kept, 1);
  }
  if (params_.min_p > 0.0f) {
    const float threshold = max_logit + std::log(params_.min_p);
    std::size_t kept = 0, kept_sorted = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (candidates_[i].logit < threshold) continue;
      if (i < sorted_) ++kept_sorted;
      candidates_[kept++] = candidates_[i];
    }
    n = kept;  // the best candidate always passes: threshold <= max_logit
    sorted_ = kept_sorted;
  }

  double total = 0.0;
  for (std::size_t i = 0; i < n; ++i)
    total += exp_nonpositive((candidates_[i].logit - max_logit) * inv_temp);
  const double draw = rng_.uniform() * total;
  double cumulative = 0.0;
  std::size_t chosen = best;
  for (std::size_t i = 0; i < n; ++i) {
    const float weight = exp_nonpositive((candidates_[i].logit - max_logit) * inv_temp);
    if (weight == 0.0f) continue;
    cumulative += weight;
    chosen = static_cast<std::size_t>(candidates_[i].token);
    if (draw < cumulative) break;
  }
  return {static_cast<int32_t>(chosen), logprob_of(chosen), top_};
}

}  // namespace troupe
