// Runtime `actors` stepped by CAF's test coordinator (EngineOptions::deterministic): the
// order in which the planner's batches reach the workers, chunked prefill next to decodes,
// cancellation at every stage freeing every KV block, worker failure, queue overflow,
// deadlines (virtual time) and the destructor ending what is live. Expected batch shapes follow from the planner's rules
// (model/batch_planner.hpp) worked out by hand for the budgets set here; tokens are compared
// with the tiny model run alone on its own backend.
#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <vector>

#include "actors/actor_pipeline.hpp"
#include "tests/actors/actor_runtime_support.hpp"
#include "tests/util/gtest_name.hpp"

namespace troupe {
namespace {

using test::TracedEntry;
using test::RecordingSink;

const test::TinyLoadedModel& tiny() {
  static const test::TinyLoadedModel model;
  return model;
}

class ActorRuntimeTest : public ::testing::Test {
 protected:
  void start(EngineOptions options, std::vector<std::shared_ptr<test::StepScript>> scripts = {}) {
    options.deterministic = true;
    test::trace_steps(options, log_, std::move(scripts));
    pipeline_ = make_actor_pipeline({.model = tiny().model, .options = options});
    coordinator_ = &dynamic_cast<caf::scheduler::test_coordinator&>(pipeline_->system().scheduler());
  }

  std::shared_ptr<RecordingSink> submit(RequestId id, std::vector<int32_t> prompt,
                                        int32_t max_tokens) {
    auto sink = std::make_shared<RecordingSink>();
    pipeline_->submit(id, test::greedy_request(std::move(prompt), max_tokens), sink);
    return sink;
  }

  void run() {
    while (coordinator_->run() > 0) {
    }
  }

  // Runs one job at a time until `done` holds; false if the system went idle first.
  bool run_until(const std::function<bool()>& done) {
    while (!done())
      if (!coordinator_->try_run_once()) return false;
    return true;
  }

  void expect_kv_clean() {
    const SharedKvCache& kv = pipeline_->kv_cache();
    EXPECT_EQ(kv.check(), std::nullopt);
    const KvStats stats = kv.stats();
    EXPECT_EQ(stats.in_use_blocks, 0);
    EXPECT_EQ(stats.sequences, 0);
    EXPECT_EQ(kv.available_blocks(), kv.num_blocks());
    EXPECT_EQ(pipeline_->live_requests(), 0);
  }

