// BatchPlanner: continuous batching as a pure core, the scheduling policy both runtimes run.
// Each plan(worker, now) builds one batch for one worker under a token budget
// (max_batch_tokens) and a sequence cap (max_seqs): first one decode token for each of the
// worker's running sequences, then prefill chunks of its sequences still prefilling, then
// admission of waiting sequences in (priority, arrival) order, each starting with a chunk of
// its prompt. A sequence is admitted only when its prompt's KV blocks are reserved; the
// waiting queue's head blocks those behind it (FCFS). A long prompt is split across
// iterations, so it never delays the decodes that share its batch.
// KV: the planner makes every KV call itself through PlannerKv, batched: per plan one free
// (sequences that ended), one append_slots (a slot for each decode token), one
// available_blocks and one reserve (admission), one block_tables (tables that changed).
// When an append finds no block, the newest running sequence not in a step (lowest priority,
// then latest arrival; possibly the one appending) is preempted by recompute: its blocks are
// freed and it rejoins the waiting queue at its (priority, arrival) place, ahead of every
// later arrival; re-admitted, it prefills its prompt plus the tokens it generated and goes on
// as if never interrupted. A plan that preempts admits nobody.
// Steps in flight: a sequence in a batch that has not been completed is planned no more and
// keeps its blocks until complete(); several batches (one per worker, or more) may be in
// flight. Sequences stay on the worker whose plan admitted them until they end or are
// preempted.
// Ending: complete() ends sequences at max_new_tokens or when the caller flags a stop token
// (EOS is the caller's decision); cancel(), an expired deadline (checked by plan) and
// fail_worker() end them too. An ended sequence's blocks are freed by the next plan() after
// its step (if any) completed; then the planner forgets it and its id may be submitted again.
// Errors: a PlannerKv call that throws (e.g. a shared cache's owner gone) propagates, and the
// planner and the cache may then disagree: treat it as fatal for this planner.
// Thread safety: none; one thread (or actor) owns the planner. It reads no clock: time is
// passed to plan(). Ownership: borrows the PlannerKv, which must outlive it.
// Units: tokens are vocabulary ids; positions count tokens from 0.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/kv_cache_core.hpp"

namespace troupe {

// The KV cache as the planner uses it: KvCacheCore's batched calls (same results and errors),
// so a runtime can pass its shared cache through a thin adapter.
class PlannerKv {
 public:
  virtual ~PlannerKv() = default;
  virtual int32_t block_size() const = 0;
  virtual int32_t num_blocks() const = 0;
  virtual int32_t available_blocks() const = 0;
  virtual int64_t reserve(std::span<const KvReserve> requests,
                          std::span<KvReserveResult> results) = 0;
  virtual int64_t append_slots(std::span<const KvAppend> appends,
                               std::span<KvAppendResult> results) = 0;
  virtual int64_t free(std::span<const uint64_t> seqs) = 0;
  // tables[i] becomes the block table of seqs[i] (empty for an unknown sequence).
  virtual void block_tables(std::span<const uint64_t> seqs,
                            std::span<std::vector<KvBlockId>> tables) const = 0;
};

// PlannerKv over a KvCacheCore the caller owns (single-threaded use).
class CorePlannerKv final : public PlannerKv {
 public:
  explicit CorePlannerKv(KvCacheCore& core) : core_(core) {}
  int32_t block_size() const override { return core_.block_size(); }
  int32_t num_blocks() const override { return core_.num_blocks(); }
  int32_t available_blocks() const override { return core_.available_blocks(); }
  int64_t reserve(std::span<const KvReserve> requests,
                  std::span<KvReserveResult> results) override;
  int64_t append_slots(std::span<const KvAppend> appends,
                       std::span<KvAppendResult> results) override;
  int64_t free(std::span<const uint64_t> seqs) override;
  void block_tables(std::span<const uint64_t> seqs,
                    std::span<std::vector<KvBlockId>> tables) const override;

