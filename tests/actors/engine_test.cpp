// The Engine's boundary: option validation (each refusal names its option), refusals of
// requests (sim without a model file, after shutdown), the sim backend's setup with and
// without a model file, reload into a new generation, and stats. Runtime `threads`, sim
// backend with time_scale 0: the sim's greedy tokens follow SimBackend::next_token.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "actors/engine.hpp"
#include "gpu/sim_backend.hpp"
#include "tests/actors/runtime_test_support.hpp"
#include "tests/util/scratch_file.hpp"
#include "tests/util/tiny_model.hpp"

namespace troupe {
namespace {

EngineOptions sim_options() {
  EngineOptions options;
  options.runtime = Runtime::Threads;
  options.sync = SyncMode::Parking;
  options.backend.name = "sim";
  options.backend.kv_blocks = 64;
  options.sim_time_scale = 0;
  options.workers = 2;
  options.planner = {.max_batch_tokens = 64, .max_seqs = 8, .max_queued = 16, .workers = 2};
  return options;
}

GenerateRequest tokens_request(std::vector<int32_t> prompt, int32_t max_tokens) {
  GenerateRequest request;
  request.prompt_tokens = std::move(prompt);
  request.max_tokens = max_tokens;
  request.sampling.temperature = 0;
  request.ignore_eos = true;
  return request;
}

std::string refusal_of(const EngineOptions& options) {
  try {
    make_engine(options);
  } catch (const std::invalid_argument& error) {
    return error.what();
  }
  return "(accepted)";
}

TEST(EngineOptions, RefusalsNameTheOption) {
  EngineOptions actor = sim_options();
  actor.sync = SyncMode::Actor;
  EXPECT_NE(refusal_of(actor).find("--sync actor"), std::string::npos) << refusal_of(actor);
  EXPECT_NE(refusal_of(actor).find("threads"), std::string::npos);

  EngineOptions no_workers = sim_options();
  no_workers.workers = 0;
  EXPECT_NE(refusal_of(no_workers).find("--workers"), std::string::npos);

  EngineOptions seqs = sim_options();
  seqs.planner.max_seqs = 100;
  EXPECT_NE(refusal_of(seqs).find("max"), std::string::npos) << refusal_of(seqs);

  EngineOptions backend = sim_options();
  backend.backend.name = "tpu";
  EXPECT_NE(refusal_of(backend).find("--backend"), std::string::npos);

  EngineOptions cpu = sim_options();
  cpu.backend.name = "cpu";
  EXPECT_NE(refusal_of(cpu).find("--model"), std::string::npos);

  EngineOptions scale = sim_options();
  scale.sim_time_scale = -1;
  EXPECT_NE(refusal_of(scale).find("--sim-time-scale"), std::string::npos);

  EngineOptions profile = sim_options();
  profile.sim_profile = "70b-abacus";
  EXPECT_NE(refusal_of(profile).find("7b-h200"), std::string::npos) << refusal_of(profile);

  EngineOptions timeout = sim_options();
  timeout.request_timeout = std::chrono::milliseconds(0);
  EXPECT_NE(refusal_of(timeout).find("timeout"), std::string::npos);

  EngineOptions context = sim_options();
  context.context_tokens = -5;
  EXPECT_NE(refusal_of(context).find("--context"), std::string::npos);

  EXPECT_NO_THROW(sim_options().validate());
}

TEST(EngineDescribe, UsesOpenAiNamesForFinishReasons) {
  EXPECT_EQ(describe(FinishReason::Stop), "stop");
  EXPECT_EQ(describe(FinishReason::Length), "length");
  EXPECT_EQ(describe(EndKind::Cancelled), "cancelled");
  EXPECT_EQ(describe(ErrorKind::QueueFull), "queue_full");
}

TEST(Engine, SimWithoutModelRefusesTextAndServesTokens) {
  auto engine = make_engine(sim_options());
  auto text = std::make_shared<test::RecordingSink>();
  GenerateRequest request;
  request.prompt = "hello";
  engine->submit(request, text);
  ASSERT_TRUE(text->wait_end());
  EXPECT_EQ(text->end().error, ErrorKind::InvalidRequest);
  EXPECT_EQ(text->end().message, "the sim backend without --model takes prompt tokens only");
  EXPECT_EQ(text->end().param, "prompt");

  auto tokens = std::make_shared<test::RecordingSink>();
  engine->submit(tokens_request({5, 6, 7}, 4), tokens);
  ASSERT_TRUE(tokens->wait_end());
  const EndEvent end = tokens->end();
  EXPECT_EQ(end.kind, EndKind::Finished) << end.message;
  EXPECT_EQ(end.finish, FinishReason::Length);
  EXPECT_EQ(end.usage.prompt_tokens, 3);
  EXPECT_EQ(end.usage.completion_tokens, 4);
  EXPECT_EQ(end.model_generation, 1u);
  const uint32_t n_vocab = engine->model()->desc().n_vocab;
  EXPECT_EQ(n_vocab, 32000u);
  std::vector<int32_t> expected;
  int32_t last = 7;
  for (int32_t position = 2; position < 6; ++position)
    expected.push_back(last = SimBackend::next_token(position, last, n_vocab));
  EXPECT_EQ(tokens->tokens(), expected);
  EXPECT_EQ(tokens->text().substr(0, 2), " t");
  EXPECT_EQ(tokens->ends(), 1);

  const EngineStats stats = engine->stats();
  EXPECT_EQ(stats.model_generation, 1u);
  EXPECT_NE(stats.model_source.find("simulated 7b-h200"), std::string::npos);
  EXPECT_NE(stats.backend.find("sim"), std::string::npos);
  EXPECT_EQ(stats.requests_finished, 1u);
  EXPECT_EQ(stats.requests_failed, 1u);
  EXPECT_EQ(stats.generated_tokens, 4u);
  EXPECT_EQ(stats.worker_busy_seconds.size(), 2u);
  EXPECT_EQ(stats.kv.total_blocks, 64);
  ASSERT_GE(stats.sharing.size(), 2u);
  EXPECT_EQ(stats.sharing[0].first, "kv_cache");
  EXPECT_GT(stats.sharing[0].second.calls, 0u);
  EXPECT_EQ(stats.sharing[1].first, "planner");
  EXPECT_GT(stats.sharing[1].second.calls, 0u);
}

TEST(Engine, SimWithAModelFileUsesItsTokenizer) {
  test::ScratchFile file(test::tiny_model_bytes(test::tiny_model_preset("llama-spm-f32")));
  EngineOptions options = sim_options();
  options.model_path = file.path();
  auto engine = make_engine(options);
  const auto model = engine->model();
  EXPECT_EQ(model->desc().n_vocab, uint32_t(model->tokenizer().vocab().size()));
  EXPECT_EQ(model->desc().n_layer, 32u);  // the profile's shape
  auto sink = std::make_shared<test::RecordingSink>();
  GenerateRequest request;
  request.prompt = "hello world";
  request.max_tokens = 3;
  request.ignore_eos = true;
  request.sampling.temperature = 0;
  engine->submit(request, sink);
  ASSERT_TRUE(sink->wait_end());
  EXPECT_EQ(sink->end().kind, EndKind::Finished) << sink->end().message;
  EXPECT_EQ(sink->end().usage.completion_tokens, 3);
  EXPECT_EQ(sink->end().usage.prompt_tokens,
            int32_t(model->tokenizer().encode("hello world", true, true).size()));
}

TEST(Engine, ReloadServesNewRequestsOnANewGeneration) {
  auto engine = make_engine(sim_options());
  auto first = std::make_shared<test::RecordingSink>();
  engine->submit(tokens_request({5, 6}, 2), first);
  ASSERT_TRUE(first->wait_end());
  EXPECT_EQ(first->end().model_generation, 1u);
  engine->reload("");
  EXPECT_EQ(engine->model()->generation(), 2u);
  auto second = std::make_shared<test::RecordingSink>();
  engine->submit(tokens_request({5, 6}, 2), second);
  ASSERT_TRUE(second->wait_end());
  EXPECT_EQ(second->end().model_generation, 2u);
  EXPECT_EQ(second->tokens(), first->tokens());
  const EngineStats stats = engine->stats();
  EXPECT_EQ(stats.model_generation, 2u);
  EXPECT_EQ(stats.requests_finished, 2u);

  EXPECT_THROW(engine->reload("/nonexistent/model.gguf"), ModelLoadError);
  EXPECT_EQ(engine->model()->generation(), 2u);
}

TEST(Engine, ShutdownRefusesNewRequestsAndIsIdempotent) {
  auto engine = make_engine(sim_options());
  EXPECT_EQ(engine->shutdown(std::chrono::milliseconds(100)), 0);
  EXPECT_EQ(engine->shutdown(std::chrono::milliseconds(100)), 0);
  EXPECT_TRUE(engine->stats().draining);
  auto late = std::make_shared<test::RecordingSink>();
  engine->submit(tokens_request({5}, 2), late);
  ASSERT_TRUE(late->wait_end());
  EXPECT_EQ(late->end().error, ErrorKind::Unavailable);
  engine->cancel(12345);  // unknown ids are ignored
}

}  // namespace
}  // namespace troupe
