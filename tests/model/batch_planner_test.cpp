#include "model/batch_planner.hpp"

#include <gtest/gtest.h>

#include "model/sampler.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <stdexcept>
#include <vector>

namespace troupe {
namespace {

using Tokens = std::vector<int32_t>;
using namespace std::chrono_literals;

const PlannerClock::time_point kT0 = PlannerClock::time_point{} + 1h;

// A stand-in for a backend: KV memory that holds the token written at each (block, slot), and
// a "model" whose next token is a hash of the whole context it reads back through the block
// table. A wrong table, n_past or re-prefill changes what it reads, hence its tokens.
class TokenMemoryModel {
 public:
  TokenMemoryModel(int32_t blocks, int32_t block_size)
      : block_size_(block_size), cells_(size_t(blocks) * size_t(block_size), -1) {}

  // Writes the step's tokens, then returns the next token when the step wants logits.
  std::optional<int32_t> run(const PlannedStep& step) {
    for (size_t i = 0; i < step.tokens.size(); ++i)
      cell(step.block_table, step.n_past + int32_t(i)) = step.tokens[i];
    if (!step.want_logits) return std::nullopt;
    const int32_t end = step.n_past + int32_t(step.tokens.size());
    Tokens context;
    for (int32_t p = 0; p < end; ++p) context.push_back(cell(step.block_table, p));
    return next_token(context);
  }

  // The "model": FNV-1a over the context.
  static int32_t next_token(std::span<const int32_t> context) {
    uint64_t h = 1469598103934665603ull;
    for (int32_t token : context) {
      h ^= uint64_t(uint32_t(token));
      h *= 1099511628211ull;
    }
    return int32_t(3 + h % 97);
  }

 private:
  int32_t& cell(std::span<const KvBlockId> table, int32_t pos) {
    return cells_[size_t(table[size_t(pos / block_size_)]) * size_t(block_size_) +
                  size_t(pos % block_size_)];
  }
  int32_t block_size_;
  std::vector<int32_t> cells_;
};

struct Harness {
  Harness(int32_t blocks, int32_t block_size, PlannerConfig config)
      : core(KvCacheConfig{blocks, block_size}), kv(core), planner(config, kv),
        model(blocks, block_size) {}

  void submit(uint64_t seq, Tokens prompt, int32_t max_new, int32_t priority = 0) {
    SeqRequest request;
    request.seq = seq;
    request.prompt = std::move(prompt);
    request.max_new_tokens = max_new;
    request.priority = priority;
    const SubmitResult result = planner.submit(std::move(request));
    ASSERT_TRUE(result.ok()) << result.message;
  }

  // Runs a batch on the model and completes it; records sampled tokens per sequence.
  std::vector<EndedSeq> finish(const Batch& batch, uint64_t stop_seq = 0) {
    if (batch.empty()) return {};
    std::vector<SampledToken> sampled;
    for (const PlannedStep& step : batch.steps)
      if (std::optional<int32_t> token = model.run(step)) {
        sampled.push_back({step.seq, *token, step.seq == stop_seq});
        outputs[step.seq].push_back(*token);
      }
    return planner.complete(batch.id, sampled);
  }

  // Plans and finishes batches for worker 0 until the planner is idle.
  int run_to_end(int max_batches = 10000) {
    int n = 0;
    while (!planner.idle() && n < max_batches) {
      Batch batch = planner.plan(0, kT0);
      if (!batch.empty()) finish(batch);
      ++n;
    }
    return n;
  }

  void expect_all_blocks_back() {
    EXPECT_EQ(core.check(), std::nullopt);
    EXPECT_EQ(core.available_blocks(), core.num_blocks());
    EXPECT_EQ(core.stats().in_use_blocks, 0);
    EXPECT_EQ(core.stats().sequences, 0);
  }

