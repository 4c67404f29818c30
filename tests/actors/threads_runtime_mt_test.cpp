// Runtime `threads` end to end, on a tiny generated model (cpu backend, one compute thread)
// and on the sim backend with time_scale 0: greedy outputs equal to one sequence run alone
// on a backend (under every lock mode), planner order and budgets, chunked prefill
// interleaving, preemption and resumption, queue overflow, cancel while queued / in prefill /
// in decode freeing every block, deadlines, stop strings and worker failure.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "actors/engine.hpp"
#include "actors/threads_pipeline.hpp"
#include "gpu/backend.hpp"
#include "gpu/sim_backend.hpp"
#include "model/gguf.hpp"
#include "tests/actors/runtime_test_support.hpp"
#include "tests/util/scratch_file.hpp"
#include "tests/util/tiny_model.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;
using test::RecordingSink;

constexpr SyncMode kLockModes[] = {SyncMode::Std,       SyncMode::StdRw, SyncMode::Parking,
                                   SyncMode::ParkingRw, SyncMode::Futex, SyncMode::Spin};

GenerateRequest tokens_request(std::vector<int32_t> prompt, int32_t max_tokens) {
  GenerateRequest request;
  request.prompt_tokens = std::move(prompt);
  request.max_tokens = max_tokens;
  request.sampling.temperature = 0;
  request.ignore_eos = true;
  return request;
}

std::vector<int32_t> prompt_of(int32_t length, int32_t salt) {
  std::vector<int32_t> prompt;
  for (int32_t i = 0; i < length; ++i) prompt.push_back(3 + (salt * 37 + i * 11) % 200);
  return prompt;
}

// Waits until the engine's KV cache holds no block (freed blocks are released by a plan).
bool kv_drained(const Engine& engine) {
  for (int i = 0; i < 2000; ++i) {
    const KvStats kv = engine.stats().kv;
    if (kv.in_use_blocks == 0 && kv.free_blocks + kv.cached_idle_blocks == kv.total_blocks)
      return true;
    std::this_thread::sleep_for(1ms);
  }
  return false;
}

// The tiny model on disk, and the reference: each prompt run alone on a fresh cpu backend.
class TinyModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    file_ = new test::ScratchFile(test::tiny_model_bytes(test::tiny_model_preset("llama-spm-q8_0")));
  }
  static void TearDownTestSuite() {
    delete file_;
    file_ = nullptr;
  }

  EngineOptions cpu_options(SyncMode sync, int32_t workers) const {
    EngineOptions options;
    options.runtime = Runtime::Threads;
    options.sync = sync;
    options.model_path = file_->path();
    options.backend.name = "cpu";
    options.backend.threads = 1;
    options.backend.kv_block_tokens = 4;
    options.backend.kv_blocks = 64;
    options.workers = workers;
    options.planner = {.max_batch_tokens = 16, .max_seqs = 4, .max_queued = 32,
                       .workers = workers};
    options.context_tokens = 128;
    return options;
  }

  std::vector<int32_t> reference(const std::vector<int32_t>& prompt, int32_t n_new) const {
    const GgufFile gguf = GgufFile::open(file_->path());
    const ModelDesc desc = ModelDesc::from_gguf(gguf);
    BackendOptions options;
    options.threads = 1;
    options.kv_block_tokens = 4;
    options.kv_blocks = 64;
    auto backend = make_backend(desc, options);
    return test::solo_greedy(*backend, prompt, n_new);
  }

  // Runs the prompts at once; returns each one's tokens and checks that each ended once,
  // Finished, with nothing after its end.
  std::vector<std::vector<int32_t>> run_all(Engine& engine,
                                            const std::vector<std::vector<int32_t>>& prompts,
                                            int32_t n_new) const {
    std::vector<std::shared_ptr<RecordingSink>> sinks;
    for (const auto& prompt : prompts) {
      sinks.push_back(std::make_shared<RecordingSink>());
      engine.submit(tokens_request(prompt, n_new), sinks.back());
    }
    std::vector<std::vector<int32_t>> outputs;
    for (const auto& sink : sinks) {
      EXPECT_TRUE(sink->wait_end());
      EXPECT_EQ(sink->end().kind, EndKind::Finished) << sink->end().message;
      EXPECT_EQ(sink->ends(), 1);
      EXPECT_EQ(sink->calls_after_end(), 0);
      outputs.push_back(sink->tokens());
    }
    return outputs;
  }

  static test::ScratchFile* file_;
};
test::ScratchFile* TinyModelTest::file_ = nullptr;

