// Sampler on small vocabularies with hand-computed distributions. Statistical checks use
// fixed seeds (so they are deterministic) and bounds of several standard deviations.
#include "model/sampler.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>
#include <stdexcept>
#include <vector>

namespace troupe {
namespace {

std::vector<float> log_of(std::vector<double> probabilities) {
  std::vector<float> logits;
  for (double p : probabilities) logits.push_back(static_cast<float>(std::log(p)));
  return logits;
}

// Token counts over `draws` samples of the same logits (copied each time: sample() edits them).
std::map<int32_t, int> histogram(const SamplingParams& params, const std::vector<float>& logits,
                                 int draws) {
  Sampler sampler(params);
  std::map<int32_t, int> counts;
  for (int i = 0; i < draws; ++i) {
    std::vector<float> copy = logits;
    ++counts[sampler.sample(copy, {}).token];
  }
  return counts;
}

std::set<int32_t> support(const std::map<int32_t, int>& counts) {
  std::set<int32_t> tokens;
  for (const auto& [token, count] : counts) tokens.insert(token);
  return tokens;
}

void expect_frequency(const std::map<int32_t, int>& counts, int32_t token, double p, int draws) {
  const double expected = p * draws;
  const double sigma = std::sqrt(draws * p * (1 - p));
  const int seen = counts.count(token) ? counts.at(token) : 0;
  EXPECT_NEAR(seen, expected, 5 * sigma + 1) << "token " << token;
}

SamplingParams with_temperature(float t) {
  SamplingParams p;
  p.temperature = t;
  p.seed = 1234;
  return p;
}

TEST(Sampler, GreedyPicksTheArgmaxAndReportsFullSoftmaxLogprobs) {
  SamplingParams params = with_temperature(0.0f);
  params.n_logprobs = 2;
  Sampler sampler(params);
  std::vector<float> logits{1.0f, 3.0f, 2.0f};
  const SampleResult r = sampler.sample(logits, {});
  // log(e^3 / (e^1 + e^2 + e^3)) = -0.40760596
  EXPECT_EQ(r.token, 1);
  EXPECT_NEAR(r.logprob, -0.40760596, 1e-6);
  ASSERT_EQ(r.top.size(), 2u);
  EXPECT_EQ(r.top[0].token, 1);
  EXPECT_NEAR(r.top[0].logprob, -0.40760596, 1e-6);
  EXPECT_EQ(r.top[1].token, 2);
  EXPECT_NEAR(r.top[1].logprob, -1.40760596, 1e-6);
}

TEST(Sampler, GreedyTiesGoToTheLowestId) {
  Sampler sampler(with_temperature(0.0f));
  std::vector<float> logits{0.5f, 2.0f, 2.0f, 1.0f};
  EXPECT_EQ(sampler.sample(logits, {}).token, 1);
}

TEST(Sampler, TopLogprobsBreakTiesByIdAndCapAtTheVocabulary) {
  SamplingParams params = with_temperature(0.0f);
  params.n_logprobs = 5;
  Sampler sampler(params);
  std::vector<float> logits{0.0f, 1.0f, 1.0f};
  const SampleResult r = sampler.sample(logits, {});
  ASSERT_EQ(r.top.size(), 3u);
  EXPECT_EQ(r.top[0].token, 1);
  EXPECT_EQ(r.top[1].token, 2);
  EXPECT_EQ(r.top[2].token, 0);
  // e^1 / (1 + 2e) and 1 / (1 + 2e)
  EXPECT_NEAR(r.top[0].logprob, std::log(std::exp(1.0) / (1 + 2 * std::exp(1.0))), 1e-6);
  EXPECT_NEAR(r.top[2].logprob, std::log(1.0 / (1 + 2 * std::exp(1.0))), 1e-6);
}

TEST(Sampler, PenaltiesFollowLlamaCpp) {
  SamplingParams params = with_temperature(0.0f);
  params.repetition_penalty = 2.0f;
  params.frequency_penalty = 0.5f;
  params.presence_penalty = 0.25f;
  Sampler sampler(params);
  std::vector<float> logits{2.0f, -1.0f, 0.5f, 1.9f};
  const std::vector<int32_t> history{0, 1, 0};
  const SampleResult r = sampler.sample(logits, history);
  // token 0: 2 / 2 - 2 * 0.5 - 0.25 = -0.25; token 1: -1 * 2 - 0.5 - 0.25 = -2.75
  EXPECT_FLOAT_EQ(logits[0], -0.25f);
  EXPECT_FLOAT_EQ(logits[1], -2.75f);
  EXPECT_FLOAT_EQ(logits[2], 0.5f);
  EXPECT_FLOAT_EQ(logits[3], 1.9f);
  EXPECT_EQ(r.token, 3);
  const double z = std::exp(-0.25) + std::exp(-2.75) + std::exp(0.5) + std::exp(1.9);
  EXPECT_NEAR(r.logprob, 1.9 - std::log(z), 1e-5);
}

TEST(Sampler, NoPenaltyLeavesLogitsUntouched) {
  Sampler sampler(with_temperature(0.0f));
  std::vector<float> logits{1.0f, 2.0f};
  const std::vector<int32_t> history{1, 1, 1};
  EXPECT_EQ(sampler.sample(logits, history).token, 1);
  EXPECT_EQ(logits, (std::vector<float>{1.0f, 2.0f}));
}

TEST(Sampler, TemperatureOneMatchesTheSoftmax) {
  const int draws = 20000;
  const auto counts = histogram(with_temperature(1.0f), log_of({0.6, 0.3, 0.1}), draws);
  expect_frequency(counts, 0, 0.6, draws);
  expect_frequency(counts, 1, 0.3, draws);
  expect_frequency(counts, 2, 0.1, draws);
}

TEST(Sampler, TemperatureSharpens) {
  // at T = 0.5, p_i ∝ p_i^2: {0.36, 0.09, 0.01} / 0.46
  const int draws = 20000;
  const auto counts = histogram(with_temperature(0.5f), log_of({0.6, 0.3, 0.1}), draws);
  expect_frequency(counts, 0, 0.36 / 0.46, draws);
  expect_frequency(counts, 1, 0.09 / 0.46, draws);
  expect_frequency(counts, 2, 0.01 / 0.46, draws);
}

TEST(Sampler, LogprobIgnoresTemperature) {
  SamplingParams params = with_temperature(5.0f);
  Sampler sampler(params);
  for (int i = 0; i < 50; ++i) {
    std::vector<float> logits = log_of({0.6, 0.3, 0.1});
    const SampleResult r = sampler.sample(logits, {});
    const double p[] = {0.6, 0.3, 0.1};
    EXPECT_NEAR(r.logprob, std::log(p[r.token]), 1e-6);
  }
}

TEST(Sampler, TopKKeepsTheBest) {
  SamplingParams params = with_temperature(1.0f);
  params.top_k = 2;
  const auto counts = histogram(params, log_of({0.1, 0.4, 0.2, 0.3}), 4000);
  EXPECT_EQ(support(counts), (std::set<int32_t>{1, 3}));
  // renormalized: 0.4 / 0.7 and 0.3 / 0.7
  expect_frequency(counts, 1, 4.0 / 7.0, 4000);
  params.top_k = 1;
  EXPECT_EQ(support(histogram(params, log_of({0.1, 0.4, 0.2, 0.3}), 200)), std::set<int32_t>{1});
}

TEST(Sampler, TopPKeepsTheSmallestPrefixReachingP) {
  SamplingParams params = with_temperature(1.0f);
  const auto logits = log_of({0.5, 0.3, 0.15, 0.05});
  params.top_p = 0.49f;
  EXPECT_EQ(support(histogram(params, logits, 500)), std::set<int32_t>{0});
  params.top_p = 0.51f;
  const auto two = histogram(params, logits, 8000);
  EXPECT_EQ(support(two), (std::set<int32_t>{0, 1}));
  expect_frequency(two, 0, 0.5 / 0.8, 8000);
  params.top_p = 0.9f;
  EXPECT_EQ(support(histogram(params, logits, 4000)), (std::set<int32_t>{0, 1, 2}));
}

TEST(Sampler, TopPRunsOnTheTopKSet) {
  // p = {0.4, 0.3, 0.2, 0.1}. top_k 2 renormalizes to {0.571, 0.429}: top_p 0.5 keeps one
  // token. Without top_k, 0.4 < 0.5 so top_p keeps two.
  const auto logits = log_of({0.4, 0.3, 0.2, 0.1});
  SamplingParams params = with_temperature(1.0f);
  params.top_p = 0.5f;
  EXPECT_EQ(support(histogram(params, logits, 2000)), (std::set<int32_t>{0, 1}));
  params.top_k = 2;
  EXPECT_EQ(support(histogram(params, logits, 2000)), std::set<int32_t>{0});
}

TEST(Sampler, TopKHoldsWhenMoreLogprobsAreReported) {
  SamplingParams params = with_temperature(1.0f);
  params.top_k = 2;
  params.top_p = 0.99f;
  params.n_logprobs = 4;
  const auto counts = histogram(params, log_of({0.3, 0.25, 0.2, 0.15, 0.1}), 3000);
  EXPECT_EQ(support(counts), (std::set<int32_t>{0, 1}));
}

TEST(Sampler, MinPKeepsTokensWithinAFractionOfTheBest) {
  const auto logits = log_of({0.5, 0.3, 0.15, 0.05});
  SamplingParams params = with_temperature(1.0f);
  params.min_p = 0.35f;  // threshold 0.175
  EXPECT_EQ(support(histogram(params, logits, 3000)), (std::set<int32_t>{0, 1}));
  params.min_p = 0.2f;  // threshold 0.1
  EXPECT_EQ(support(histogram(params, logits, 3000)), (std::set<int32_t>{0, 1, 2}));
}

TEST(Sampler, MinPRunsBeforeTemperature) {
  // At T = 3 token 3 would have 0.46 of the best token's weight and pass min_p 0.25;
  // on the temperature-1 distribution it has 0.1 and is removed.
  SamplingParams params = with_temperature(3.0f);
  params.min_p = 0.25f;
  const auto counts = histogram(params, log_of({0.5, 0.3, 0.15, 0.05}), 4000);
  EXPECT_EQ(support(counts), (std::set<int32_t>{0, 1, 2}));
}

TEST(Sampler, TopPOverALargeUniformVocabularyKeepsTheLowestIds) {
  SamplingParams params = with_temperature(1.0f);
  params.top_p = 0.5f;
  const std::vector<float> logits(1000, 0.0f);
  const auto counts = histogram(params, logits, 2000);
  EXPECT_LT(counts.rbegin()->first, 500);
  EXPECT_GE(counts.rbegin()->first, 480);
  EXPECT_GT(support(counts).size(), 450u);
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDifferentTokens) {
  auto run = [](uint64_t seed) {
    SamplingParams params = with_temperature(1.0f);
    params.seed = seed;
    Sampler sampler(params);
    std::vector<int32_t> tokens;
    for (int i = 0; i < 200; ++i) {
      std::vector<float> logits(50);
      for (int j = 0; j < 50; ++j) logits[j] = static_cast<float>(j % 7) * 0.3f;
      tokens.push_back(sampler.sample(logits, {}).token);
    }
    return tokens;
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42), run(43));
}

TEST(Sampler, NanIsMinusInfinityAndMaskedTokensAreNeverDrawn) {
  const float inf = std::numeric_limits<float>::infinity();
  const auto counts =
      histogram(with_temperature(1.0f), {std::nanf(""), 0.0f, -inf, 0.0f}, 2000);
  EXPECT_EQ(support(counts), (std::set<int32_t>{1, 3}));
}

TEST(Sampler, RejectsBadInput) {
  Sampler sampler(with_temperature(1.0f));
  std::vector<float> empty;
  EXPECT_THROW(sampler.sample(empty, {}), std::invalid_argument);
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> masked{-inf, std::nanf("")};
  EXPECT_THROW(sampler.sample(masked, {}), std::invalid_argument);
  std::vector<float> positive{inf, 0.0f};
  EXPECT_THROW(sampler.sample(positive, {}), std::invalid_argument);
  std::vector<float> logits{0.0f, 1.0f};
  const std::vector<int32_t> outside{2};
  EXPECT_THROW(sampler.sample(logits, outside), std::invalid_argument);
  const std::vector<int32_t> negative{-1};
  EXPECT_THROW(sampler.sample(logits, negative), std::invalid_argument);
}

TEST(Sampler, LogprobOffDrawsTheSameTokensAndReportsNone) {
  // Same seed, same logits: skipping the normalizer must not change a single draw, for
  // greedy, plain temperature and top-p (which still needs the mass internally).
  for (const float top_p : {1.0f, 0.9f}) {
    for (const float temperature : {0.0f, 0.8f}) {
      SamplingParams with;
      with.temperature = temperature;
      with.top_p = top_p;
      with.seed = 7;
      SamplingParams without = with;
      without.logprob = false;
      Sampler a(with), b(without);
      SplitMix64 gen(3);
      for (int step = 0; step < 200; ++step) {
        std::vector<float> logits(97);
        for (float& l : logits) l = float(gen.uniform() * 8.0 - 4.0);
        std::vector<float> copy = logits;
        const SampleResult ra = a.sample(logits, {});
        const SampleResult rb = b.sample(copy, {});
        ASSERT_EQ(ra.token, rb.token) << "step " << step << " temperature " << temperature;
        EXPECT_LT(ra.logprob, 0.0f);
        EXPECT_EQ(rb.logprob, 0.0f);
      }
    }
  }
}

TEST(Sampler, PlainGreedyOnlyWithoutTemperaturePenaltiesOrLogprobs) {
  SamplingParams plain;
  plain.temperature = 0;
  plain.logprob = false;
  EXPECT_TRUE(Sampler(plain).plain_greedy());
  auto edited = [&](auto edit) {
    SamplingParams p = plain;
    edit(p);
    return Sampler(p).plain_greedy();
  };
  EXPECT_FALSE(edited([](SamplingParams& p) { p.temperature = 0.5f; }));
  EXPECT_FALSE(edited([](SamplingParams& p) { p.logprob = true; }));
  EXPECT_FALSE(edited([](SamplingParams& p) { p.n_logprobs = 1; }));
  EXPECT_FALSE(edited([](SamplingParams& p) { p.repetition_penalty = 1.2f; }));
  EXPECT_FALSE(edited([](SamplingParams& p) { p.frequency_penalty = 0.5f; }));
  EXPECT_FALSE(edited([](SamplingParams& p) { p.presence_penalty = -0.5f; }));
  // Filters do not matter at temperature 0: sample() returns the argmax regardless.
  EXPECT_TRUE(edited([](SamplingParams& p) { p.top_k = 5; p.top_p = 0.5f; p.min_p = 0.1f; }));
  SplitMix64 gen(11);
  for (int step = 0; step < 50; ++step) {
    std::vector<float> logits(257);
    for (float& l : logits) l = float(gen.uniform() * 8.0 - 4.0);
    const auto argmax = std::max_element(logits.begin(), logits.end()) - logits.begin();
    SamplingParams filtered = plain;
    filtered.top_k = 5;
    filtered.top_p = 0.5f;
    EXPECT_EQ(Sampler(filtered).sample(logits, {}).token, argmax);
  }
}

TEST(Sampler, ValidatesParameters) {
  auto invalid = [](auto edit) {
    SamplingParams p;
    edit(p);
    return p;
  };
  EXPECT_THROW(Sampler{invalid([](SamplingParams& p) { p.temperature = -0.1f; })}, std::invalid_argument);
  EXPECT_THROW(Sampler{invalid([](SamplingParams& p) { p.top_p = 0.0f; })}, std::invalid_argument);
  EXPECT_THROW(Sampler{invalid([](SamplingParams& p) { p.top_p = 1.5f; })}, std::invalid_argument);
  EXPECT_THROW(Sampler{invalid([](SamplingParams& p) { p.min_p = 2.0f; })}, std::invalid_argument);
  EXPECT_THROW(Sampler{invalid([](SamplingParams& p) { p.repetition_penalty = 0.0f; })}, std::invalid_argument);
  EXPECT_THROW(Sampler{invalid([](SamplingParams& p) { p.n_logprobs = 21; })}, std::invalid_argument);
  EXPECT_THROW(Sampler{invalid([](SamplingParams& p) { p.presence_penalty = NAN; })}, std::invalid_argument);
  try {
    Sampler sampler{invalid([](SamplingParams& p) { p.top_p = 1.5f; })};
    ADD_FAILURE() << "top_p 1.5 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("top_p"), std::string::npos);
  }
  EXPECT_NO_THROW(Sampler{SamplingParams{}});
}

}  // namespace
}  // namespace troupe
