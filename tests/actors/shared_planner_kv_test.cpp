// SharedPlannerKv: a BatchPlanner over the shared KV cache plans exactly what it plans over a
// private KvCacheCore, under every sync mode and both granularities, inside iteration() or
// not; with `step` one plan() costs at most one cache call per kind of KV work, and a whole
// iteration (complete + plan) one call; with `token` one per entry.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "actors/shared_planner_kv.hpp"
#include "actors/sharing_actor_system.hpp"

namespace troupe {
namespace {

const KvCacheConfig kConfig{.num_blocks = 24, .block_size = 4};
const PlannerConfig kPlanner{.max_batch_tokens = 16, .max_seqs = 6, .max_queued = 16,
                             .workers = 2};

struct PlanRecord {
  std::vector<uint64_t> seqs;
  std::vector<std::vector<int32_t>> tokens;
  std::vector<int32_t> n_past;
  std::vector<std::vector<KvBlockId>> tables;
  std::vector<uint64_t> ended;
  bool operator==(const PlanRecord&) const = default;
};

// Submits six sequences (two sharing a prefix), then plans and completes on two workers
// until idle, each sampled token being (seq * 7 + position) % 50 + 3.
// iterate (when given) wraps each complete + plan, as the runtimes call
// SharedPlannerKv::iteration.
std::vector<PlanRecord> run_script(PlannerKv& kv, SharedPlannerKv* iterate = nullptr) {
  BatchPlanner planner(kPlanner, kv);
  for (uint64_t seq = 1; seq <= 6; ++seq) {
    std::vector<int32_t> prompt;
    for (int32_t i = 0; i < int32_t(3 + seq * 2); ++i) prompt.push_back(seq <= 2 ? 10 + i : int32_t(seq * 5 + i));
    EXPECT_TRUE(planner.submit({.seq = seq, .prompt = prompt, .max_new_tokens = 5}).ok());
  }
  std::vector<PlanRecord> records;
  const PlannerClock::time_point now = PlannerClock::now();
  auto in_iteration = [&](auto&& f) {
    if (iterate)
      iterate->iteration(f);
    else
      f();
  };
  for (int iteration = 0; iteration < 200 && !planner.idle(); ++iteration) {
    Batch batch;
    in_iteration([&] { batch = planner.plan(iteration % 2, now); });
    PlanRecord record;
    std::vector<SampledToken> sampled;
    for (const PlannedStep& step : batch.steps) {
      record.seqs.push_back(step.seq);
      record.tokens.emplace_back(step.tokens.begin(), step.tokens.end());
      record.n_past.push_back(step.n_past);
      record.tables.emplace_back(step.block_table.begin(), step.block_table.end());
      if (step.want_logits)
        sampled.push_back({.seq = step.seq,
                           .token = int32_t((step.seq * 7 + step.n_past) % 50 + 3)});
    }
    for (const EndedSeq& ended : batch.ended) record.ended.push_back(ended.seq);
    if (!batch.empty()) {
      std::vector<EndedSeq> completed;
      in_iteration([&] { completed = planner.complete(batch.id, sampled); });
      for (const EndedSeq& ended : completed) record.ended.push_back(ended.seq);
    }
    records.push_back(std::move(record));
  }
  EXPECT_TRUE(planner.idle());
  return records;
}

class SharedPlannerKvTest : public ::testing::TestWithParam<SyncMode> {
 protected:
  std::unique_ptr<SharedKvCache> make_cache() {
    return make_shared_kv_cache(GetParam(), kConfig, &actors_.system());
  }
  SharingActorSystem actors_;
};

TEST_P(SharedPlannerKvTest, PlansWhatAPrivateCorePlansAndLeavesTheCacheClean) {
  KvCacheCore core(kConfig);
  CorePlannerKv private_kv(core);
  const std::vector<PlanRecord> expected = run_script(private_kv);
  for (KvGranularity granularity : {KvGranularity::Step, KvGranularity::Token}) {
    for (const bool iterate : {false, true}) {
      const auto cache = make_cache();
      SharedPlannerKv kv(*cache, granularity);
      EXPECT_EQ(kv.block_size(), 4);
      EXPECT_EQ(kv.num_blocks(), 24);
      EXPECT_EQ(run_script(kv, iterate ? &kv : nullptr), expected)
          << to_string(granularity) << (iterate ? " in iterations" : "");
      EXPECT_EQ(cache->check(), std::nullopt);
      const KvStats stats = cache->stats();
      EXPECT_EQ(stats.in_use_blocks, 0);
      EXPECT_EQ(stats.free_blocks + stats.cached_idle_blocks, stats.total_blocks);
    }
  }
}

TEST_P(SharedPlannerKvTest, AStepIterationIsOneCacheCallAndPassesErrorsOn) {
  for (KvGranularity granularity : {KvGranularity::Step, KvGranularity::Token}) {
    const auto cache = make_cache();
    SharedPlannerKv kv(*cache, granularity);
    BatchPlanner planner(PlannerConfig{.max_batch_tokens = 64, .max_seqs = 8, .max_queued = 8,
                                       .workers = 1},
                         kv);
    for (uint64_t seq = 1; seq <= 4; ++seq)
      ASSERT_TRUE(planner.submit({.seq = seq, .prompt = {int32_t(seq), 5, 6}, .max_new_tokens = 9}).ok());
    Batch prefill;
    kv.iteration([&] { prefill = planner.plan(0, PlannerClock::now()); });
    std::vector<SampledToken> sampled;
    for (const PlannedStep& step : prefill.steps) sampled.push_back({.seq = step.seq, .token = 7});
    const uint64_t before = cache->sharing_stats().calls;
    Batch decode;
    kv.iteration([&] {
      planner.complete(prefill.id, sampled);
      decode = planner.plan(0, PlannerClock::now());  // frees nothing, appends four, tables
    });
    ASSERT_EQ(decode.decode_tokens, 4);
    const uint64_t calls = cache->sharing_stats().calls - before;
    if (granularity == KvGranularity::Step)
      EXPECT_EQ(calls, 1u) << "one transaction for the whole iteration";
    else
      EXPECT_GE(calls, 4u);  // an append per sequence
    // What the iteration throws reaches the caller, and the cache stays usable.
    EXPECT_THROW(kv.iteration([&] { planner.complete(decode.id + 100, {}); }),
                 std::invalid_argument);
    EXPECT_EQ(cache->check(), std::nullopt);
    EXPECT_EQ(kv.available_blocks(), cache->available_blocks());
  }
}

TEST_P(SharedPlannerKvTest, StepGranularityIsOneCallPerKindOfWorkTokenOnePerEntry) {
  for (KvGranularity granularity : {KvGranularity::Step, KvGranularity::Token}) {
    const auto cache = make_cache();
    SharedPlannerKv kv(*cache, granularity);
    BatchPlanner planner(PlannerConfig{.max_batch_tokens = 64, .max_seqs = 8, .max_queued = 8,
                                       .workers = 1},
                         kv);
    for (uint64_t seq = 1; seq <= 4; ++seq)
      ASSERT_TRUE(planner.submit({.seq = seq, .prompt = {int32_t(seq), 5, 6}, .max_new_tokens = 9}).ok());
    Batch prefill = planner.plan(0, PlannerClock::now());
    std::vector<SampledToken> sampled;
    for (const PlannedStep& step : prefill.steps) sampled.push_back({.seq = step.seq, .token = 7});
    planner.complete(prefill.id, sampled);

    const uint64_t before = cache->sharing_stats().calls;
    Batch decode = planner.plan(0, PlannerClock::now());  // four appends, their tables
    ASSERT_EQ(decode.decode_tokens, 4);
    const uint64_t calls = cache->sharing_stats().calls - before;
    if (granularity == KvGranularity::Step)
      EXPECT_LE(calls, 3u);  // append_slots, block_tables, perhaps available_blocks
    else
      EXPECT_GE(calls, 4u);  // an append per sequence
  }
}

TEST_P(SharedPlannerKvTest, BatchedBlockTablesMatchOneByOneReads) {
  const auto cache = make_cache();
  const std::vector<int32_t> a{1, 2, 3, 4, 5, 6}, b{7, 8};
  ASSERT_TRUE(cache->reserve(1, a).ok());
  ASSERT_TRUE(cache->reserve(2, b).ok());
  const std::vector<uint64_t> seqs{2, 99, 1};
  std::vector<std::vector<KvBlockId>> tables(3, std::vector<KvBlockId>{42});
  cache->block_tables(seqs, tables);
  EXPECT_EQ(tables[0], cache->block_table(2));
  EXPECT_TRUE(tables[1].empty());
  EXPECT_EQ(tables[2], cache->block_table(1));
  EXPECT_EQ(tables[2].size(), 2u);
  std::vector<std::vector<KvBlockId>> too_few(2);
  EXPECT_THROW(cache->block_tables(seqs, too_few), std::invalid_argument);
  std::vector<std::vector<KvBlockId>> by_token(3);
  tables_step(*cache, KvGranularity::Token, seqs, by_token);
  EXPECT_EQ(by_token, tables);
}

INSTANTIATE_TEST_SUITE_P(EveryMode, SharedPlannerKvTest, ::testing::ValuesIn(all_sync_modes),
                         [](const auto& info) {
                           std::string name(to_string(info.param));
                           std::erase(name, '-');
                           return name;
                         });

}  // namespace
}  // namespace troupe