TEST_F(TinyModelTest, GreedyOutputsEqualSoloRunsUnderEveryLockMode) {
  const std::vector<std::vector<int32_t>> prompts = {prompt_of(5, 1), prompt_of(13, 2),
                                                     prompt_of(9, 3), prompt_of(21, 4)};
  std::vector<std::vector<int32_t>> expected;
  for (const auto& prompt : prompts) expected.push_back(reference(prompt, 5));
  for (SyncMode sync : kLockModes) {
    SCOPED_TRACE(std::string(to_string(sync)));
    auto engine = make_engine(cpu_options(sync, 2));
    EXPECT_EQ(run_all(*engine, prompts, 5), expected);
    EXPECT_TRUE(kv_drained(*engine));
  }
  EngineOptions per_token = cpu_options(SyncMode::Parking, 2);
  per_token.kv_granularity = KvGranularity::Token;
  auto engine = make_engine(per_token);
  EXPECT_EQ(run_all(*engine, prompts, 5), expected);
  EXPECT_TRUE(kv_drained(*engine));
}

TEST_F(TinyModelTest, PreemptedSequencesResumeWithTheSameTokens) {
  const std::vector<std::vector<int32_t>> prompts = {prompt_of(6, 5), prompt_of(6, 6),
                                                     prompt_of(6, 7), prompt_of(6, 8)};
  std::vector<std::vector<int32_t>> expected;
  for (const auto& prompt : prompts) expected.push_back(reference(prompt, 10));
  EngineOptions options = cpu_options(SyncMode::Parking, 1);
  options.backend.kv_blocks = 12;  // 48 positions for four sequences of 16
  auto log = std::make_shared<test::StepLog>();
  options.wrap_backend = [log](int32_t worker, std::unique_ptr<Backend> inner) {
    return std::make_unique<test::WrappedBackend>(std::move(inner), log, worker);
  };
  auto engine = make_engine(options);
  log->pause();  // the first request's first step waits until all four are queued
  std::thread resume([&] {
    log->wait_held();
    std::this_thread::sleep_for(20ms);
    log->resume();
  });
  EXPECT_EQ(run_all(*engine, prompts, 10), expected);
  resume.join();
  EXPECT_GT(engine->stats().planner.preemptions, 0u);
  EXPECT_TRUE(kv_drained(*engine));
}

// The pipeline itself, to reach its KV cache's check().
class TinyPipelineTest : public TinyModelTest {
 protected:
  std::unique_ptr<ThreadsPipeline> make(EngineOptions options) {
    model_ = LoadedModel::open(file_->path());
    log_ = std::make_shared<test::StepLog>();
    options.wrap_backend = [log = log_](int32_t worker, std::unique_ptr<Backend> inner) {
      return std::make_unique<test::WrappedBackend>(std::move(inner), log, worker);
    };
    return make_threads_pipeline_with({.model = model_, .options = options});
  }
  std::shared_ptr<const LoadedModel> model_;
  std::shared_ptr<test::StepLog> log_;
};

