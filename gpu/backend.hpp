// The Backend interface: one forward step for a batch of sequences over paged KV memory.
// Each sequence brings its new tokens (a prefill chunk or one decode token), the position of
// the first of them and its block table; the backend writes their K/V into its KvPool through
// that table and returns the logits of each sequence's last token when asked.
// Thread safety: one step at a time per backend (step() is not reentrant; callers serialise
// it); desc() and name() may be read from any thread. kv() hands out the pool for the caller
// to manage between steps, never during one.
// Ownership: the backend borrows the model (the ModelDesc and the mapped file it points
// into), which must outlive it; it owns its KvPool, its threads and its scratch memory.
// Units: tokens are vocabulary ids, positions count tokens from 0, logits are raw f32 scores.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "locks/function_ref.hpp"
#include "model/model_desc.hpp"

namespace troupe {

class KvPool;

struct SeqStep {
  uint64_t seq_id = 0;                   // the caller's id; for error messages only
  std::span<const int32_t> tokens;       // new tokens: a prefill chunk or one decode token
  int32_t n_past = 0;                    // position of tokens[0]; K/V of [0, n_past) exist
  std::span<const int32_t> block_table;  // physical KV blocks covering [0, n_past + tokens.size())
  bool want_logits = false;              // logits of the last of tokens
};

struct BackendOptions {
  std::string name = "cpu";
  int threads = 1;               // compute threads (--backend-threads); 0: all hardware threads
  int max_batch_tokens = 512;    // most tokens (all sequences together) one step may carry
  int kv_block_tokens = 16;      // tokens per KV block
  int64_t kv_blocks = 0;         // KV blocks in the pool; 0: as many as kv_bytes allows
  uint64_t kv_bytes = 256ull << 20;  // KV budget in bytes when kv_blocks is 0
  // When set (cpu): the backend uses this pool instead of making its own, so several
  // backends of one model (one per worker) share one KV memory and one set of block ids;
  // its shape must be the model's with kv_block_tokens (kv_blocks / kv_bytes are then
  // ignored). Steps of different backends may run at once: they write disjoint cells
  // (the KV-cache core gives each sequence its own blocks) and only read shared ones.
  std::shared_ptr<KvPool> kv_pool;
};

// The pool a cpu backend for `desc` would make from options (kv_blocks, else kv_bytes);
// throws std::invalid_argument when the budget is below one block.
std::shared_ptr<KvPool> make_kv_pool(const ModelDesc& desc, const BackendOptions& options);

class Backend {
 public:
  virtual ~Backend() = default;

  virtual const ModelDesc& desc() const = 0;
  virtual std::string name() const = 0;
  virtual KvPool& kv() = 0;
  virtual int max_batch_tokens() const = 0;

  // Runs one step. logits receives one row of desc().n_vocab floats per entry with
  // want_logits, in batch order (may be null when none wants logits). Entries may share
  // blocks they only read, but no two may write the same KV cell (position of a block). Throws std::invalid_argument (naming the sequence) for a
  // malformed batch: no tokens, too many tokens in all, a token outside the vocabulary, a
  // negative n_past, or a block table too short or naming a block outside the pool. A batch
  // that throws has changed no KV memory.
  virtual void step(std::span<const SeqStep> batch, float* logits) = 0;

  // Greedy picking inside the step, as a GPU server picks on the device (no logits leave
  // it). A backend that can returns true from picks_greedy(); its step_greedy() runs the
  // step exactly as step() would, validating and throwing alike, and writes to tokens[i],
  // for the i-th entry with want_logits, the id of the highest logit of the row step() would
  // have written (the lowest id on ties). tokens.size() must be the number of such entries
  // (std::invalid_argument otherwise). The default picks_greedy() is false, and the default
  // step_greedy() throws std::logic_error: callers ask first.
  virtual bool picks_greedy() const { return false; }
  virtual void step_greedy(std::span<const SeqStep> batch, std::span<int32_t> tokens);

  // Where a step writes: picked non-empty picks greedy tokens (step_greedy(), into picked),
  // else logits receives the rows (step()).
  struct StepOutput {
    float* logits = nullptr;
    std::span<int32_t> picked;
  };
  // One step, as step() or step_greedy() (validating and throwing alike), with host work that
  // may overlap it: the caller's delivery of the previous step's tokens. A backend whose step
  // waits for a device (sim) runs host_work once the device work is under way, then waits for
  // it; the default runs host_work first, then the step. host_work runs exactly once, also
  // when the step throws; what it throws propagates. Returns when the step's device work
  // started and ended: the default's starts after host_work; an overlapping backend's ends at
  // the device's end even when host_work ran past it (that time was the host's; the device
  // sat idle).
  struct StepTimes {
    std::chrono::steady_clock::time_point started, ended;
  };
  virtual StepTimes step_overlapping(std::span<const SeqStep> batch, StepOutput out,
                                     FunctionRef<void()> host_work);
};

// The backend named options.name ("cpu"). Throws std::invalid_argument for an unknown name
// or unusable options (the message lists what is accepted).
std::unique_ptr<Backend> make_backend(const ModelDesc& desc, const BackendOptions& options);

// The backend a name stands for: "auto" is "cuda" when a CUDA device can run it, else
// "cpu", and then *fallback (when given) receives the reason, for the caller's log line;
// every other name is returned unchanged (make_backend judges it).
std::string resolve_backend_name(const std::string& name, std::string* fallback = nullptr);

// The checks step() promises, shared by every backend; throws as step() documents.
void validate_batch(std::span<const SeqStep> batch, const ModelDesc& desc, const KvPool& kv,
                    int max_batch_tokens);
// step_greedy()'s own check: throws std::invalid_argument unless tokens has one entry per
// entry of the batch with want_logits. Returns that number.
size_t validate_greedy_room(std::span<const SeqStep> batch, std::span<const int32_t> tokens);

}  // namespace troupe
