// StepRunner: a planned batch through a backend and the samplers. The sim backend's greedy
// token after token t at position p is SimBackend::next_token(p, t) (its documented logits);
// a scripted backend checks EOS flags, sampler counts and failures.
#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>

#include "actors/step_runner.hpp"
#include "gpu/sim_backend.hpp"
#include "gpu/sim_profile.hpp"
#include "tests/actors/runtime_test_support.hpp"

namespace troupe {
namespace {

SamplingParams greedy() {
  SamplingParams params;
  params.temperature = 0;
  return params;
}

struct PlannerFixture {
  KvCacheCore core{KvCacheConfig{.num_blocks = 32, .block_size = 4}};
  CorePlannerKv kv{core};
  BatchPlanner planner{PlannerConfig{.max_batch_tokens = 64, .max_seqs = 8, .max_queued = 8,
                                     .workers = 1},
                       kv};
};

TEST(StepRunner, SamplesEachSequenceOnTheSimBackendAndExtendsItsHistory) {
  const SimProfile profile = sim_profile("7b-h200");
  BackendOptions options;
  options.kv_blocks = 32;
  options.kv_block_tokens = 4;
  const Vocab vocab = test::plain_vocab(int32_t(profile.model.n_vocab) - 3);
  StepRunner runner(std::make_unique<SimBackend>(profile, options, 0.0), vocab);

  PlannerFixture fixture;
  ASSERT_TRUE(fixture.planner.submit({.seq = 1, .prompt = {5, 6, 7}, .max_new_tokens = 4}).ok());
  ASSERT_TRUE(fixture.planner.submit({.seq = 2, .prompt = {9}, .max_new_tokens = 4}).ok());
  SeqSampling first(greedy(), {5, 6, 7}, false), second(greedy(), {9}, false);
  const Batch batch = fixture.planner.plan(0, PlannerClock::now());
  ASSERT_EQ(batch.steps.size(), 2u);
  SeqSampling* samplers[] = {batch.steps[0].seq == 1 ? &first : &second,
                             batch.steps[0].seq == 1 ? &second : &first};
  const StepResult result = runner.run(batch, samplers);

  const uint32_t n_vocab = profile.model.n_vocab;
  const int32_t after_first = SimBackend::next_token(2, 7, n_vocab);
  const int32_t after_second = SimBackend::next_token(0, 9, n_vocab);
  ASSERT_EQ(result.sampled.size(), 2u);
  ASSERT_EQ(result.outputs.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    const bool is_first = result.sampled[i].seq == 1;
    EXPECT_EQ(result.sampled[i].token, is_first ? after_first : after_second);
    EXPECT_FALSE(result.sampled[i].stop);
    EXPECT_EQ(result.outputs[i].seq, result.sampled[i].seq);
    EXPECT_EQ(result.outputs[i].token, result.sampled[i].token);
    EXPECT_LE(result.outputs[i].logprob, 0.0f);
    EXPECT_GE(result.outputs[i].at, result.started);
    EXPECT_LE(result.outputs[i].at, result.ended);
  }
  EXPECT_EQ(first.history, (std::vector<int32_t>{5, 6, 7, after_first}));
  EXPECT_EQ(second.history, (std::vector<int32_t>{9, after_second}));
}

TEST(StepRunner, FlagsEosAsStopUnlessIgnoredAndReportsTopLogprobs) {
  const Vocab vocab = test::plain_vocab(13);
  StepRunner runner(std::make_unique<test::ScriptedBackend>(16, vocab.eos()), vocab);
  PlannerFixture fixture;
  ASSERT_TRUE(fixture.planner.submit({.seq = 1, .prompt = {5}, .max_new_tokens = 4}).ok());
  ASSERT_TRUE(fixture.planner.submit({.seq = 2, .prompt = {6}, .max_new_tokens = 4}).ok());
  SamplingParams with_logprobs = greedy();
  with_logprobs.n_logprobs = 2;
  SeqSampling stops(with_logprobs, {5}, false), ignores(greedy(), {6}, true);
  const Batch batch = fixture.planner.plan(0, PlannerClock::now());
  ASSERT_EQ(batch.steps.size(), 2u);
  SeqSampling* samplers[] = {batch.steps[0].seq == 1 ? &stops : &ignores,
                             batch.steps[0].seq == 1 ? &ignores : &stops};
  const StepResult result = runner.run(batch, samplers);
  ASSERT_EQ(result.sampled.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(result.sampled[i].token, 2);
    EXPECT_EQ(result.sampled[i].stop, result.sampled[i].seq == 1);
    EXPECT_EQ(result.outputs[i].top.size(), result.sampled[i].seq == 1 ? 2u : 0u);
  }
}

TEST(StepRunner, RefusesAMismatchedSamplerListAndPassesBackendFailuresOn) {
  const Vocab vocab = test::plain_vocab(13);
  StepRunner runner(std::make_unique<test::ScriptedBackend>(16, 4, 64, 0), vocab);
  PlannerFixture fixture;
  ASSERT_TRUE(fixture.planner.submit({.seq = 1, .prompt = {5}, .max_new_tokens = 4}).ok());
  const Batch batch = fixture.planner.plan(0, PlannerClock::now());
  EXPECT_THROW(runner.run(batch, {}), std::invalid_argument);
  SeqSampling sampling(greedy(), {5}, false);
  SeqSampling* samplers[] = {&sampling};
  EXPECT_THROW(runner.run(batch, samplers), std::runtime_error);
  EXPECT_EQ(sampling.history, (std::vector<int32_t>{5}));
  EXPECT_THROW(StepRunner(nullptr, vocab), std::invalid_argument);
}

}  // namespace
}  // namespace troupe