TEST_F(TinyPipelineTest, CancelWhileQueuedInPrefillAndInDecodeFreesEveryBlock) {
  EngineOptions options = cpu_options(SyncMode::Parking, 1);
  options.planner.max_seqs = 2;
  options.planner.max_batch_tokens = 4;  // a 20-token prompt takes five chunks
  auto pipeline = make(options);
  log_->pause();
  auto decoding = std::make_shared<RecordingSink>();
  pipeline->submit(1, tokens_request(prompt_of(3, 1), 60), decoding);
  ASSERT_TRUE(log_->wait_steps(1));  // its prefill, held at the step's start
  auto prefilling = std::make_shared<RecordingSink>();
  pipeline->submit(2, tokens_request(prompt_of(20, 2), 5), prefilling);
  auto queued = std::make_shared<RecordingSink>();
  pipeline->submit(3, tokens_request(prompt_of(4, 3), 5), queued);  // max_seqs: waits

  pipeline->cancel(3);
  ASSERT_TRUE(queued->wait_end(2s));
  EXPECT_EQ(queued->end().kind, EndKind::Cancelled);
  EXPECT_TRUE(queued->tokens().empty());

  // Request 2 mid-prefill: a step carrying a chunk of it that is not its last.
  log_->pause_when([](const std::vector<test::SeenEntry>& step) {
    for (const auto& entry : step)
      if (entry.seq == 2 && !entry.want_logits && entry.n_past > 0) return true;
    return false;
  });
  log_->resume();
  ASSERT_TRUE(log_->wait_held());
  pipeline->cancel(2);
  ASSERT_TRUE(prefilling->wait_end(2s));
  EXPECT_EQ(prefilling->end().kind, EndKind::Cancelled);

  // Request 1 decoding its fourth token.
  log_->pause_when([](const std::vector<test::SeenEntry>& step) {
    for (const auto& entry : step)
      if (entry.seq == 1 && entry.n_past >= 6) return true;
    return false;
  });
  log_->resume();
  ASSERT_TRUE(log_->wait_held());
  EXPECT_FALSE(decoding->ended());
  for (int i = 0; i < 10000 && decoding->tokens().size() < 3; ++i)
    std::this_thread::sleep_for(100us);  // the tokens sampled so far reach the client
  pipeline->cancel(1);
  ASSERT_TRUE(decoding->wait_end(2s));
  EXPECT_EQ(decoding->end().kind, EndKind::Cancelled);
  EXPECT_GE(decoding->end().usage.completion_tokens, 3);
  log_->resume();
  for (int i = 0; i < 2000 && pipeline->live_requests() > 0; ++i) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(pipeline->live_requests(), 0);

  bool drained = false;
  for (int i = 0; i < 2000 && !drained; ++i) {
    const KvStats kv = pipeline->kv_cache().stats();
    drained = kv.in_use_blocks == 0 && kv.free_blocks + kv.cached_idle_blocks == kv.total_blocks;
    if (!drained) std::this_thread::sleep_for(1ms);
  }
  EXPECT_TRUE(drained);
  EXPECT_EQ(pipeline->kv_cache().check(), std::nullopt);
  EXPECT_EQ(pipeline->stats().requests_cancelled, 3u);
}

TEST_F(TinyPipelineTest, PriorityThenArrivalOrderAndQueueOverflow) {
  EngineOptions options = cpu_options(SyncMode::Std, 1);
  options.planner.max_seqs = 1;
  options.planner.max_queued = 3;
  auto pipeline = make(options);
  log_->pause();
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  for (int i = 0; i < 6; ++i) sinks.push_back(std::make_shared<RecordingSink>());
  pipeline->submit(1, tokens_request(prompt_of(3, 1), 2), sinks[0]);
  ASSERT_TRUE(log_->wait_steps(1));
  pipeline->submit(2, tokens_request(prompt_of(3, 2), 2), sinks[1]);
  pipeline->submit(3, tokens_request(prompt_of(3, 3), 2), sinks[2]);
  GenerateRequest urgent = tokens_request(prompt_of(3, 4), 2);
  urgent.priority = 5;
  pipeline->submit(4, urgent, sinks[3]);
  pipeline->submit(5, tokens_request(prompt_of(3, 5), 2), sinks[4]);  // the queue holds 3

  ASSERT_TRUE(sinks[4]->wait_end(2s));
  EXPECT_EQ(sinks[4]->end().error, ErrorKind::QueueFull);
  EXPECT_FALSE(sinks[4]->end().message.empty());
  log_->resume();
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(sinks[size_t(i)]->wait_end());
    EXPECT_EQ(sinks[size_t(i)]->end().kind, EndKind::Finished);
  }
  std::vector<uint64_t> first_seen;
  for (const auto& step : log_->steps())
    for (const auto& entry : step)
      if (std::find(first_seen.begin(), first_seen.end(), entry.seq) == first_seen.end())
        first_seen.push_back(entry.seq);
  EXPECT_EQ(first_seen, (std::vector<uint64_t>{1, 4, 2, 3}));
  EXPECT_EQ(pipeline->stats().planner.rejected, 1u);
}