  std::shared_ptr<test::StepTrace> log_ = std::make_shared<test::StepTrace>();
  std::unique_ptr<ActorPipeline> pipeline_;
  caf::scheduler::test_coordinator* coordinator_ = nullptr;
};

void expect_entry(const TracedEntry& entry, uint64_t seq, int32_t n_past, int32_t tokens,
                  bool want_logits) {
  EXPECT_EQ(entry.seq, seq);
  EXPECT_EQ(entry.n_past, n_past);
  EXPECT_EQ(entry.tokens, tokens);
  EXPECT_EQ(entry.want_logits, want_logits);
}

TEST_F(ActorRuntimeTest, RequestFlowsThroughSchedulerAndWorkerInPlannerOrder) {
  start(test::tiny_options(SyncMode::Parking, 1));
  const auto prompt = test::tiny_prompt(20, 1);
  auto sink = submit(7, prompt, 3);
  run();

  // Budget 8: the prompt in chunks of 8, 8 and 4 (the last wants logits), then two decodes.
  const auto steps = log_->steps();
  ASSERT_EQ(steps.size(), 5u);
  for (const auto& step : steps) ASSERT_EQ(step.size(), 1u);
  expect_entry(steps[0][0], 7, 0, 8, false);
  expect_entry(steps[1][0], 7, 8, 8, false);
  expect_entry(steps[2][0], 7, 16, 4, true);
  expect_entry(steps[3][0], 7, 20, 1, true);
  expect_entry(steps[4][0], 7, 21, 1, true);

  ASSERT_TRUE(sink->ended());
  EXPECT_EQ(sink->ends(), 1);
  const EndEvent end = sink->end();
  EXPECT_EQ(end.kind, EndKind::Finished);
  EXPECT_EQ(end.finish, FinishReason::Length);
  EXPECT_EQ(end.usage.prompt_tokens, 20);
  EXPECT_EQ(end.usage.completion_tokens, 3);
  EXPECT_GE(end.timings.queued, 0.0);
  EXPECT_GE(end.timings.first_token, end.timings.queued);
  EXPECT_EQ(end.timings.token_times.size(), 3u);
  EXPECT_EQ(sink->tokens(), test::greedy_alone(*tiny().model, prompt, 3));
  expect_kv_clean();
  const EngineStats stats = pipeline_->stats();
  EXPECT_EQ(stats.requests_finished, 1u);
  EXPECT_EQ(stats.generated_tokens, 3u);
  EXPECT_EQ(stats.planner.batches, 5u);
  ASSERT_EQ(stats.worker_busy_seconds.size(), 1u);
  EXPECT_GT(stats.worker_busy_seconds[0], 0.0);
}

TEST_F(ActorRuntimeTest, LongPromptIsChunkedBetweenTheDecodesOfARunningSequence) {
  start(test::tiny_options(SyncMode::Parking, 1));
  const auto short_prompt = test::tiny_prompt(4, 2);
  auto decoding = submit(1, short_prompt, 12);
  ASSERT_TRUE(run_until([&] { return log_->size() >= 2; }));  // prefill, first decode
  auto prefilling = submit(2, test::tiny_prompt(20, 3), 2);
  run();

  // Every batch with a chunk of the long prompt starts with the running sequence's decode;
  // the chunks take what the budget of 8 leaves: 7, 7, then the last 6.
  const auto steps = log_->steps();
  std::vector<size_t> with_chunks;
  for (size_t i = 0; i < steps.size(); ++i)
    for (const TracedEntry& entry : steps[i])
      if (entry.seq == 2 && entry.n_past < 20) with_chunks.push_back(i);
  ASSERT_EQ(with_chunks.size(), 3u);
  const int32_t chunk[] = {7, 7, 6};
  int32_t n_past = 0;
  for (size_t k = 0; k < 3; ++k) {
    const auto& step = steps[with_chunks[k]];
    ASSERT_EQ(step.size(), 2u);
    EXPECT_EQ(step[0].seq, 1u);
    EXPECT_EQ(step[0].tokens, 1);
    EXPECT_TRUE(step[0].want_logits);
    expect_entry(step[1], 2, n_past, chunk[k], k == 2);
    n_past += chunk[k];
  }
  EXPECT_EQ(with_chunks[1], with_chunks[0] + 1);
  EXPECT_EQ(with_chunks[2], with_chunks[1] + 1);

  ASSERT_TRUE(decoding->ended() && prefilling->ended());
  EXPECT_EQ(decoding->end().kind, EndKind::Finished);
  EXPECT_EQ(prefilling->end().kind, EndKind::Finished);
  EXPECT_EQ(decoding->tokens(), test::greedy_alone(*tiny().model, short_prompt, 12));
  expect_kv_clean();
}

class ActorRuntimeCancelTest : public ActorRuntimeTest,
                               public ::testing::WithParamInterface<SyncMode> {};

TEST_P(ActorRuntimeCancelTest, CancelWhileQueuedFreesEveryBlock) {
  EngineOptions options = test::tiny_options(GetParam(), 1);
  options.planner.max_seqs = 1;
  start(options);
  auto running = submit(1, test::tiny_prompt(6, 4), 10);
  ASSERT_TRUE(run_until([&] { return log_->size() >= 1; }));
  auto queued = submit(2, test::tiny_prompt(6, 5), 10);
  ASSERT_TRUE(run_until([&] { return pipeline_->stats().planner.waiting == 1; }));
  pipeline_->cancel(2);
  run();

  ASSERT_TRUE(queued->ended());
  EXPECT_EQ(queued->ends(), 1);
  EXPECT_EQ(queued->end().kind, EndKind::Cancelled);
  EXPECT_EQ(queued->end().usage.completion_tokens, 0);
  EXPECT_TRUE(log_->of(2).empty());
  ASSERT_TRUE(running->ended());
  EXPECT_EQ(running->end().kind, EndKind::Finished);
  expect_kv_clean();
  EXPECT_EQ(pipeline_->stats().requests_cancelled, 1u);
}

TEST_P(ActorRuntimeCancelTest, CancelDuringPrefillFreesEveryBlock) {
  start(test::tiny_options(GetParam(), 1));
  auto sink = submit(3, test::tiny_prompt(40, 6), 10);
  ASSERT_TRUE(run_until([&] { return log_->of(3).size() >= 2; }));
  pipeline_->cancel(3);
  run();

  ASSERT_TRUE(sink->ended());
  EXPECT_EQ(sink->ends(), 1);
  EXPECT_EQ(sink->calls_after_end(), 0);
  EXPECT_EQ(sink->end().kind, EndKind::Cancelled);
  EXPECT_EQ(sink->end().usage.completion_tokens, 0);
  const auto entries = log_->of(3);
  EXPECT_LT(entries.size(), 5u);  // 40 tokens need 5 chunks of 8
  for (const TracedEntry& entry : entries) EXPECT_FALSE(entry.want_logits);
  expect_kv_clean();
}

TEST_P(ActorRuntimeCancelTest, CancelDuringDecodeFreesEveryBlock) {
  start(test::tiny_options(GetParam(), 1));
  auto sink = submit(4, test::tiny_prompt(5, 7), 30);
  ASSERT_TRUE(run_until([&] { return log_->of(4).size() >= 4; }));  // prefill + 3 decodes
  pipeline_->cancel(4);
  run();

  ASSERT_TRUE(sink->ended());
  EXPECT_EQ(sink->ends(), 1);
  EXPECT_EQ(sink->end().kind, EndKind::Cancelled);
  // Tokens of the step before the cancel may still be queued: the cancel overtakes them.
  EXPECT_GE(sink->end().usage.completion_tokens, 2);
  EXPECT_LT(sink->end().usage.completion_tokens, 30);
  EXPECT_LT(log_->of(4).size(), 30u);
  expect_kv_clean();
}

INSTANTIATE_TEST_SUITE_P(SyncModes, ActorRuntimeCancelTest,
                         ::testing::Values(SyncMode::Std, SyncMode::Parking, SyncMode::Actor),
                         [](const auto& info) {
                           return test::gtest_name(to_string(info.param));
                         });

TEST_F(ActorRuntimeTest, FailingWorkerEndsItsRequestsWhileTheOtherKeepsServing) {
  auto failing = std::make_shared<test::StepScript>();
  failing->fail_from = 1;  // worker 1: its first step runs, the second throws
  start(test::tiny_options(SyncMode::Parking, 2), {nullptr, failing});
  const auto prompt = test::tiny_prompt(4, 8);
  auto on_worker0 = submit(1, prompt, 10);
  auto on_worker1 = submit(2, test::tiny_prompt(4, 9), 10);
  run();

  const auto first = log_->of(1), second = log_->of(2);
  ASSERT_FALSE(first.empty());
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(first.front().worker, 0);
  EXPECT_EQ(second.front().worker, 1);
  ASSERT_TRUE(on_worker1->ended());
  EXPECT_EQ(on_worker1->end().kind, EndKind::Error);
  EXPECT_EQ(on_worker1->end().error, ErrorKind::WorkerFailed);
  EXPECT_NE(on_worker1->end().message.find("worker 1"), std::string::npos);
  EXPECT_NE(on_worker1->end().message.find("injected backend failure"), std::string::npos);
  ASSERT_TRUE(on_worker0->ended());
  EXPECT_EQ(on_worker0->end().kind, EndKind::Finished);
  EXPECT_EQ(on_worker0->tokens(), test::greedy_alone(*tiny().model, prompt, 10));

  auto later = submit(3, test::tiny_prompt(4, 10), 5);
  run();
  ASSERT_TRUE(later->ended());
  EXPECT_EQ(later->end().kind, EndKind::Finished);
  for (const TracedEntry& entry : log_->of(3)) EXPECT_EQ(entry.worker, 0);
  expect_kv_clean();
  EXPECT_EQ(pipeline_->stats().requests_failed, 1u);
}

TEST_F(ActorRuntimeTest, WorkerActorThatDiesFailsItsRequests) {
  start(test::tiny_options(SyncMode::Parking, 2));
  auto on_worker0 = submit(1, test::tiny_prompt(4, 11), 8);
  auto on_worker1 = submit(2, test::tiny_prompt(4, 12), 30);
  ASSERT_TRUE(run_until([&] { return log_->of(2).size() >= 2; }));
  caf::anon_send_exit(pipeline_->worker(1), caf::exit_reason::kill);
  run();

  ASSERT_TRUE(on_worker1->ended());
  EXPECT_EQ(on_worker1->end().kind, EndKind::Error);
  EXPECT_EQ(on_worker1->end().error, ErrorKind::WorkerFailed);
  ASSERT_TRUE(on_worker0->ended());
  EXPECT_EQ(on_worker0->end().kind, EndKind::Finished);
  expect_kv_clean();
}

TEST_F(ActorRuntimeTest, LastWorkerLostRefusesNewRequests) {
  auto failing = std::make_shared<test::StepScript>();
  failing->fail_from = 0;
  start(test::tiny_options(SyncMode::Parking, 1), {failing});
  auto first = submit(1, test::tiny_prompt(4, 13), 4);
  run();
  ASSERT_TRUE(first->ended());
  EXPECT_EQ(first->end().error, ErrorKind::WorkerFailed);
  auto second = submit(2, test::tiny_prompt(4, 14), 4);
  run();
  ASSERT_TRUE(second->ended());
  EXPECT_EQ(second->end().kind, EndKind::Error);
  EXPECT_EQ(second->end().error, ErrorKind::WorkerFailed);
  expect_kv_clean();
}

TEST_F(ActorRuntimeTest, QueueOverflowIsRejectedAtOnce) {
  EngineOptions options = test::tiny_options(SyncMode::Parking, 1);
  options.planner.max_seqs = 1;
  options.planner.max_queued = 1;
  start(options);
  auto running = submit(1, test::tiny_prompt(4, 15), 4);
  auto queued = submit(2, test::tiny_prompt(4, 16), 4);
  auto refused = submit(3, test::tiny_prompt(4, 17), 4);
  run();

  ASSERT_TRUE(refused->ended());
  EXPECT_EQ(refused->end().kind, EndKind::Error);
  EXPECT_EQ(refused->end().error, ErrorKind::QueueFull);
  EXPECT_FALSE(refused->end().message.empty());
  EXPECT_TRUE(log_->of(3).empty());
  EXPECT_EQ(running->end().kind, EndKind::Finished);
  EXPECT_EQ(queued->end().kind, EndKind::Finished);
  EXPECT_EQ(pipeline_->stats().planner.rejected, 1u);
  expect_kv_clean();
}

// Records the KV blocks in use when the end arrives.
class KvWatchingSink final : public ResponseSink {
 public:
  explicit KvWatchingSink(const SharedKvCache& kv) : kv_(kv) {}
  void on_chunk(TextChunk) override {}
  void on_end(EndEvent end) override {
    in_use_at_end = kv_.stats().in_use_blocks;
    ends.push_back(std::move(end));
  }
  int32_t in_use_at_end = -1;
  std::vector<EndEvent> ends;