 private:
  KvCacheCore& core_;
};

using PlannerClock = std::chrono::steady_clock;

struct PlannerConfig {
  int32_t max_batch_tokens = 512;  // tokens of one batch, decodes and prefill chunks together
  int32_t max_seqs = 64;           // sequences in one batch and running on one worker
  int32_t max_queued = 1024;       // waiting sequences; submit() beyond is rejected
  int32_t workers = 1;             // plan(worker) takes worker in [0, workers)
  // Throws std::invalid_argument naming the option (max_seqs may not exceed
  // max_batch_tokens: every running decode must fit in one batch).
  void validate() const;
};

struct SeqRequest {
  uint64_t seq = 0;                  // the caller's id, unique among live sequences
  std::vector<int32_t> prompt;       // at least one token
  int32_t max_new_tokens = 16;       // >= 1
  int32_t priority = 0;              // higher is served first; FCFS within a priority
  PlannerClock::time_point deadline = PlannerClock::time_point::max();
};

enum class SubmitError : uint8_t { None, QueueFull, DuplicateSequence, EmptyPrompt,
                                   BadMaxTokens, TooLong };

struct SubmitResult {
  SubmitError error = SubmitError::None;
  std::string message;  // empty when ok; else a sentence a user can act on
  bool ok() const { return error == SubmitError::None; }
};

// Waiting: never admitted. Preempted: waiting again after a preemption (holds no blocks).
// Finished: ended, blocks not yet freed (the planner forgets it once they are).
enum class SeqState : uint8_t { Waiting, Prefilling, Decoding, Preempted, Finished };

enum class SeqEnd : uint8_t { Length, Stop, Cancelled, Deadline, Failed };

struct EndedSeq {
  uint64_t seq = 0;
  SeqEnd reason = SeqEnd::Length;
};

struct SeqInfo {
  SeqState state = SeqState::Waiting;
  int32_t worker = -1;             // -1 unless running (or finished while running)
  int32_t prompt_tokens = 0;
  int32_t generated_tokens = 0;
  int32_t computed_tokens = 0;     // positions whose KV is written (or came from the cache)
  int32_t preemptions = 0;
  bool in_flight = false;
};

// One sequence's part of a batch: field for field a Backend SeqStep (gpu/backend.hpp).
struct PlannedStep {
  uint64_t seq = 0;
  std::span<const int32_t> tokens;       // one decode token or a prefill chunk
  int32_t n_past = 0;                    // position of tokens[0]
  std::span<const KvBlockId> block_table;
  bool want_logits = false;              // a decode, or a prompt's last chunk
  bool prefill = false;
};

// What plan() hands out. Owns the tokens and tables its steps point into, so it may be moved
// (to a worker) and outlive the planner's later calls; it cannot be copied.
class Batch {
 public:
  Batch() = default;
  Batch(Batch&&) = default;
  Batch& operator=(Batch&&) = default;
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;

  uint64_t id = 0;                 // pass to complete(); 0 for an empty batch
  int32_t worker = 0;
  std::vector<PlannedStep> steps;  // decodes first, then prefill chunks
  int32_t decode_tokens = 0;
  int32_t prefill_tokens = 0;
  // Sequences this plan ended (deadline, or a KV error at admission): their terminal events.
  std::vector<EndedSeq> ended;

  bool empty() const { return steps.empty(); }
  int32_t tokens() const { return decode_tokens + prefill_tokens; }

 private:
  friend class BatchPlanner;
  std::vector<int32_t> token_storage_;
  std::vector<KvBlockId> table_storage_;
};

// One entry per step of the batch that wanted logits: the token the caller sampled, and
// whether it ends the sequence (EOS, a stop string: the caller decides).
struct SampledToken {
  uint64_t seq = 0;
  int32_t token = 0;
  bool stop = false;
};

struct PlannerStats {
  uint64_t submitted = 0;    // accepted by submit()
  uint64_t rejected = 0;     // refused by submit()
  uint64_t admitted = 0;     // reservations made, re-admissions after preemption included
  uint64_t preemptions = 0;
  uint64_t finished = 0;     // Length or Stop
  uint64_t cancelled = 0;
  uint64_t expired = 0;      // Deadline
  uint64_t failed = 0;
  uint64_t batches = 0;      // non-empty plans
  uint64_t decode_tokens = 0;
  uint64_t prefill_tokens = 0;
  int32_t waiting = 0;       // the queue's length (preempted sequences included)
  int32_t running = 0;       // prefilling or decoding
  int32_t in_flight_batches = 0;
  int32_t peak_waiting = 0;
};

class BatchPlanner {
 public:
  // Validates the config; throws std::invalid_argument.
  BatchPlanner(const PlannerConfig& config, PlannerKv& kv);
  BatchPlanner(const BatchPlanner&) = delete;
  BatchPlanner& operator=(const BatchPlanner&) = delete;

  // Queues a sequence, or refuses it at once (queue full, id in use, empty prompt,
  // max_new_tokens < 1, or prompt + max_new_tokens beyond the whole KV cache).
  SubmitResult submit(SeqRequest request);

  // The next batch for `worker` (throws std::invalid_argument outside [0, workers)). Ends
  // sequences whose deadline is <= now (any worker's; reported in Batch::ended). An empty
  // batch needs no complete().
  Batch plan(int32_t worker, PlannerClock::time_point now);

