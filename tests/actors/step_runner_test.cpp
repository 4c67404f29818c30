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
    EXPECT_LE(result.started, result.backend_ended);
    EXPECT_GE(result.outputs[i].at, result.backend_ended);
    EXPECT_LE(result.outputs[i].at, EngineClock::now());
  }
  EXPECT_EQ(first.history, (std::vector<int32_t>{5, 6, 7, after_first}));
  EXPECT_EQ(second.history, (std::vector<int32_t>{9, after_second}));

  // Host work given to run() runs once, inside the step on the sim (the device's times
  // bracket it).
  fixture.planner.complete(batch.id, result.sampled);
  const Batch next = fixture.planner.plan(0, PlannerClock::now());
  int host_runs = 0;
  EngineClock::time_point host_at;
  const StepResult overlapped = runner.run(next, samplers, [&] {
    ++host_runs;
    host_at = EngineClock::now();
  });
  EXPECT_EQ(host_runs, 1);
  EXPECT_GE(host_at, overlapped.started);
  EXPECT_LE(host_at, overlapped.backend_ended);
  EXPECT_EQ(overlapped.sampled.size(), 2u);
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

// A SimBackend (time scale 0) that counts how it was asked: step() or step_greedy().
class CountingSim final : public Backend {
 public:
  explicit CountingSim(const BackendOptions& options)
      : sim_(sim_profile("7b-h200"), options, 0.0) {}
  const ModelDesc& desc() const override { return sim_.desc(); }
  std::string name() const override { return sim_.name(); }
  KvPool& kv() override { return sim_.kv(); }
  int max_batch_tokens() const override { return sim_.max_batch_tokens(); }
  void step(std::span<const SeqStep> batch, float* logits) override {
    ++logit_steps;
    sim_.step(batch, logits);
  }
  bool picks_greedy() const override { return true; }
  void step_greedy(std::span<const SeqStep> batch, std::span<int32_t> tokens) override {
    ++greedy_steps;
    sim_.step_greedy(batch, tokens);
  }
  int logit_steps = 0, greedy_steps = 0;

 private:
  SimBackend sim_;
};

TEST(StepRunner, LetsTheBackendPickOnlyWhenEverySamplerIsPlainGreedy) {
  BackendOptions options;
  options.kv_blocks = 32;
  options.kv_block_tokens = 4;
  auto owned = std::make_unique<CountingSim>(options);
  CountingSim& backend = *owned;
  const uint32_t n_vocab = backend.desc().n_vocab;
  const Vocab vocab = test::plain_vocab(int32_t(n_vocab) - 3);
  StepRunner runner(std::move(owned), vocab);

  SamplingParams plain = greedy();
  plain.logprob = false;
  SamplingParams penalized = plain;
  penalized.repetition_penalty = 1.1f;
  // Each round: the samplers of sequences 1 and 2, and whether the backend may pick.
  struct Round {
    SamplingParams first, second;
    bool picks;
  };
  const Round rounds[] = {{plain, plain, true},
                          {plain, greedy(), false},     // a logprob is wanted
                          {penalized, plain, false}};  // a penalty needs the logits
  for (const Round& round : rounds) {
    PlannerFixture fixture;
    ASSERT_TRUE(fixture.planner.submit({.seq = 1, .prompt = {5, 6, 7}, .max_new_tokens = 4}).ok());
    ASSERT_TRUE(fixture.planner.submit({.seq = 2, .prompt = {9}, .max_new_tokens = 4}).ok());
    SeqSampling first(round.first, {5, 6, 7}, false), second(round.second, {9}, false);
    const int logit_steps = backend.logit_steps, greedy_steps = backend.greedy_steps;
    const Batch batch = fixture.planner.plan(0, PlannerClock::now());
    ASSERT_EQ(batch.steps.size(), 2u);
    SeqSampling* samplers[] = {batch.steps[0].seq == 1 ? &first : &second,
                               batch.steps[0].seq == 1 ? &second : &first};
    const StepResult result = runner.run(batch, samplers);
    EXPECT_EQ(backend.greedy_steps - greedy_steps, round.picks ? 1 : 0);
    EXPECT_EQ(backend.logit_steps - logit_steps, round.picks ? 0 : 1);
    // The same tokens either way (the penalty cannot move a one-hot argmax of 16 by 10 %).
    const int32_t after_first = SimBackend::next_token(2, 7, n_vocab);
    const int32_t after_second = SimBackend::next_token(0, 9, n_vocab);
    ASSERT_EQ(result.sampled.size(), 2u);
    for (std::size_t i = 0; i < 2; ++i)
      EXPECT_EQ(result.sampled[i].token, result.sampled[i].seq == 1 ? after_first : after_second);
    EXPECT_EQ(first.history, (std::vector<int32_t>{5, 6, 7, after_first}));
    EXPECT_EQ(second.history, (std::vector<int32_t>{9, after_second}));
    if (round.picks)
      for (const SampledOutput& output : result.outputs) {
        EXPECT_EQ(output.logprob, 0.0f);
        EXPECT_TRUE(output.top.empty());
      }
  }
}

TEST(StepRunner, RefusesAMismatchedSamplerListAndPassesBackendFailuresOn) {
  const Vocab vocab = test::plain_vocab(13);
  StepRunner runner(std::make_unique<test::ScriptedBackend>(16, 4, 64, 0), vocab);
  PlannerFixture fixture;
  ASSERT_TRUE(fixture.planner.submit({.seq = 1, .prompt = {5}, .max_new_tokens = 4}).ok());
  const Batch batch = fixture.planner.plan(0, PlannerClock::now());
  EXPECT_THROW(runner.run(batch, {}), std::invalid_argument);
  int host_runs = 0;
  EXPECT_THROW(runner.run(batch, {}, [&] { ++host_runs; }), std::invalid_argument);
  EXPECT_EQ(host_runs, 1);  // host work runs even for a refused step
  SeqSampling sampling(greedy(), {5}, false);
  SeqSampling* samplers[] = {&sampling};
  EXPECT_THROW(runner.run(batch, samplers), std::runtime_error);
  EXPECT_THROW(runner.run(batch, samplers, [&] { ++host_runs; }), std::runtime_error);
  EXPECT_EQ(host_runs, 2);
  EXPECT_EQ(sampling.history, (std::vector<int32_t>{5}));
  EXPECT_THROW(StepRunner(nullptr, vocab), std::invalid_argument);
}

}  // namespace
}  // namespace troupe