TEST_F(TinyPipelineTest, LongPromptIsChunkedAlongsideRunningDecodes) {
  EngineOptions options = cpu_options(SyncMode::Futex, 1);
  options.planner.max_batch_tokens = 6;
  auto pipeline = make(options);
  auto short_one = std::make_shared<RecordingSink>();
  auto long_one = std::make_shared<RecordingSink>();
  log_->pause();
  pipeline->submit(1, tokens_request(prompt_of(3, 1), 20), short_one);
  ASSERT_TRUE(log_->wait_steps(1));
  pipeline->submit(2, tokens_request(prompt_of(30, 2), 3), long_one);
  log_->resume();
  ASSERT_TRUE(short_one->wait_end());
  ASSERT_TRUE(long_one->wait_end());
  EXPECT_EQ(short_one->tokens(), reference(prompt_of(3, 1), 20));
  EXPECT_EQ(long_one->tokens(), reference(prompt_of(30, 2), 3));

  int32_t next_chunk_at = 0, mixed_steps = 0;
  for (const auto& step : log_->steps()) {
    int32_t total = 0;
    bool decode_of_short = false, chunk_of_long = false;
    for (const auto& entry : step) {
      total += entry.tokens;
      if (entry.seq == 1 && entry.tokens == 1 && entry.n_past >= 3) decode_of_short = true;
      if (entry.seq == 2 && entry.n_past < 30 && entry.tokens > 0 && entry.n_past + entry.tokens <= 30) {
        EXPECT_EQ(entry.n_past, next_chunk_at);  // chunks in order, without gaps
        next_chunk_at = entry.n_past + entry.tokens;
        chunk_of_long = true;
      }
      if (entry.seq == 1 && entry.tokens == 1) {
        EXPECT_EQ(&entry, &step.front());  // decodes first
      }
    }
    EXPECT_LE(total, 6);
    mixed_steps += decode_of_short && chunk_of_long;
  }
  EXPECT_EQ(next_chunk_at, 30);
  EXPECT_GE(mixed_steps, 5);  // 30 tokens in chunks of at most 5 beside a decode
}

// ---- the sim backend, time_scale 0 ----

EngineOptions sim_options(SyncMode sync, int32_t workers) {
  EngineOptions options;
  options.runtime = Runtime::Threads;
  options.sync = sync;
  options.backend.name = "sim";
  options.backend.kv_blocks = 256;
  options.sim_time_scale = 0;
  options.workers = workers;
  options.planner = {.max_batch_tokens = 64, .max_seqs = 8, .max_queued = 64,
                     .workers = workers};
  return options;
}

TEST(ThreadsRuntimeSim, StopStringEndsTheSequenceAndFreesItsBlocks) {
  auto engine = make_engine(sim_options(SyncMode::ParkingRw, 2));
  const std::vector<int32_t> expected = test::sim_greedy_tokens(std::vector<int32_t>{5, 6, 7}, 3);
  GenerateRequest request = tokens_request({5, 6, 7}, 50);
  request.stop = {" t" + std::to_string(expected[1])};
  auto sink = std::make_shared<RecordingSink>();
  engine->submit(request, sink);
  ASSERT_TRUE(sink->wait_end());
  const EndEvent end = sink->end();
  EXPECT_EQ(end.kind, EndKind::Finished);
  EXPECT_EQ(end.finish, FinishReason::Stop);
  EXPECT_EQ(sink->text(), " t" + std::to_string(expected[0]));
  EXPECT_GE(end.usage.completion_tokens, 2);
  EXPECT_LT(end.usage.completion_tokens, 50);
  EXPECT_TRUE(kv_drained(*engine));
}

