// The actor-owned sharing wrappers (sync mode `actor`): the same workload and meeting tests
// as the lock-based ones (locked_sharing_mt_test.cpp), plus timeouts, errors and lifetime.
// Not a *_mt_test: ThreadSanitizer cannot see into CAF.

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "actors/actor_owned.hpp"
#include "actors/shared_kv_cache.hpp"
#include "actors/shared_model_state.hpp"
#include "actors/sharing_actor_system.hpp"
#include "actors/sharing_granularity.hpp"
#include "tests/actors/shared_kv_script.hpp"
#include "tests/util/scratch_file.hpp"
#include "tests/util/tiny_model.hpp"

namespace troupe {
namespace {

using test::ScriptOutcome;
using test::ScriptStep;

constexpr int kThreads = 8;
constexpr int kSteps = 150;

class ActorOwnedTest : public ::testing::Test {
 protected:
  SharingActorSystem actors;
};

class ActorOwnedWorkloadTest : public ActorOwnedTest,
                               public ::testing::WithParamInterface<KvGranularity> {};

TEST_P(ActorOwnedWorkloadTest, EightThreadsLeaveTheSameStatisticsAsOneAfterAnother) {
  std::vector<std::vector<ScriptStep>> scripts;
  std::vector<ScriptOutcome> expected;
  KvCacheCore core(test::script_cache_config());
  test::start_warm_sequence(core);
  for (int t = 0; t < kThreads; ++t) {
    scripts.push_back(test::make_script(t, kSteps, 9));
    expected.push_back(test::run_script_on_core(core, scripts.back()));
  }

  const auto cache =
      make_shared_kv_cache(SyncMode::Actor, test::script_cache_config(), &actors.system());
  test::start_warm_sequence(*cache);
  std::vector<ScriptOutcome> outcomes(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      const auto i = static_cast<std::size_t>(t);
      outcomes[i] = test::run_script(*cache, GetParam(), scripts[i]);
    });
  for (std::thread& thread : threads) thread.join();

