// The lock-based sharing wrappers under real concurrency (ThreadSanitizer runs this file; it
// uses no actor: TSan cannot see into CAF).

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "actors/shared_kv_cache.hpp"
#include "actors/shared_model_state.hpp"
#include "actors/sharing_granularity.hpp"
#include "tests/actors/shared_kv_script.hpp"
#include "tests/util/scratch_file.hpp"
#include "tests/util/tiny_model.hpp"

namespace troupe {
namespace {

using test::ScriptOutcome;
using test::ScriptStep;

constexpr SyncMode kLockModes[] = {SyncMode::Std,       SyncMode::StdRw, SyncMode::Parking,
                                   SyncMode::ParkingRw, SyncMode::Futex, SyncMode::Spin};
constexpr int kThreads = 8;
constexpr int kSteps = 500;
constexpr uint64_t kSeed = 4;

struct Reference {
  std::vector<std::vector<ScriptStep>> scripts;
  std::vector<ScriptOutcome> outcomes;
  test::FinalStats final_stats{};
};

// The scripts run one after another on a plain core.
const Reference& reference() {
  static const Reference computed = [] {
    Reference r;
    KvCacheCore core(test::script_cache_config());
    test::start_warm_sequence(core);
    for (int t = 0; t < kThreads; ++t) {
      r.scripts.push_back(test::make_script(t, kSteps, kSeed));
      r.outcomes.push_back(test::run_script_on_core(core, r.scripts.back()));
    }
    r.final_stats = test::final_stats(core.stats());
    return r;
  }();
  return computed;
}

TEST(LockedSharingTest, TheReferenceScriptsNeverEvictOrFail) {
  const Reference& r = reference();
  int64_t reserves = 0, appends = 0, frees = 0;
  for (const auto& script : r.scripts)
    for (const ScriptStep& step : script) {
      reserves += static_cast<int64_t>(step.reserve_seqs.size());
      appends += static_cast<int64_t>(step.appends.size());
      frees += static_cast<int64_t>(step.frees.size());
    }
  int64_t reserved = 0, appended = 0, freed = 0, cached = 0;
  for (const ScriptOutcome& outcome : r.outcomes) {
    reserved += outcome.reserved;
    appended += outcome.appended;
    freed += outcome.freed;
    cached += outcome.cached_tokens;
  }
  EXPECT_EQ(reserved, reserves);
  EXPECT_EQ(appended, appends);
  EXPECT_EQ(freed, frees);
  EXPECT_EQ(r.final_stats.evictions, 0u);
  EXPECT_EQ(r.final_stats.sequences, 1);  // the warm one
  // Prefix hits happen, beyond the warm prefix too (8 tokens per reserve).
  EXPECT_GT(cached, 8 * reserved);
}

class LockedKvCacheTest
    : public ::testing::TestWithParam<std::tuple<SyncMode, KvGranularity>> {};

TEST_P(LockedKvCacheTest, EightThreadsLeaveTheSameStatisticsAsOneAfterAnother) {
  const auto [mode, granularity] = GetParam();
  const Reference& r = reference();
  const auto cache = make_shared_kv_cache(mode, test::script_cache_config());
  test::start_warm_sequence(*cache);

  std::vector<ScriptOutcome> outcomes(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      outcomes[static_cast<std::size_t>(t)] =
          test::run_script(*cache, granularity, r.scripts[static_cast<std::size_t>(t)]);
    });
  for (std::thread& thread : threads) thread.join();