TEST(ThreadsRuntimeSim, DeadlineEndsARequestStuckInAStep) {
  auto log = std::make_shared<test::StepLog>();
  EngineOptions options = sim_options(SyncMode::Spin, 2);
  options.wrap_backend = [log](int32_t worker, std::unique_ptr<Backend> inner) {
    return std::make_unique<test::WrappedBackend>(std::move(inner), log, worker);
  };
  auto engine = make_engine(options);
  log->pause();
  GenerateRequest request = tokens_request({5, 6, 7}, 4);
  request.timeout = 30ms;
  auto sink = std::make_shared<RecordingSink>();
  engine->submit(request, sink);
  ASSERT_TRUE(sink->wait_end(2s));
  EXPECT_EQ(sink->end().error, ErrorKind::Timeout);
  log->resume();
  EXPECT_TRUE(kv_drained(*engine));
  EXPECT_EQ(engine->stats().planner.expired, 1u);
}

TEST(ThreadsRuntimeSim, AFailingWorkerFailsItsRequestsQuicklyAndTheOthersKeepServing) {
  EngineOptions options = sim_options(SyncMode::Std, 2);
  options.wrap_backend = [](int32_t worker, std::unique_ptr<Backend> inner) {
    return std::make_unique<test::WrappedBackend>(std::move(inner), nullptr, worker,
                                                  worker == 0 ? 0 : -1);
  };
  auto engine = make_engine(options);
  std::vector<std::shared_ptr<RecordingSink>> failed;
  for (int round = 0; round < 50 && failed.empty(); ++round) {
    std::vector<std::shared_ptr<RecordingSink>> sinks;
    for (int i = 0; i < 4; ++i) {
      sinks.push_back(std::make_shared<RecordingSink>());
      engine->submit(tokens_request({5, int32_t(6 + i)}, 3), sinks.back());
    }
    for (const auto& sink : sinks) {
      ASSERT_TRUE(sink->wait_end(2s));
      EXPECT_EQ(sink->ends(), 1);
      if (sink->end().kind == EndKind::Error) {
        EXPECT_EQ(sink->end().error, ErrorKind::WorkerFailed);
        EXPECT_NE(sink->end().message.find("worker 0"), std::string::npos);
        failed.push_back(sink);
      } else {
        EXPECT_EQ(sink->end().kind, EndKind::Finished);
      }
    }
  }
  ASSERT_FALSE(failed.empty()) << "worker 0 never got a step";
  const auto failed_at = EngineClock::time_point(
      EngineClock::duration(test::WrappedBackend::failed_at_.load()));
  ASSERT_NE(failed_at, EngineClock::time_point{});
  for (const auto& sink : failed) EXPECT_LT(sink->end_at() - failed_at, 1s);
  // The other worker serves what comes next.
  std::vector<std::shared_ptr<RecordingSink>> after;
  for (int i = 0; i < 6; ++i) {
    after.push_back(std::make_shared<RecordingSink>());
    engine->submit(tokens_request({9, int32_t(10 + i)}, 4), after.back());
  }
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(after[size_t(i)]->wait_end());
    EXPECT_EQ(after[size_t(i)]->end().kind, EndKind::Finished);
    EXPECT_EQ(after[size_t(i)]->tokens(), test::sim_greedy_tokens(std::vector<int32_t>{9, int32_t(10 + i)}, 4));
  }
  EXPECT_TRUE(kv_drained(*engine));
}

}  // namespace
}  // namespace troupe