  // Records batch `batch_id`'s results: sampled has one entry per step that wanted logits,
  // in any order; entries of sequences ended meanwhile may be present or not, and are
  // ignored. Returns the sequences that ended now (Length or Stop). Throws
  // std::invalid_argument, changing nothing, for an unknown batch or a sampled list that
  // does not match the batch (missing, extra or repeated sequences, negative tokens).
  std::vector<EndedSeq> complete(uint64_t batch_id, std::span<const SampledToken> sampled);

  // Ends a sequence in any state but Finished; false for an unknown or finished one.
  // Waiting or preempted: forgotten at once (it holds no blocks). Running: its blocks are
  // freed by the next plan(), or by the first plan() after its in-flight step completes.
  bool cancel(uint64_t seq);

  // Ends (SeqEnd::Failed) every sequence running on `worker`, in a step or not, and forgets
  // its batches in flight; call only when that worker no longer touches their KV. Blocks are
  // freed by the next plan(). Returns the ended ids.
  std::vector<uint64_t> fail_worker(int32_t worker);

  std::optional<SeqInfo> info(uint64_t seq) const;
  // Prompt followed by the generated tokens; empty for an unknown sequence. Valid until the
  // next call that changes the planner.
  std::span<const int32_t> tokens(uint64_t seq) const;
  PlannerStats stats() const;
  // Nothing waiting, running, in flight or left to free.
  bool idle() const;
  const PlannerConfig& config() const { return config_; }

 private:
  struct Seq {
    uint64_t id = 0;
    std::vector<int32_t> tokens;  // prompt, then generated
    int32_t prompt_tokens = 0;
    int32_t max_new_tokens = 0;
    int32_t priority = 0;
    uint64_t arrival = 0;
    PlannerClock::time_point deadline;
    SeqState state = SeqState::Waiting;
    int32_t worker = -1;
    int32_t computed = 0;
    int32_t preemptions = 0;
    std::vector<KvBlockId> table;  // mirror of the KV cache's table
    bool table_stale = false;
    uint64_t in_flight_batch = 0;  // 0: not in a step
    int32_t chunk = 0;             // tokens in that step
    bool chunk_wants_logits = false;
    bool sampled_mark = false;     // scratch of complete()
    int32_t generated() const { return int32_t(tokens.size()) - prompt_tokens; }
  };
  struct InFlight {
    int32_t worker = 0;
    std::vector<Seq*> seqs;
  };

  static bool before(const Seq* a, const Seq* b);
  void insert_ordered(std::vector<Seq*>& list, Seq* seq);
  static void erase_from(std::vector<Seq*>& list, const Seq* seq);
  int32_t blocks_for(int64_t tokens) const;

  void expire(PlannerClock::time_point now, std::vector<EndedSeq>& ended);
  void free_ended();
  void end_running(Seq& seq, SeqEnd reason);
  void count_end(SeqEnd reason);
  void plan_decodes(int32_t worker, std::vector<Seq*>& decodes, std::vector<EndedSeq>& ended,
                    bool& preempted);
  void preempt(Seq& victim);
  Seq* newest_preemptible();
  void admit(int32_t worker, int32_t& budget, int32_t& seq_slots, std::vector<Seq*>& prefills,
             std::vector<EndedSeq>& ended);
  void refresh_tables(std::span<Seq* const> seqs);
  Batch build(int32_t worker, std::span<Seq* const> decodes, std::span<Seq* const> prefills);

  PlannerConfig config_;
  PlannerKv& kv_;
  std::unordered_map<uint64_t, Seq> seqs_;
  std::vector<Seq*> waiting_;  // (priority, arrival) order
  std::vector<Seq*> running_;  // (priority, arrival) order, every worker
  // running_on_[w]: worker w's part of running_, same order, so that planning for one worker
  // touches only its own sequences.
  std::vector<std::vector<Seq*>> running_on_;
  // No live sequence's deadline is earlier (a lower bound: expire() skips its scan before).
  PlannerClock::time_point earliest_deadline_ = PlannerClock::time_point::max();
  std::vector<uint64_t> to_free_;  // ended, holding blocks, in no step
  std::unordered_map<uint64_t, InFlight> in_flight_;
  uint64_t next_arrival_ = 0;
  uint64_t next_batch_ = 1;
  PlannerStats stats_;

  // Scratch reused across plans.
  std::vector<KvAppend> appends_;
  std::vector<KvAppendResult> append_results_;
  std::vector<KvReserve> reserves_;
  std::vector<KvReserveResult> reserve_results_;
  std::vector<uint64_t> table_ids_;
  std::vector<std::vector<KvBlockId>> table_scratch_;
  std::vector<Seq*> sampled_seqs_;
};

std::string_view describe(SeqEnd reason);  // "length", "stop", "cancelled", ...
std::string_view describe(SeqState state);

}  // namespace troupe