  for (int t = 0; t < kThreads; ++t)
    EXPECT_EQ(outcomes[static_cast<std::size_t>(t)], r.outcomes[static_cast<std::size_t>(t)])
        << "thread " << t;
  EXPECT_EQ(test::final_stats(cache->stats()), r.final_stats);
  EXPECT_EQ(cache->check(), std::nullopt);
  EXPECT_EQ(cache->mode(), mode);
  EXPECT_GT(cache->sharing_stats().calls, 0u);
}

INSTANTIATE_TEST_SUITE_P(
    AllLocks, LockedKvCacheTest,
    ::testing::Combine(::testing::ValuesIn(kLockModes),
                       ::testing::Values(KvGranularity::Step, KvGranularity::Token)),
    [](const auto& info) {
      std::string name = std::string(to_string(std::get<0>(info.param))) + "_" +
                         std::string(to_string(std::get<1>(info.param)));
      std::erase(name, '-');
      return name;
    });

class LockedModeTest : public ::testing::TestWithParam<SyncMode> {};

// One caller holds the lock (inside the core's hash) until two more callers are in flight:
// a reader and a writer, which then wait for it.
TEST_P(LockedModeTest, ThreeThreadsCallInAtOnceAndContend) {
  const auto cache = make_shared_kv_cache(GetParam(), test::meeting_cache_config());
  EXPECT_TRUE(test::three_callers_meet(*cache, std::chrono::milliseconds(100)));

  EXPECT_GE(test::meeting.max_in_flight.load(), 3);
  const SharingStats stats = cache->sharing_stats();
  EXPECT_EQ(stats.calls, 3u);
  EXPECT_GE(stats.contended_calls, 1u);
  EXPECT_GT(stats.wait_ns_total, 0u);
  EXPECT_GE(stats.wait_ns_longest, stats.wait_ns_total / stats.contended_calls);
  EXPECT_EQ(stats.mailbox_depth_max, 0u);
  EXPECT_EQ(cache->stats().sequences, 2);
}

// Eight readers acquire and record usage while one thread reloads: every reader sees the
// generations in order, the counters add up, and old generations go once nobody holds them.
TEST_P(LockedModeTest, ReadersKeepTheirGenerationAcrossReloads) {
  const test::ScratchFile file(test::tiny_model_bytes(test::TinyModelSpec{}));
  const auto state = make_shared_model_state(GetParam(), ModelState::open(file.path()));
  constexpr int kReloads = 3;
  constexpr int kReaders = 8;
  std::atomic<bool> reloading{true};
  std::vector<uint64_t> usage_records(kReaders, 0);
  std::vector<bool> in_order(kReaders, true);

  std::vector<std::thread> readers;
  for (int r = 0; r < kReaders; ++r)
    readers.emplace_back([&, r] {
      uint64_t last = 0;
      uint64_t records = 0;
      do {
        const ModelHandle model = state->acquire();
        if (model->generation() < last) in_order[static_cast<std::size_t>(r)] = false;
        last = model->generation();
        EXPECT_EQ(model->desc().n_layer, 2u);
        state->sampling_defaults();
        state->record_usage(model->generation(), {.requests = 1, .prompt_tokens = 3,
                                                  .generated_tokens = 2});
        ++records;
        if (records % 16 == 0) state->snapshot();
      } while (reloading.load());
      usage_records[static_cast<std::size_t>(r)] = records;
    });
  for (int i = 0; i < kReloads; ++i) state->reload(file.path());
  reloading = false;
  for (std::thread& reader : readers) reader.join();

  uint64_t records = 0;
  for (int r = 0; r < kReaders; ++r) {
    EXPECT_TRUE(in_order[static_cast<std::size_t>(r)]) << "reader " << r;
    records += usage_records[static_cast<std::size_t>(r)];
  }
  const ModelStateSnapshot snapshot = state->snapshot();
  EXPECT_EQ(snapshot.generation, 1u + kReloads);
  EXPECT_EQ(snapshot.loads, 1u + kReloads);
  EXPECT_EQ(snapshot.live_generations, 1u);
  EXPECT_EQ(snapshot.total.requests, records);
  EXPECT_EQ(snapshot.total.prompt_tokens, 3 * records);
  EXPECT_EQ(snapshot.total.generated_tokens, 2 * records);
  EXPECT_LE(snapshot.current.requests, records);
  EXPECT_GT(state->sharing_stats().calls, records);
}

INSTANTIATE_TEST_SUITE_P(AllLocks, LockedModeTest, ::testing::ValuesIn(kLockModes),
                         [](const auto& info) {
                           std::string name(to_string(info.param));
                           std::erase(name, '-');
                           return name;
                         });

TEST(LockedSharingTest, ActorModeNeedsAnActorSystem) {
  EXPECT_THROW(make_shared_kv_cache(SyncMode::Actor, test::script_cache_config()),
               std::invalid_argument);
}

}  // namespace
}  // namespace troupe