 private:
  const SharedKvCache& kv_;
};

TEST_F(ActorRuntimeTest, RequestTimerEndsTheRequestWithTimeoutOnceItsBlocksAreFree) {
  start(test::tiny_options(SyncMode::Parking, 1));
  auto sink = std::make_shared<KvWatchingSink>(pipeline_->kv_cache());
  GenerateRequest request = test::greedy_request(test::tiny_prompt(5, 19), 200);
  request.timeout = std::chrono::seconds(30);  // far in real time: the planner never sees it
  pipeline_->submit(1, std::move(request), sink);
  ASSERT_TRUE(run_until([&] { return log_->size() >= 3; }));
  EXPECT_TRUE(sink->ends.empty());
  coordinator_->advance_time(std::chrono::seconds(31));  // the request's timer fires
  run();

  ASSERT_EQ(sink->ends.size(), 1u);
  EXPECT_EQ(sink->ends[0].kind, EndKind::Error);
  EXPECT_EQ(sink->ends[0].error, ErrorKind::Timeout);
  EXPECT_LT(sink->ends[0].usage.completion_tokens, 200);
  EXPECT_EQ(sink->in_use_at_end, 0);
  expect_kv_clean();
}

// The planner notices the deadline (real time, 20 ms steps) at a plan; the end waits for the
// plan that frees the blocks, which the idle worker makes at once.
TEST_F(ActorRuntimeTest, PlannerDeadlineEndsTheRequestOnceItsBlocksAreFree) {
  auto slow = std::make_shared<test::StepScript>();
  slow->delay = std::chrono::milliseconds(20);
  start(test::tiny_options(SyncMode::Parking, 1), {slow});
  auto sink = std::make_shared<KvWatchingSink>(pipeline_->kv_cache());
  GenerateRequest request = test::greedy_request(test::tiny_prompt(5, 19), 200);
  request.timeout = std::chrono::milliseconds(30);
  pipeline_->submit(1, std::move(request), sink);
  run();  // the request's own timer (virtual time) never fires here

  ASSERT_EQ(sink->ends.size(), 1u);
  EXPECT_EQ(sink->ends[0].error, ErrorKind::Timeout);
  EXPECT_EQ(sink->in_use_at_end, 0);
  EXPECT_GE(log_->size(), 1u);
  EXPECT_LT(log_->size(), 200u);
  expect_kv_clean();
  EXPECT_EQ(pipeline_->stats().planner.expired, 1u);
}

TEST_F(ActorRuntimeTest, PrefixCacheServesARepeatedPromptOnlyWhenOn) {
  for (bool prefix_cache : {true, false}) {
    EngineOptions options = test::tiny_options(SyncMode::Parking, 1);
    options.prefix_cache = prefix_cache;
    start(options);
    const auto prompt = test::tiny_prompt(12, 30);  // 3 full blocks of 4
    auto first = submit(1, prompt, 3);
    run();
    auto again = submit(2, prompt, 3);
    run();
    ASSERT_TRUE(first->ended() && again->ended());
    EXPECT_EQ(first->end().usage.cached_tokens, 0);
    if (prefix_cache)
      EXPECT_GE(again->end().usage.cached_tokens, 8) << "at least two full blocks";
    else
      EXPECT_EQ(again->end().usage.cached_tokens, 0);
    EXPECT_EQ(again->tokens(), first->tokens());
    pipeline_.reset();
  }
}

TEST_F(ActorRuntimeTest, InvalidRequestEndsAtOnceWithoutReachingTheScheduler) {
  start(test::tiny_options(SyncMode::Parking, 1));
  auto sink = submit(1, {}, 4);  // no prompt in any form
  run();
  ASSERT_TRUE(sink->ended());
  EXPECT_EQ(sink->end().error, ErrorKind::InvalidRequest);
  EXPECT_EQ(pipeline_->stats().planner.submitted, 0u);
  EXPECT_EQ(log_->size(), 0u);
}

TEST_F(ActorRuntimeTest, DestroyingThePipelineCancelsWhatIsLive) {
  start(test::tiny_options(SyncMode::Actor, 1));
  auto sink = submit(1, test::tiny_prompt(4, 18), 30);
  ASSERT_TRUE(run_until([&] { return log_->size() >= 2; }));
  pipeline_.reset();
  ASSERT_TRUE(sink->ended());
  EXPECT_EQ(sink->ends(), 1);
  EXPECT_EQ(sink->end().kind, EndKind::Cancelled);
}

}  // namespace
}  // namespace troupe