  KvCacheCore core;
  CorePlannerKv kv;
  BatchPlanner planner;
  TokenMemoryModel model;
  std::map<uint64_t, Tokens> outputs;
};

PlannerConfig config(int32_t max_batch_tokens, int32_t max_seqs, int32_t max_queued = 64,
                     int32_t workers = 1) {
  PlannerConfig c;
  c.max_batch_tokens = max_batch_tokens;
  c.max_seqs = max_seqs;
  c.max_queued = max_queued;
  c.workers = workers;
  return c;
}

Tokens iota(int32_t n, int32_t first) {
  Tokens t(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) t[size_t(i)] = first + i;
  return t;
}

std::vector<uint64_t> seqs_of(const Batch& batch) {
  std::vector<uint64_t> ids;
  for (const PlannedStep& step : batch.steps) ids.push_back(step.seq);
  return ids;
}

TEST(BatchPlannerConfig, RejectsUnusableValues) {
  EXPECT_THROW(config(0, 1).validate(), std::invalid_argument);
  EXPECT_THROW(config(8, 0).validate(), std::invalid_argument);
  EXPECT_THROW(config(8, 9).validate(), std::invalid_argument);
  EXPECT_THROW(config(8, 4, 0).validate(), std::invalid_argument);
  EXPECT_THROW(config(8, 4, 4, 0).validate(), std::invalid_argument);
  EXPECT_NO_THROW(config(8, 8).validate());
  KvCacheCore core(KvCacheConfig{4, 4});
  CorePlannerKv kv(core);
  EXPECT_THROW(BatchPlanner(config(8, 9), kv), std::invalid_argument);
}

TEST(BatchPlannerSubmit, RefusesBadRequestsWithReasons) {
  Harness h(8, 4, config(16, 4, /*max_queued=*/2));
  auto submit = [&](uint64_t seq, Tokens prompt, int32_t max_new) {
    SeqRequest r;
    r.seq = seq;
    r.prompt = std::move(prompt);
    r.max_new_tokens = max_new;
    return h.planner.submit(std::move(r));
  };
  EXPECT_EQ(submit(1, {}, 4).error, SubmitError::EmptyPrompt);
  EXPECT_EQ(submit(1, {5}, 0).error, SubmitError::BadMaxTokens);
  // 8 blocks of 4 = 32 tokens: 30 + 3 does not fit even alone.
  const SubmitResult too_long = submit(1, iota(30, 1), 3);
  EXPECT_EQ(too_long.error, SubmitError::TooLong);
  EXPECT_NE(too_long.message.find("KV"), std::string::npos);
  EXPECT_TRUE(submit(1, iota(30, 1), 2).ok());
  EXPECT_EQ(submit(1, {5}, 1).error, SubmitError::DuplicateSequence);
  EXPECT_TRUE(submit(2, {5}, 1).ok());
  const SubmitResult full = submit(3, {5}, 1);
  EXPECT_EQ(full.error, SubmitError::QueueFull);
  EXPECT_NE(full.message.find("max-queued 2"), std::string::npos) << full.message;
  const PlannerStats stats = h.planner.stats();
  EXPECT_EQ(stats.submitted, 2u);
  EXPECT_EQ(stats.rejected, 5u);
  EXPECT_EQ(stats.waiting, 2);
  EXPECT_FALSE(h.planner.info(3).has_value());
}

TEST(BatchPlanner, FillsTheTokenBudgetInArrivalOrderWithDecodesFirst) {
  Harness h(64, 4, config(16, 4));
  h.submit(1, iota(10, 100), 5);
  h.submit(2, iota(10, 200), 5);
  h.submit(3, iota(10, 300), 5);

  Batch first = h.planner.plan(0, kT0);
  ASSERT_EQ(seqs_of(first), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(first.tokens(), 16);
  EXPECT_EQ(first.prefill_tokens, 16);
  EXPECT_EQ(Tokens(first.steps[0].tokens.begin(), first.steps[0].tokens.end()), iota(10, 100));
  EXPECT_EQ(first.steps[0].n_past, 0);
  EXPECT_TRUE(first.steps[0].want_logits);
  EXPECT_EQ(first.steps[0].block_table.size(), 3u);
  EXPECT_EQ(Tokens(first.steps[1].tokens.begin(), first.steps[1].tokens.end()), iota(6, 200));
  EXPECT_FALSE(first.steps[1].want_logits);
  EXPECT_EQ(h.planner.info(3)->state, SeqState::Waiting);
  h.finish(first);
  EXPECT_EQ(h.planner.info(1)->state, SeqState::Decoding);
  EXPECT_EQ(h.planner.info(2)->state, SeqState::Prefilling);
  EXPECT_EQ(h.planner.info(2)->computed_tokens, 6);

  Batch second = h.planner.plan(0, kT0);
  ASSERT_EQ(seqs_of(second), (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_FALSE(second.steps[0].prefill);
  EXPECT_EQ(second.steps[0].tokens.size(), 1u);
  EXPECT_EQ(second.steps[0].tokens[0], h.outputs[1][0]);
  EXPECT_EQ(second.steps[0].n_past, 10);
  EXPECT_EQ(second.steps[1].n_past, 6);
  EXPECT_EQ(second.steps[1].tokens.size(), 4u);
  EXPECT_TRUE(second.steps[1].want_logits);
  EXPECT_EQ(second.steps[2].n_past, 0);
  EXPECT_EQ(second.steps[2].tokens.size(), 10u);  // 16 - 1 - 4 = 11 >= the whole prompt
  EXPECT_EQ(second.decode_tokens, 1);
  EXPECT_EQ(second.prefill_tokens, 14);
  h.finish(second);

  h.run_to_end();
  for (uint64_t seq : {1, 2, 3}) EXPECT_EQ(h.outputs[seq].size(), 5u) << seq;
  h.expect_all_blocks_back();
  EXPECT_EQ(h.planner.stats().finished, 3u);
}

TEST(BatchPlanner, CapsSequencesPerBatchAndPerWorker) {
  Harness h(64, 4, config(64, 2));
  for (uint64_t seq = 1; seq <= 4; ++seq) h.submit(seq, {int32_t(seq)}, 3);
  Batch first = h.planner.plan(0, kT0);
  EXPECT_EQ(seqs_of(first), (std::vector<uint64_t>{1, 2}));
  h.finish(first);
  Batch second = h.planner.plan(0, kT0);  // both running: no room to admit 3
  EXPECT_EQ(seqs_of(second), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(second.decode_tokens, 2);
  h.finish(second);
  h.finish(h.planner.plan(0, kT0));  // 1 and 2 reach 3 tokens
  Batch fourth = h.planner.plan(0, kT0);
  EXPECT_EQ(seqs_of(fourth), (std::vector<uint64_t>{3, 4}));
  h.finish(fourth);
  h.run_to_end();
  h.expect_all_blocks_back();
}

TEST(BatchPlanner, HigherPriorityIsAdmittedFirstThenArrivalOrder) {
  Harness h(64, 4, config(4, 1));
  h.submit(1, {1}, 1);
  h.submit(2, {2}, 1, /*priority=*/5);
  h.submit(3, {3}, 1);
  h.submit(4, {4}, 1, /*priority=*/5);
  std::vector<uint64_t> order;
  while (!h.planner.idle()) {
    Batch batch = h.planner.plan(0, kT0);
    for (uint64_t seq : seqs_of(batch)) order.push_back(seq);
    h.finish(batch);
  }
  EXPECT_EQ(order, (std::vector<uint64_t>{2, 4, 1, 3}));
}

TEST(BatchPlanner, ChunkedPrefillNeverDelaysRunningDecodes) {
  Harness h(64, 4, config(8, 4));
  h.submit(1, {7, 8}, 20);
  h.finish(h.planner.plan(0, kT0));  // seq 1 decodes from now on
  h.submit(2, iota(40, 50), 2);

  int32_t expected_n_past = 0;
  for (int iteration = 0; expected_n_past < 40; ++iteration) {
    Batch batch = h.planner.plan(0, kT0);
    ASSERT_GE(batch.steps.size(), 2u);
    EXPECT_EQ(batch.steps[0].seq, 1u);
    EXPECT_FALSE(batch.steps[0].prefill);
    EXPECT_EQ(batch.steps[1].seq, 2u);
    EXPECT_EQ(batch.steps[1].n_past, expected_n_past);
    EXPECT_EQ(batch.steps[1].tokens.size(), size_t(std::min(7, 40 - expected_n_past)));
    EXPECT_EQ(batch.steps[1].want_logits, expected_n_past + 7 >= 40);
    EXPECT_EQ(h.planner.info(1)->generated_tokens, 1 + iteration);
    expected_n_past += int32_t(batch.steps[1].tokens.size());
    h.finish(batch);
  }
  EXPECT_EQ(h.planner.info(2)->state, SeqState::Decoding);
  h.run_to_end();
  h.expect_all_blocks_back();
}

TEST(BatchPlanner, AdmitsOnlyWhenThePromptsBlocksCanBeReserved) {
  Harness h(4, 4, config(32, 4));
  h.submit(1, iota(12, 1), 1);  // 3 blocks
  h.submit(2, iota(8, 20), 1);  // 2 blocks: must wait
  h.submit(3, {40}, 1);         // would fit, but waits behind 2 (FCFS)
  Batch first = h.planner.plan(0, kT0);
  EXPECT_EQ(seqs_of(first), (std::vector<uint64_t>{1}));
  EXPECT_EQ(h.planner.info(2)->state, SeqState::Waiting);
  EXPECT_EQ(h.planner.info(3)->state, SeqState::Waiting);
  EXPECT_EQ(h.core.available_blocks(), 1);
  const std::vector<EndedSeq> ended = h.finish(first);
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].seq, 1u);
  EXPECT_EQ(ended[0].reason, SeqEnd::Length);
  Batch second = h.planner.plan(0, kT0);  // 1's blocks are freed first
  EXPECT_EQ(seqs_of(second), (std::vector<uint64_t>{2, 3}));
  h.finish(second);
  h.run_to_end();
  h.expect_all_blocks_back();
}

// Runs prompts to the end with the given KV size and returns each sequence's tokens.
std::map<uint64_t, Tokens> generate(int32_t blocks, const std::vector<Tokens>& prompts,
                                    int32_t max_new, PlannerStats* stats = nullptr,
                                    std::vector<int32_t>* preemptions = nullptr) {
  Harness h(blocks, 4, config(16, 8));
  for (size_t i = 0; i < prompts.size(); ++i) h.submit(i + 1, prompts[i], max_new);
  std::map<uint64_t, int32_t> seen_preemptions;
  while (!h.planner.idle()) {
    Batch batch = h.planner.plan(0, kT0);
    for (uint64_t seq = 1; seq <= prompts.size(); ++seq)
      if (auto info = h.planner.info(seq)) seen_preemptions[seq] = info->preemptions;
    if (!batch.empty()) h.finish(batch);
  }
  h.expect_all_blocks_back();
  if (stats) *stats = h.planner.stats();
  if (preemptions)
    for (uint64_t seq = 1; seq <= prompts.size(); ++seq)
      preemptions->push_back(seen_preemptions[seq]);
  return h.outputs;
}

TEST(BatchPlanner, PreemptsTheNewestAndResumesWithTheSameTokens) {
  const std::vector<Tokens> prompts = {iota(7, 10), iota(7, 30), iota(7, 50)};
  PlannerStats roomy_stats;
  const auto uninterrupted = generate(64, prompts, 12, &roomy_stats);
  EXPECT_EQ(roomy_stats.preemptions, 0u);

  // 9 blocks of 4: each sequence needs 5 blocks at its end, so they cannot all run at once.
  PlannerStats tight_stats;
  std::vector<int32_t> preemptions;
  const auto squeezed = generate(9, prompts, 12, &tight_stats, &preemptions);
  EXPECT_GT(tight_stats.preemptions, 0u);
  EXPECT_EQ(preemptions[0], 0);  // the oldest is never the victim
  EXPECT_GT(preemptions[2], 0);  // the newest is
  EXPECT_EQ(squeezed, uninterrupted);
  for (const auto& [seq, tokens] : squeezed) EXPECT_EQ(tokens.size(), 12u) << seq;
}

TEST(BatchPlanner, APreemptedSequenceReprefillsPromptAndGeneratedTokens) {
  Harness h(6, 4, config(32, 4));
  for (uint64_t seq = 1; seq <= 3; ++seq) h.submit(seq, iota(7, 10 * int32_t(seq)), 6);
  h.finish(h.planner.plan(0, kT0));  // all prefilled: 2 blocks each, the pool is full
  // Each decode token at position 7 fits; the next at position 8 needs a third block.
  h.finish(h.planner.plan(0, kT0));
  Batch squeezed = h.planner.plan(0, kT0);
  EXPECT_EQ(h.planner.info(3)->state, SeqState::Preempted);
  EXPECT_EQ(h.planner.info(3)->preemptions, 1);
  EXPECT_EQ(seqs_of(squeezed), (std::vector<uint64_t>{1, 2}));  // and no admission
  EXPECT_EQ(h.planner.stats().preemptions, 1u);
  h.finish(squeezed);
  EXPECT_EQ(h.planner.info(3)->generated_tokens, 2);

  Tokens expected_refill = iota(7, 30);
  expected_refill.insert(expected_refill.end(), h.outputs[3].begin(), h.outputs[3].end());
  bool refilled = false;
  while (!h.planner.idle()) {
    Batch batch = h.planner.plan(0, kT0);
    for (const PlannedStep& step : batch.steps)
      if (step.seq == 3 && step.prefill && step.want_logits) {
        // Whatever the prefix cache supplied, the refill ends at the last generated token.
        EXPECT_EQ(step.n_past + int32_t(step.tokens.size()), 9);
        EXPECT_EQ(Tokens(step.tokens.begin(), step.tokens.end()),
                  Tokens(expected_refill.end() - std::ptrdiff_t(step.tokens.size()),
                         expected_refill.end()));
        refilled = true;
      }
    h.finish(batch);
  }
  EXPECT_TRUE(refilled);
  EXPECT_EQ(h.outputs[3].size(), 6u);
  h.expect_all_blocks_back();
}

class CancelTest : public ::testing::Test {
 protected:
  CancelTest() : h(16, 4, config(8, 4)) {}

  void cancel_and_drain(uint64_t seq) {
    EXPECT_TRUE(h.planner.cancel(seq));
    drain_after_cancel(seq);
  }

  void drain_after_cancel(uint64_t seq) {
    EXPECT_FALSE(h.planner.cancel(seq));
    h.run_to_end();
    EXPECT_FALSE(h.planner.info(seq).has_value());
    EXPECT_TRUE(h.planner.idle());
    h.expect_all_blocks_back();
    EXPECT_EQ(h.planner.stats().cancelled, 1u);
  }

  Harness h;
};

TEST_F(CancelTest, WhileWaiting) {
  h.submit(1, iota(8, 1), 4);
  h.submit(2, iota(20, 1), 4);
  h.finish(h.planner.plan(0, kT0));
  EXPECT_EQ(h.planner.info(2)->state, SeqState::Waiting);
  EXPECT_TRUE(h.planner.cancel(2));
  EXPECT_FALSE(h.planner.info(2).has_value());  // forgotten at once
  h.run_to_end();
  h.expect_all_blocks_back();
  EXPECT_EQ(h.outputs[1].size(), 4u);
  EXPECT_EQ(h.outputs.count(2), 0u);
}

TEST_F(CancelTest, DuringPrefillBetweenChunks) {
  h.submit(1, iota(20, 1), 4);
  h.finish(h.planner.plan(0, kT0));
  ASSERT_EQ(h.planner.info(1)->state, SeqState::Prefilling);
  cancel_and_drain(1);
}

TEST_F(CancelTest, DuringPrefillInAStep) {
  h.submit(1, iota(20, 1), 4);
  Batch batch = h.planner.plan(0, kT0);
  ASSERT_TRUE(h.planner.info(1)->in_flight);
  EXPECT_TRUE(h.planner.cancel(1));
  EXPECT_EQ(h.planner.info(1)->state, SeqState::Finished);
  h.planner.plan(0, kT0);  // in a step: blocks kept
  EXPECT_GT(h.core.stats().in_use_blocks, 0);
  EXPECT_TRUE(h.finish(batch).empty());
  drain_after_cancel(1);
}

TEST_F(CancelTest, DuringDecodeBetweenSteps) {
  h.submit(1, iota(5, 1), 8);
  h.finish(h.planner.plan(0, kT0));
  h.finish(h.planner.plan(0, kT0));
  ASSERT_EQ(h.planner.info(1)->state, SeqState::Decoding);
  cancel_and_drain(1);
  EXPECT_EQ(h.outputs[1].size(), 2u);
}

TEST_F(CancelTest, DuringDecodeInAStepDropsItsToken) {
  h.submit(1, iota(5, 1), 8);
  h.finish(h.planner.plan(0, kT0));
  Batch batch = h.planner.plan(0, kT0);
  ASSERT_EQ(h.planner.info(1)->state, SeqState::Decoding);
  EXPECT_TRUE(h.planner.cancel(1));
  h.finish(batch);  // its token is ignored
  drain_after_cancel(1);
}

TEST_F(CancelTest, WhilePreempted) {
  Harness tight(6, 4, config(32, 4));
  for (uint64_t seq = 1; seq <= 3; ++seq) tight.submit(seq, iota(7, 10 * int32_t(seq)), 6);
  tight.finish(tight.planner.plan(0, kT0));
  tight.finish(tight.planner.plan(0, kT0));
  tight.finish(tight.planner.plan(0, kT0));
  ASSERT_EQ(tight.planner.info(3)->state, SeqState::Preempted);
  EXPECT_TRUE(tight.planner.cancel(3));
  EXPECT_FALSE(tight.planner.info(3).has_value());
  tight.run_to_end();
  tight.expect_all_blocks_back();
  EXPECT_EQ(tight.planner.stats().cancelled, 1u);
}

TEST(BatchPlanner, DeadlinesEndSequencesInEveryState) {
  Harness h(64, 4, config(8, 4));
  auto submit = [&](uint64_t seq, Tokens prompt, PlannerClock::time_point deadline) {
    SeqRequest r;
    r.seq = seq;
    r.prompt = std::move(prompt);
    r.max_new_tokens = 50;
    r.deadline = deadline;
    ASSERT_TRUE(h.planner.submit(std::move(r)).ok());
  };
  submit(1, {1, 2}, kT0 + 10s);         // decoding when it expires
  submit(2, iota(30, 5), kT0 + 10s);    // prefilling
  submit(3, iota(30, 40), kT0 + 10s);   // waiting
  submit(4, {9}, kT0 + 60s);
  h.finish(h.planner.plan(0, kT0));
  h.finish(h.planner.plan(0, kT0));
  Batch in_step = h.planner.plan(0, kT0 + 5s);

  Batch late = h.planner.plan(0, kT0 + 10s);
  std::vector<uint64_t> expired;
  for (const EndedSeq& e : late.ended) {
    EXPECT_EQ(e.reason, SeqEnd::Deadline);
    expired.push_back(e.seq);
  }
  std::sort(expired.begin(), expired.end());
  EXPECT_EQ(expired, (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(h.planner.stats().expired, 3u);
  h.finish(in_step);
  h.finish(late);
  while (!h.planner.idle()) h.finish(h.planner.plan(0, kT0 + 11s));
  EXPECT_EQ(h.outputs[4].size(), 50u);
  h.expect_all_blocks_back();
}

TEST(BatchPlanner, StopTokenEndsTheSequence) {
  Harness h(16, 4, config(8, 4));
  h.submit(1, {1, 2, 3}, 10);
  h.finish(h.planner.plan(0, kT0));
  const std::vector<EndedSeq> ended = h.finish(h.planner.plan(0, kT0), /*stop_seq=*/1);
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].reason, SeqEnd::Stop);
  EXPECT_EQ(h.planner.info(1)->generated_tokens, 2);
  h.run_to_end();
  h.expect_all_blocks_back();
}

TEST(BatchPlanner, InFlightSequencesAreNotPlannedTwice) {
  Harness h(32, 4, config(8, 4));
  h.submit(1, {1, 2}, 5);
  h.submit(2, {3, 4}, 5);
  Batch a = h.planner.plan(0, kT0);
  EXPECT_EQ(seqs_of(a), (std::vector<uint64_t>{1, 2}));
  h.submit(3, {5}, 5);
  Batch b = h.planner.plan(0, kT0);
  EXPECT_EQ(seqs_of(b), (std::vector<uint64_t>{3}));
  EXPECT_TRUE(h.planner.plan(0, kT0).empty());
  EXPECT_EQ(h.planner.stats().in_flight_batches, 2);
  h.finish(b);
  h.finish(a);
  h.run_to_end();
  h.expect_all_blocks_back();
}

TEST(BatchPlanner, CompleteRejectsAMismatchedResultAndChangesNothing) {
  Harness h(32, 4, config(16, 4));
  h.submit(1, {1, 2}, 5);
  h.submit(2, iota(20, 3), 5);  // its first chunk wants no logits
  Batch batch = h.planner.plan(0, kT0);
  ASSERT_EQ(batch.steps.size(), 2u);
  const SampledToken one{1, 7, false};
  const SampledToken two{2, 7, false};
  EXPECT_THROW(h.planner.complete(batch.id, {}), std::invalid_argument);
  EXPECT_THROW(h.planner.complete(batch.id, std::vector{one, two}), std::invalid_argument);
  EXPECT_THROW(h.planner.complete(batch.id, std::vector{one, one}), std::invalid_argument);
  EXPECT_THROW(h.planner.complete(batch.id, std::vector{SampledToken{1, -1, false}}),
               std::invalid_argument);
  EXPECT_THROW(h.planner.complete(batch.id + 1, std::vector{one}), std::invalid_argument);
  EXPECT_EQ(h.planner.info(1)->generated_tokens, 0);
  EXPECT_TRUE(h.planner.info(1)->in_flight);
  EXPECT_TRUE(h.planner.complete(batch.id, std::vector{one}).empty());
  EXPECT_EQ(h.planner.info(1)->generated_tokens, 1);
  EXPECT_EQ(h.planner.info(2)->computed_tokens, 14);
  EXPECT_THROW(h.planner.complete(batch.id, std::vector{one}), std::invalid_argument);
}

TEST(BatchPlanner, CompleteTakesTheSampledTokensInAnyOrder) {
  // Two planners, the same requests: one gets each step's tokens in batch order, the other
  // reversed; they must end up with the same sequences.
  Harness in_order(64, 4, config(32, 4)), reversed(64, 4, config(32, 4));
  for (Harness* h : {&in_order, &reversed})
    for (uint64_t seq = 1; seq <= 3; ++seq) h->submit(seq, iota(3 + int32_t(seq), 10), 20);
  for (int32_t step = 0; step < 5; ++step) {
    const Batch a = in_order.planner.plan(0, kT0);
    const Batch b = reversed.planner.plan(0, kT0);
    ASSERT_EQ(seqs_of(a), seqs_of(b));
    std::vector<SampledToken> forward;
    for (const PlannedStep& planned : a.steps)
      if (planned.want_logits) forward.push_back({planned.seq, 40 + 3 * step + int32_t(planned.seq), false});
    ASSERT_EQ(forward.size(), 3u);
    const std::vector<SampledToken> backward(forward.rbegin(), forward.rend());
    EXPECT_TRUE(in_order.planner.complete(a.id, forward).empty());
    EXPECT_TRUE(reversed.planner.complete(b.id, backward).empty());
  }
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    const std::span<const int32_t> a = in_order.planner.tokens(seq);
    const std::span<const int32_t> b = reversed.planner.tokens(seq);
    EXPECT_EQ(a.size(), size_t(3 + seq + 5));
    EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end())) << "sequence " << seq;
    EXPECT_EQ(a.back(), 40 + 12 + int32_t(seq));
  }
}

TEST(BatchPlanner, SequencesStayOnTheirWorker) {
  Harness h(64, 4, config(8, 2, 64, /*workers=*/2));
  for (uint64_t seq = 1; seq <= 4; ++seq) h.submit(seq, {int32_t(seq), 1}, 4);
  Batch w0 = h.planner.plan(0, kT0);
  Batch w1 = h.planner.plan(1, kT0);
  EXPECT_EQ(seqs_of(w0), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(seqs_of(w1), (std::vector<uint64_t>{3, 4}));
  EXPECT_EQ(w1.worker, 1);
  h.finish(w0);
  h.finish(w1);
  for (int i = 0; i < 3; ++i) {
    Batch b1 = h.planner.plan(1, kT0);
    EXPECT_EQ(seqs_of(b1), (std::vector<uint64_t>{3, 4}));
    Batch b0 = h.planner.plan(0, kT0);
    EXPECT_EQ(seqs_of(b0), (std::vector<uint64_t>{1, 2}));
    h.finish(b0);
    h.finish(b1);
  }
  EXPECT_THROW(h.planner.plan(2, kT0), std::invalid_argument);
  EXPECT_TRUE(h.planner.plan(0, kT0).ended.empty());
  EXPECT_TRUE(h.planner.idle());
  h.expect_all_blocks_back();
}

TEST(BatchPlanner, AFailedWorkerEndsItsSequencesAndFreesTheirBlocks) {
  Harness h(64, 4, config(8, 2, 64, /*workers=*/2));
  for (uint64_t seq = 1; seq <= 4; ++seq) h.submit(seq, {int32_t(seq), 1}, 4);
  Batch w0 = h.planner.plan(0, kT0);
  Batch w1 = h.planner.plan(1, kT0);
  h.finish(w1);
  Batch w1_again = h.planner.plan(1, kT0);  // in flight when the worker fails
  h.planner.cancel(3);                       // ended while in the failed step

  std::vector<uint64_t> failed = h.planner.fail_worker(1);
  EXPECT_EQ(failed, (std::vector<uint64_t>{4}));
  EXPECT_EQ(h.planner.stats().failed, 1u);
  EXPECT_THROW(h.finish(w1_again), std::invalid_argument);
  h.finish(w0);
  h.run_to_end();
  EXPECT_EQ(h.outputs[1].size(), 4u);
  EXPECT_EQ(h.outputs[2].size(), 4u);
  h.expect_all_blocks_back();
}

// What one sequence generates alone, computed straight from the model function.
Tokens reference_generation(const Tokens& prompt, int32_t max_new) {
  Tokens context = prompt;
  while (context.size() < prompt.size() + size_t(max_new))
    context.push_back(TokenMemoryModel::next_token(context));
  return Tokens(context.begin() + std::ptrdiff_t(prompt.size()), context.end());
}

// Two workers with steps in flight, a small cache (preemptions, prefix hits), cancels and
// late arrivals, in a seeded random order: every sequence that was not cancelled generates
// what it generates alone, and every block comes back.
TEST(BatchPlanner, RandomisedRunMatchesSoloGenerationAndLeaksNothing) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    SplitMix64 rng(seed);
    auto below = [&](uint64_t n) { return int32_t(rng.next() % n); };
    Harness h(20, 4, config(12, 3, 64, /*workers=*/2));
    const std::vector<Tokens> bases = {iota(9, 10), iota(6, 40)};
    std::map<uint64_t, Tokens> prompts;
    std::map<uint64_t, int32_t> max_new;
    std::map<uint64_t, bool> cancelled;
    uint64_t next_seq = 1;
    auto submit_random = [&] {
      Tokens prompt = bases[size_t(below(2))];
      prompt.resize(size_t(1 + below(int32_t(prompt.size()))));
      for (int i = below(8); i > 0; --i) prompt.push_back(below(100));
      const int32_t n_new = 1 + below(24);
      prompts[next_seq] = prompt;
      max_new[next_seq] = n_new;
      h.submit(next_seq++, prompt, n_new);
    };
    for (int i = 0; i < 8; ++i) submit_random();

    std::optional<Batch> in_flight[2];
    for (int round = 0; round < 4000 && !(h.planner.idle() && next_seq > 30); ++round) {
      const int32_t worker = below(2);
      if (in_flight[worker]) {
        h.finish(*in_flight[worker]);
        in_flight[worker].reset();
      } else {
        Batch batch = h.planner.plan(worker, kT0);
        if (!batch.empty()) in_flight[worker] = std::move(batch);
      }
      if (next_seq <= 30 && below(3) == 0) submit_random();
      if (below(25) == 0) {
        const uint64_t victim = 1 + uint64_t(below(int32_t(next_seq - 1)));
        if (h.planner.cancel(victim)) cancelled[victim] = true;
      }
    }
    ASSERT_TRUE(h.planner.idle());
    h.expect_all_blocks_back();
    EXPECT_GT(h.planner.stats().preemptions, 0u);
    EXPECT_GT(h.core.stats().hit_tokens, 0u);
    for (const auto& [seq, prompt] : prompts) {
      if (cancelled[seq]) continue;
      EXPECT_EQ(h.outputs[seq], reference_generation(prompt, max_new[seq]))
          << "sequence " << seq;
    }
  }
}

TEST(BatchPlanner, StatisticsCountWhatHappened) {
  Harness h(64, 4, config(16, 4));
  h.submit(1, iota(5, 1), 3);
  h.submit(2, iota(5, 1), 3);
  h.run_to_end();
  const PlannerStats s = h.planner.stats();
  EXPECT_EQ(s.submitted, 2u);
  EXPECT_EQ(s.admitted, 2u);
  EXPECT_EQ(s.finished, 2u);
  EXPECT_EQ(s.prefill_tokens, 10u);
  EXPECT_EQ(s.decode_tokens, 4u);  // 2 sequences x (3 tokens - the one from prefill)
  EXPECT_EQ(s.waiting, 0);
  EXPECT_EQ(s.running, 0);
  EXPECT_EQ(s.peak_waiting, 2);
  EXPECT_EQ(describe(SeqEnd::Deadline), "deadline");
  EXPECT_EQ(describe(SeqState::Preempted), "preempted");
}

}  // namespace
}  // namespace troupe