  for (int t = 0; t < kThreads; ++t)
    EXPECT_EQ(outcomes[static_cast<std::size_t>(t)], expected[static_cast<std::size_t>(t)])
        << "thread " << t;
  EXPECT_EQ(test::final_stats(cache->stats()), test::final_stats(core.stats()));
  EXPECT_EQ(cache->check(), std::nullopt);
  EXPECT_EQ(cache->mode(), SyncMode::Actor);
}

INSTANTIATE_TEST_SUITE_P(BothGranularities, ActorOwnedWorkloadTest,
                         ::testing::Values(KvGranularity::Step, KvGranularity::Token),
                         [](const auto& info) { return std::string(to_string(info.param)); });

// A step's batched calls are one message each; per token, one message per entry.
TEST_F(ActorOwnedTest, BatchedCallsAreOneMessage) {
  const auto cache =
      make_shared_kv_cache(SyncMode::Actor, test::script_cache_config(), &actors.system());
  const std::vector<int32_t> prompt = {1, 2, 3, 4, 5};
  const std::vector<KvReserve> requests = {{1, prompt}, {2, prompt}, {3, prompt}};
  std::vector<KvReserveResult> reserved(requests.size());
  const std::vector<KvAppend> appends = {{1, 7}, {2, 7}, {3, 7}};
  std::vector<KvAppendResult> appended(appends.size());

  EXPECT_EQ(reserve_step(*cache, KvGranularity::Step, requests, reserved), 3);
  EXPECT_EQ(append_step(*cache, KvGranularity::Step, appends, appended), 3);
  EXPECT_EQ(cache->sharing_stats().calls, 2u);
  EXPECT_EQ(append_step(*cache, KvGranularity::Token, appends, appended), 3);
  EXPECT_EQ(cache->sharing_stats().calls, 5u);
  EXPECT_EQ(appended[2].position, 6);
  EXPECT_EQ(cache->block_table(3).size(), 2u);
}

// The owner is held inside the core's hash until two more callers are in flight; their
// requests queue in its mailbox.
TEST_F(ActorOwnedTest, ThreeThreadsCallInAtOnceAndQueueInTheMailbox) {
  const auto cache =
      make_shared_kv_cache(SyncMode::Actor, test::meeting_cache_config(), &actors.system());
  EXPECT_TRUE(test::three_callers_meet(*cache, std::chrono::milliseconds(50)));

  EXPECT_GE(test::meeting.max_in_flight.load(), 3);
  const SharingStats stats = cache->sharing_stats();
  EXPECT_EQ(stats.calls, 3u);
  EXPECT_EQ(stats.mailbox_depth_max, 2u);
  EXPECT_EQ(stats.contended_calls, 1u);  // the second request found the first queued
  EXPECT_GE(stats.wait_ns_longest, 50'000'000u);
  EXPECT_EQ(cache->stats().sequences, 2);
}

// A request still queued when its timeout passes is withdrawn (no effect, SharingError); one
// the owner has started is awaited and succeeds.
TEST_F(ActorOwnedTest, TimeoutsWithdrawQueuedCallsAndAwaitRunningOnes) {
  const auto cache = make_shared_kv_cache(SyncMode::Actor, test::meeting_cache_config(),
                                          &actors.system(), {.actor_timeout = std::chrono::milliseconds(100)});
  test::meeting.arm(2, std::chrono::milliseconds(400));
  std::thread holder([&] {
    test::CallInFlight in_flight;
    EXPECT_TRUE(cache->reserve(100, test::hashing_prompt()).ok());
  });
  test::meeting.wait_for_holder();
  std::string queued_error;
  std::thread queued([&] {
    test::CallInFlight in_flight;
    const std::vector<int32_t> prompt = {42};
    try {
      cache->reserve(101, prompt);
    } catch (const SharingError& error) {
      queued_error = error.what();
    }
  });
  holder.join();
  queued.join();

  EXPECT_NE(queued_error.find("the actor owning the KV cache gave no answer"), std::string::npos)
      << queued_error;
  EXPECT_NE(queued_error.find("the call had no effect"), std::string::npos) << queued_error;
  EXPECT_EQ(cache->num_tokens(101), std::nullopt);
  EXPECT_EQ(cache->num_tokens(100), 9);
  EXPECT_EQ(cache->check(), std::nullopt);
}

TEST_F(ActorOwnedTest, ExceptionsReachTheCallerAndTheOwnerSurvives) {
  const auto cache =
      make_shared_kv_cache(SyncMode::Actor, test::script_cache_config(), &actors.system());
  const std::vector<KvAppend> appends = {{1, 7}, {2, 7}};
  std::vector<KvAppendResult> too_few(1);
  EXPECT_THROW(cache->append_slots(appends, too_few), std::invalid_argument);
  const std::vector<int32_t> prompt = {1, 2, 3};
  EXPECT_TRUE(cache->reserve(1, prompt).ok());
  EXPECT_EQ(cache->append_slot(1, 4).position, 3);
  EXPECT_EQ(cache->append_slot(9, 4).error, KvError::UnknownSequence);
}

TEST_F(ActorOwnedTest, ModelStateReloadsThroughTheOwner) {
  const test::ScratchFile first(test::tiny_model_bytes(test::TinyModelSpec{}));
  test::TinyModelSpec three_layers;
  three_layers.n_layer = 3;
  const test::ScratchFile second(test::tiny_model_bytes(three_layers));
  auto state =
      make_shared_model_state(SyncMode::Actor, ModelState::open(first.path()), &actors.system());
  ModelHandle running = state->acquire();
  const std::weak_ptr<const LoadedModel> old = running;

  EXPECT_EQ(state->reload(second.path()), 2u);
  EXPECT_EQ(running->desc().n_layer, 2u);
  EXPECT_EQ(state->acquire()->desc().n_layer, 3u);
  EXPECT_EQ(state->snapshot().live_generations, 2u);
  state->record_usage(2, {.requests = 1, .prompt_tokens = 4, .generated_tokens = 5});
  EXPECT_EQ(state->snapshot().current.generated_tokens, 5u);

  running.reset();
  EXPECT_TRUE(old.expired());
  EXPECT_THROW(state->reload("/nonexistent/model.gguf"), ModelLoadError);
  EXPECT_EQ(state->snapshot().generation, 2u);

  // Destroying the wrapper stops the owner and destroys the core before it returns.
  const std::weak_ptr<const LoadedModel> current = state->acquire();
  state.reset();
  EXPECT_TRUE(current.expired());
}

TEST_F(ActorOwnedTest, RunsAnyCallableOnTheOwnedCore) {
  ActorOwned<int> counter(actors.system(), 0, "a counter");
  for (int i = 0; i < 100; ++i) counter.write([](int& value) { ++value; });
  std::thread other([&] { counter.write([](int& value) { value += 10; }); });
  other.join();
  EXPECT_EQ(counter.read([](const int& value) { return value; }), 110);
  EXPECT_EQ(counter.sharing_stats().calls, 102u);
}

TEST_F(ActorOwnedTest, ActorModeNeedsAnActorSystem) {
  EXPECT_THROW(make_shared_kv_cache(SyncMode::Actor, test::script_cache_config()),
               std::invalid_argument);
  const test::ScratchFile file(test::tiny_model_bytes(test::TinyModelSpec{}));
  EXPECT_THROW(make_shared_model_state(SyncMode::Actor, ModelState::open(file.path())),
               std::invalid_argument);
}

}  // namespace
}  // namespace troupe
