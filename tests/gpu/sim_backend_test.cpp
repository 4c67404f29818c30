// The sim backend: roofline step times against hand-computed figures, deterministic logits,
// accounting-only KV, real waiting, and the batch planner driving it through preemptions.
#include "gpu/sim_backend.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "model/batch_planner.hpp"
#include "model/kv_cache_core.hpp"
#include "model/sampler.hpp"

namespace troupe {
namespace {

using Tokens = std::vector<int32_t>;

// Mistral-7B's published parameter count; bf16 weights are twice that in bytes.
constexpr double kParams7b = 7241732096.0;
constexpr double kWeightBytes7b = 2 * kParams7b;
// K and V x 32 layers x 8 KV heads x 128 dims x 2 bytes.
constexpr double kKvBytesPerToken7b = 2.0 * 32 * 8 * 128 * 2;
constexpr double kHbm = 4.8e12;
constexpr double kFlops = 990e12;
constexpr double kOverhead = 20e-6;

BackendOptions options(int64_t kv_blocks, int max_batch_tokens = 512) {
  BackendOptions o;
  o.name = "sim";
  o.kv_blocks = kv_blocks;
  o.kv_block_tokens = 16;
  o.max_batch_tokens = max_batch_tokens;
  return o;
}

// Steps of `n` sequences of `tokens` tokens each after `n_past` positions, on blocks 0...
struct BatchOf {
  BatchOf(int n, int tokens, int32_t n_past) : ids(size_t(tokens), 5) {
    const int32_t blocks = (n_past + tokens + 15) / 16;
    for (int32_t b = 0; b < blocks; ++b) table.push_back(b);
    for (int i = 0; i < n; ++i) steps.push_back({uint64_t(i), ids, n_past, table, true});
  }
  Tokens ids;
  std::vector<int32_t> table;
  std::vector<SeqStep> steps;
};

// One sequence whose token (32000) lies outside the profiles' vocabulary: a refused batch.
struct OutsideVocab {
  Tokens ids = {32000};
  std::vector<int32_t> table = {0};
  std::vector<SeqStep> steps = {{1, ids, 0, table, true}};
};

TEST(SimProfile, SevenBH200HasMistralsShape) {
  const SimProfile p = sim_profile("7b-h200");
  EXPECT_EQ(p.params(), uint64_t(kParams7b));
  EXPECT_DOUBLE_EQ(p.weight_bytes(), kWeightBytes7b);  // ~14.5 GB
  EXPECT_DOUBLE_EQ(p.kv_bytes_per_token(), kKvBytesPerToken7b);
  const ModelDesc d = sim_model_desc(p);
  EXPECT_EQ(d.n_vocab, 32000u);
  EXPECT_EQ(d.n_layer, 32u);
  EXPECT_EQ(d.n_head_kv, 8u);
  EXPECT_EQ(d.layers.size(), 32u);
  EXPECT_EQ(d.token_embd, nullptr);
}

TEST(SimProfile, UnknownNamesAndBadFieldsAreRefused) {
  try {
    sim_profile("70b-b200");
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("7b-h200"), std::string::npos) << e.what();
  }
  SimProfile p = sim_profile("7b-h200");
  p.memory_bytes_per_second = 0;
  EXPECT_THROW(p.validate(), std::invalid_argument);
  EXPECT_THROW(SimBackend(p, options(8)), std::invalid_argument);
}

TEST(SimBackend, DecodeOfOneSequenceStreamsTheWeightsOnce) {
  SimBackend sim(sim_profile("7b-h200"), options(64), /*time_scale=*/0);
  BatchOf one(1, 1, 0);
  const double expected = (kWeightBytes7b + kKvBytesPerToken7b) / kHbm + kOverhead;
  EXPECT_NEAR(sim.step_seconds(one.steps), expected, 1e-12);
  EXPECT_GT(expected, 3.0e-3);  // 14.5 GB / 4.8 TB/s + 20 us ~= 3.04 ms
  EXPECT_LT(expected, 3.1e-3);
  std::vector<float> logits(32000);
  sim.step(one.steps, logits.data());
  EXPECT_NEAR(sim.last_step_seconds(), expected, 1e-12);
}

TEST(SimBackend, LargeDecodeBatchAddsEverySequencesKv) {
  SimBackend sim(sim_profile("7b-h200"), options(64 * 64), 0);
  BatchOf batch(256, 1, 1023);  // 256 sequences reading 1024 positions each
  const double memory = (kWeightBytes7b + 256 * 1024 * kKvBytesPerToken7b) / kHbm;
  const double compute = 2 * kParams7b * 256 / kFlops;
  ASSERT_GT(memory, compute);
  EXPECT_NEAR(sim.step_seconds(batch.steps), memory + kOverhead, 1e-12);  // ~10.2 ms
}

TEST(SimBackend, PrefillChunkIsBoundByFlops) {
  SimBackend sim(sim_profile("7b-h200"), options(64), 0);
  BatchOf chunk(1, 512, 0);
  const double compute = 2 * kParams7b * 512 / kFlops;
  const double memory = (kWeightBytes7b + 512 * kKvBytesPerToken7b) / kHbm;
  ASSERT_GT(compute, memory);
  EXPECT_NEAR(sim.step_seconds(chunk.steps), compute + kOverhead, 1e-12);  // ~7.5 ms
  std::vector<float> logits(32000);
  sim.step(chunk.steps, logits.data());
  EXPECT_NEAR(sim.last_step_seconds(), compute + kOverhead, 1e-12);
}

// splitmix64 from its published constants, independent of the code under test.
uint64_t splitmix64_once(uint64_t seed) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

TEST(SimBackend, LogitsFavourAFixedFunctionOfPositionAndPreviousToken) {
  SimBackend sim(sim_profile("7b-h200"), options(64), 0);
  const Tokens prompt = {11, 12, 13};
  const Tokens decode = {400};
  const std::vector<int32_t> table = {3, 4};
  const std::vector<SeqStep> batch = {{1, prompt, 0, table, true},
                                      {2, prompt, 0, table, false},
                                      {3, decode, 20, table, true}};
  std::vector<float> logits(2 * 32000, -1.0f);
  sim.step(batch, logits.data());
  const auto argmax = [&](int row) {
    const float* r = logits.data() + size_t(row) * 32000;
    return int32_t(std::max_element(r, r + 32000) - r);
  };
  const int32_t after_prompt = int32_t(3 + splitmix64_once((uint64_t(2) << 32) | 13) % 31997);
  const int32_t after_decode = int32_t(3 + splitmix64_once((uint64_t(20) << 32) | 400) % 31997);
  EXPECT_EQ(argmax(0), after_prompt);
  EXPECT_EQ(argmax(1), after_decode);
  EXPECT_EQ(SimBackend::next_token(2, 13, 32000), after_prompt);
  EXPECT_EQ(std::count(logits.begin(), logits.end(), 0.0f), 2 * 31999);

  std::vector<float> again(32000);
  sim.step(std::span(batch).first(1), again.data());
  EXPECT_TRUE(std::equal(again.begin(), again.end(), logits.begin()));
}

TEST(SimBackend, StepGreedyPicksTheArgmaxOfTheLogitsStepWouldWrite) {
  SimBackend sim(sim_profile("7b-h200"), options(64), 0);
  EXPECT_TRUE(sim.picks_greedy());
  const Tokens prompt = {11, 12, 13};
  const Tokens decode = {400};
  const std::vector<int32_t> table = {3, 4};
  const std::vector<SeqStep> batch = {{1, prompt, 0, table, true},
                                      {2, prompt, 0, table, false},
                                      {3, decode, 20, table, true},
                                      {4, decode, 7, table, true}};
  std::vector<float> logits(3 * 32000);
  sim.step(batch, logits.data());
  std::vector<int32_t> picked(3, -1);
  sim.step_greedy(batch, picked);
  for (size_t row = 0; row < 3; ++row) {
    const float* r = logits.data() + row * 32000;
    EXPECT_EQ(picked[row], int32_t(std::max_element(r, r + 32000) - r)) << "row " << row;
  }
  std::vector<int32_t> short_of_room(2);
  EXPECT_THROW(sim.step_greedy(batch, short_of_room), std::invalid_argument);
  const OutsideVocab bad;
  std::vector<int32_t> one(1);
  EXPECT_THROW(sim.step_greedy(bad.steps, one), std::invalid_argument);
}

// A backend that only computes logits on the calling thread, as cpu does: Backend's defaults
// for everything else.
struct Plain final : Backend {
  explicit Plain(Backend& inner) : inner(inner) {}
  const ModelDesc& desc() const override { return inner.desc(); }
  std::string name() const override { return "plain"; }
  KvPool& kv() override { return inner.kv(); }
  int max_batch_tokens() const override { return inner.max_batch_tokens(); }
  void step(std::span<const SeqStep> batch, float* logits) override { inner.step(batch, logits); }
  Backend& inner;
};

TEST(Backend, StepGreedyIsRefusedWhereTheBackendDoesNotPick) {
  // A backend that only computes logits (as cpu and cuda do) keeps the defaults.
  SimBackend sim(sim_profile("7b-h200"), options(4), 0);
  Plain plain(sim);
  EXPECT_FALSE(plain.picks_greedy());
  std::vector<int32_t> tokens;
  EXPECT_THROW(plain.step_greedy({}, tokens), std::logic_error);
}

TEST(SimBackend, ValidatesBatchesLikeEveryBackend) {
  SimBackend sim(sim_profile("7b-h200"), options(4, 8), 0);
  const Tokens ok = {1, 2};
  const Tokens outside = {32000};
  const Tokens too_many(9, 1);
  const std::vector<int32_t> table = {0};
  const std::vector<int32_t> bad_block = {4};
  std::vector<float> logits(32000);
  auto step = [&](SeqStep s) { sim.step(std::span(&s, 1), logits.data()); };
  EXPECT_NO_THROW(step({1, ok, 0, table, true}));
  EXPECT_THROW(step({1, outside, 0, table, true}), std::invalid_argument);
  EXPECT_THROW(step({1, too_many, 0, table, true}), std::invalid_argument);
  EXPECT_THROW(step({1, ok, 15, table, true}), std::invalid_argument);  // needs 2 blocks
  EXPECT_THROW(step({1, ok, 0, bad_block, true}), std::invalid_argument);
}

TEST(SimBackend, KvIsAccountingOnly) {
  BackendOptions o = options(0);
  o.kv_bytes = 100ull << 30;  // 100 GiB of simulated KV: 51200 blocks of 2 MiB
  SimBackend sim(sim_profile("7b-h200"), o, 0);
  EXPECT_EQ(sim.kv().n_blocks(), 51200);
  EXPECT_EQ(sim.kv().block_tokens(), 16);
  EXPECT_DOUBLE_EQ(sim.simulated_kv_bytes(), double(100ull << 30));
  EXPECT_LT(sim.kv().bytes(), 4ull << 20);
  EXPECT_EQ(SimBackend(sim_profile("7b-h200"), options(77), 0).kv().n_blocks(), 77);
  o.kv_bytes = 1 << 20;  // below one 2 MiB block
  EXPECT_THROW(SimBackend(sim_profile("7b-h200"), o, 0), std::invalid_argument);
  EXPECT_THROW(SimBackend(sim_profile("7b-h200"), options(-1), 0), std::invalid_argument);
  EXPECT_THROW(SimBackend(sim_profile("7b-h200"), options(8, 0), 0), std::invalid_argument);
  EXPECT_THROW(SimBackend(sim_profile("7b-h200"), options(8), -1.0), std::invalid_argument);
}

TEST(SimBackend, MakeBackendNamesItSimulated) {
  const ModelDesc unused;
  const std::unique_ptr<Backend> backend = make_backend(unused, options(32));
  EXPECT_NE(backend->name().find("simulated"), std::string::npos) << backend->name();
  EXPECT_EQ(backend->desc().n_vocab, 32000u);
  EXPECT_EQ(backend->kv().n_blocks(), 32);
}

// A profile whose every step takes `seconds` (the launch overhead dominates).
SimProfile fixed_time_profile(double seconds) {
  SimProfile p = sim_profile("7b-h200");
  p.name = "fixed";
  p.memory_bytes_per_second = 1e30;
  p.flops_per_second = 1e30;
  p.launch_overhead_seconds = seconds;
  return p;
}

double timed_step(SimBackend& sim) {
  BatchOf one(1, 1, 0);
  std::vector<float> logits(32000);
  const auto start = std::chrono::steady_clock::now();
  sim.step(one.steps, logits.data());
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

TEST(SimBackend, WaitsTheScaledStepTime) {
  SimBackend full(fixed_time_profile(5e-3), options(8), 1.0);
  EXPECT_GE(timed_step(full), 5e-3);
  SimBackend half(fixed_time_profile(8e-3), options(8), 0.5);
  EXPECT_GE(timed_step(half), 4e-3);
  SimBackend short_step(fixed_time_profile(60e-6), options(8), 1.0);  // the spin path
  EXPECT_GE(timed_step(short_step), 60e-6);
  SimBackend no_wait(fixed_time_profile(10.0), options(8), 0.0);
  EXPECT_LT(timed_step(no_wait), 1.0);
  EXPECT_DOUBLE_EQ(no_wait.last_step_seconds(), 10.0);
}

using SteadyClock = std::chrono::steady_clock;

TEST(SimBackend, RunsHostWorkWhileTheStepWaitsAndReportsTheDevicesTimes) {
  SimBackend sim(fixed_time_profile(20e-3), options(8), 1.0);
  BatchOf two(2, 1, 3);
  std::vector<int32_t> expected(2), picked(2, -1);
  SimBackend(fixed_time_profile(20e-3), options(8), 0.0).step_greedy(two.steps, expected);

  int runs = 0;
  SteadyClock::time_point work_began, work_ended;
  const auto times = sim.step_overlapping(two.steps, {.logits = nullptr, .picked = picked}, [&] {
    ++runs;
    work_began = SteadyClock::now();
    work_ended = SteadyClock::now();
  });
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(picked, expected);
  EXPECT_GE(work_began, times.started);                  // under way when the host works
  EXPECT_LT(work_ended, times.ended);                    // and waited for after it
  const auto step_time =
      std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(20e-3));
  EXPECT_EQ(times.ended - times.started, step_time);     // the device's time, exactly
  EXPECT_GE(SteadyClock::now(), times.ended);            // returned once it had passed

  // Host work longer than the step: the device's end is the step's deadline, not the host's.
  const auto late = sim.step_overlapping(two.steps, {.logits = nullptr, .picked = picked}, [&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    work_ended = SteadyClock::now();
  });
  EXPECT_EQ(late.ended - late.started, step_time);
  EXPECT_LT(late.ended, work_ended);

  // Logits, as step() writes them.
  std::vector<float> logits(2 * 32000);
  sim.step_overlapping(two.steps, {.logits = logits.data(), .picked = {}}, [&] { ++runs; });
  EXPECT_EQ(runs, 2);
  EXPECT_EQ(logits[size_t(expected[1]) + 32000], 16.0f);
}

TEST(SimBackend, RunsHostWorkOnceWhenTheStepIsRefusedOrTheWorkThrows) {
  SimBackend sim(fixed_time_profile(5e-3), options(4), 1.0);
  const OutsideVocab bad;
  std::vector<int32_t> one(1);
  int runs = 0;
  EXPECT_THROW(sim.step_overlapping(bad.steps, {.logits = nullptr, .picked = one}, [&] { ++runs; }),
               std::invalid_argument);
  EXPECT_EQ(runs, 1);
  std::vector<int32_t> no_room(2);  // the batch wants one token
  BatchOf ok(1, 1, 0);
  EXPECT_THROW(
      sim.step_overlapping(ok.steps, {.logits = nullptr, .picked = no_room}, [&] { ++runs; }),
      std::invalid_argument);
  EXPECT_EQ(runs, 2);
  EXPECT_THROW(sim.step_overlapping(ok.steps, {.logits = nullptr, .picked = one},
                                    [&] {
                                      ++runs;
                                      throw std::runtime_error("delivery failed");
                                    }),
               std::runtime_error);
  EXPECT_EQ(runs, 3);
}

TEST(Backend, DefaultStepOverlappingRunsHostWorkBeforeTheStep) {
  // A backend that computes on the calling thread (cpu) has nothing to overlap: the host work
  // runs first and the step's times start after it.
  SimBackend sim(fixed_time_profile(5e-3), options(4), 1.0);
  Plain plain(sim);
  BatchOf one(1, 1, 0);
  std::vector<float> logits(32000);
  int runs = 0;
  SteadyClock::time_point work_ended;
  const Backend::StepOutput rows{.logits = logits.data(), .picked = {}};
  const auto times = plain.step_overlapping(one.steps, rows, [&] {
    ++runs;
    work_ended = SteadyClock::now();
  });
  EXPECT_EQ(runs, 1);
  EXPECT_GE(times.started, work_ended);
  EXPECT_GE(times.ended - times.started, std::chrono::milliseconds(5));
  const OutsideVocab bad;
  EXPECT_THROW(plain.step_overlapping(bad.steps, rows, [&] { ++runs; }), std::invalid_argument);
  EXPECT_EQ(runs, 2);
}

// Runs the prompts to the end through the planner on the sim (greedy) and returns each
// sequence's tokens and the simulated time.
std::map<uint64_t, Tokens> serve(int64_t kv_blocks, const std::vector<Tokens>& prompts,
                                 int32_t max_new, uint64_t* preemptions, double* seconds) {
  SimBackend sim(sim_profile("7b-h200"), options(kv_blocks, 64), 0);
  KvCacheCore core(KvCacheConfig{int32_t(sim.kv().n_blocks()), sim.kv().block_tokens()});
  CorePlannerKv kv(core);
  PlannerConfig config;
  config.max_batch_tokens = 64;
  config.max_seqs = 8;
  BatchPlanner planner(config, kv);
  for (size_t i = 0; i < prompts.size(); ++i) {
    SeqRequest request;
    request.seq = i + 1;
    request.prompt = prompts[i];
    request.max_new_tokens = max_new;
    EXPECT_TRUE(planner.submit(std::move(request)).ok());
  }
  Sampler greedy(SamplingParams{.temperature = 0.0f});
  std::map<uint64_t, Tokens> outputs;
  std::vector<SeqStep> steps;
  std::vector<float> logits;
  *seconds = 0;
  while (!planner.idle()) {
    Batch batch = planner.plan(0, PlannerClock::now());
    if (batch.empty()) continue;
    steps.clear();
    for (const PlannedStep& p : batch.steps)
      steps.push_back({p.seq, p.tokens, p.n_past, p.block_table, p.want_logits});
    logits.resize(steps.size() * 32000);
    sim.step(steps, logits.data());
    *seconds += sim.last_step_seconds();
    std::vector<SampledToken> sampled;
    float* row = logits.data();
    for (const PlannedStep& p : batch.steps) {
      if (!p.want_logits) continue;
      const int32_t token = greedy.sample(std::span(row, 32000), {}).token;
      sampled.push_back({p.seq, token, false});
      outputs[p.seq].push_back(token);
      row += 32000;
    }
    planner.complete(batch.id, sampled);
  }
  EXPECT_EQ(core.check(), std::nullopt);
  EXPECT_EQ(core.available_blocks(), core.num_blocks());
  *preemptions = planner.stats().preemptions;
  return outputs;
}

TEST(SimBackend, PlannerPreemptionGivesTheTokensOfAnUninterruptedRun) {
  std::vector<Tokens> prompts;
  for (int32_t s = 0; s < 6; ++s) {
    Tokens p;
    for (int32_t i = 0; i < 20 + 7 * s; ++i) p.push_back(100 + 31 * s + i);
    prompts.push_back(p);
  }
  uint64_t roomy_preemptions = 0, tight_preemptions = 0;
  double roomy_seconds = 0, tight_seconds = 0;
  const auto roomy = serve(256, prompts, 40, &roomy_preemptions, &roomy_seconds);
  const auto tight = serve(12, prompts, 40, &tight_preemptions, &tight_seconds);
  EXPECT_EQ(roomy_preemptions, 0u);
  EXPECT_GT(tight_preemptions, 0u);
  EXPECT_EQ(tight, roomy);
  for (const auto& [seq, tokens] : roomy) {
    ASSERT_EQ(tokens.size(), 40u) << seq;
    // Independently: each token follows from (position, previous token).
    int32_t previous = prompts[seq - 1].back();
    int32_t position = int32_t(prompts[seq - 1].size()) - 1;
    for (int32_t token : tokens) {
      EXPECT_EQ(token, int32_t(3 + splitmix64_once((uint64_t(position) << 32) |
                                                   uint32_t(previous)) % 31997));
      previous = token;
      ++position;
    }
  }
  EXPECT_GT(tight_seconds, roomy_seconds);  // recompute and smaller batches cost time
}

}  // namespace
}  // namespace troupe
