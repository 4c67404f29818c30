// Every runtime x sync combination that is not refused (threads + actor is) serves the same
// greedy tokens as each prompt run alone on a cpu backend, on a tiny generated model, with
// two workers and requests submitted together; and every KV block comes back.
// Under ThreadSanitizer (TROUPE_TSAN) only the threads runtime runs: TSan cannot see into
// Debian's CAF build and reports its internals (DESIGN.md); the actors combinations run in
// the other builds.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "actors/engine.hpp"
#include "gpu/backend.hpp"
#include "model/gguf.hpp"
#include "tests/actors/runtime_test_support.hpp"
#include "tests/util/scratch_file.hpp"
#include "tests/util/tiny_model.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;

struct Combination {
  Runtime runtime;
  SyncMode sync;
};

std::vector<Combination> combinations() {
  std::vector<Combination> all;
#ifdef TROUPE_TSAN
  for (Runtime runtime : {Runtime::Threads})
#else
  for (Runtime runtime : {Runtime::Actors, Runtime::Threads})
#endif
    for (SyncMode sync : all_sync_modes)
      if (!(runtime == Runtime::Threads && sync == SyncMode::Actor)) all.push_back({runtime, sync});
  return all;
}

std::string label(const Combination& combination) {
  return std::string(to_string(combination.runtime)) + " x " +
         std::string(to_string(combination.sync));
}

// The combination's runtime and sync, two workers.
EngineOptions options_for(const Combination& combination) {
  EngineOptions options;
  options.runtime = combination.runtime;
  options.sync = combination.sync;
  options.workers = 2;
  return options;
}

std::vector<int32_t> prompt_of(int32_t length, int32_t salt) {
  std::vector<int32_t> prompt;
  for (int32_t i = 0; i < length; ++i) prompt.push_back(3 + (salt * 53 + i * 7) % 250);
  return prompt;
}

class RuntimeMatrix : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    file_ = new test::ScratchFile(test::tiny_model_bytes(test::tiny_model_preset("llama-gpt2-q4_1")));
  }
  static void TearDownTestSuite() {
    delete file_;
    file_ = nullptr;
  }
  static test::ScratchFile* file_;
};
test::ScratchFile* RuntimeMatrix::file_ = nullptr;

TEST_F(RuntimeMatrix, EveryCombinationServesTheSoloGreedyTokens) {
  const std::vector<std::vector<int32_t>> prompts = {prompt_of(4, 1), prompt_of(11, 2),
                                                     prompt_of(17, 3)};
  constexpr int32_t kNew = 5;
  std::vector<std::vector<int32_t>> expected;
  {
    const GgufFile gguf = GgufFile::open(file_->path());
    const ModelDesc desc = ModelDesc::from_gguf(gguf);
    for (const auto& prompt : prompts) {
      BackendOptions options;
      options.threads = 1;
      options.kv_block_tokens = 4;
      options.kv_blocks = 64;
      auto backend = make_backend(desc, options);
      expected.push_back(test::solo_greedy(*backend, prompt, kNew));
    }
  }

  EngineOptions refused;
  refused.runtime = Runtime::Threads;
  refused.sync = SyncMode::Actor;
  refused.model_path = file_->path();
  EXPECT_THROW(refused.validate(), std::invalid_argument);

  for (const Combination& combination : combinations()) {
    SCOPED_TRACE(label(combination));
    EngineOptions options = options_for(combination);
    options.model_path = file_->path();
    options.backend.name = "cpu";
    options.backend.threads = 1;
    options.backend.kv_block_tokens = 4;
    options.backend.kv_blocks = 64;
    options.planner = {.max_batch_tokens = 8, .max_seqs = 4, .max_queued = 16, .workers = 2};
    options.context_tokens = 64;
    std::unique_ptr<Engine> engine;
    try {
      engine = make_engine(options);
    } catch (const std::exception& error) {
      ADD_FAILURE() << "refused: " << error.what();
      continue;
    }
    std::vector<std::shared_ptr<test::RecordingSink>> sinks;
    for (const auto& prompt : prompts) {
      GenerateRequest request;
      request.prompt_tokens = prompt;
      request.max_tokens = kNew;
      request.ignore_eos = true;
      request.sampling.temperature = 0;
      sinks.push_back(std::make_shared<test::RecordingSink>());
      engine->submit(request, sinks.back());
    }
    for (std::size_t i = 0; i < prompts.size(); ++i) {
      ASSERT_TRUE(sinks[i]->wait_end());
      EXPECT_EQ(sinks[i]->end().kind, EndKind::Finished) << sinks[i]->end().message;
      EXPECT_EQ(sinks[i]->ends(), 1);
      EXPECT_EQ(sinks[i]->tokens(), expected[i]) << "prompt " << i;
    }
    bool drained = false;
    for (int i = 0; i < 2000 && !drained; ++i) {
      const KvStats kv = engine->stats().kv;
      drained = kv.in_use_blocks == 0 && kv.free_blocks + kv.cached_idle_blocks == kv.total_blocks;
      if (!drained) std::this_thread::sleep_for(1ms);
    }
    EXPECT_TRUE(drained);
    EXPECT_EQ(engine->shutdown(100ms), 0);
  }
}

// On the sim backend (no waiting) the same requests, greedy without logprobs (the backend
// picks the tokens itself) and greedy with them (logits and the sampler), in one engine and
// in the same batches: every combination gives the sim's documented token function either way.
TEST(RuntimeMatrixSim, BackendPickedAndSampledGreedyTokensAgree) {
  const std::vector<std::vector<int32_t>> prompts = {prompt_of(4, 1), prompt_of(11, 2),
                                                     prompt_of(17, 3), prompt_of(6, 4)};
  constexpr int32_t kNew = 6;
  for (const Combination& combination : combinations()) {
    SCOPED_TRACE(label(combination));
    EngineOptions options = options_for(combination);
    options.backend.name = "sim";
    options.backend.kv_blocks = 256;
    options.sim_time_scale = 0;
    options.planner = {.max_batch_tokens = 64, .max_seqs = 8, .max_queued = 64, .workers = 2};
    std::unique_ptr<Engine> engine = make_engine(options);
    // Round 0: every request plain greedy (picked by the backend); round 1: half of them
    // want a logprob, so their batches take the logits path.
    for (int round = 0; round < 2; ++round) {
      std::vector<std::shared_ptr<test::RecordingSink>> sinks;
      for (std::size_t i = 0; i < prompts.size(); ++i) {
        GenerateRequest request;
        request.prompt_tokens = prompts[i];
        request.max_tokens = kNew;
        request.ignore_eos = true;
        request.sampling.temperature = 0;
        request.sampling.logprob = round == 1 && i % 2 == 0;
        sinks.push_back(std::make_shared<test::RecordingSink>());
        engine->submit(request, sinks.back());
      }
      for (std::size_t i = 0; i < prompts.size(); ++i) {
        ASSERT_TRUE(sinks[i]->wait_end());
        EXPECT_EQ(sinks[i]->end().kind, EndKind::Finished) << sinks[i]->end().message;
        EXPECT_EQ(sinks[i]->tokens(), test::sim_greedy_tokens(prompts[i], kNew)) << "round " << round << " prompt " << i;
      }
    }
    EXPECT_EQ(engine->shutdown(100ms), 0);
  }
}

}  // namespace
}  // namespace troupe
