// The `sim` backend: a Backend that does no math. step() validates the batch like every
// backend, writes deterministic logits and waits out the roofline time of the batch under a
// SimProfile (gpu/sim_profile.hpp), scaled by time_scale (0: no waiting, for tests).
// Logits: for each entry with want_logits, whose last token t sits at position p, the row is 0
// everywhere but 16 at next_token(p, t): greedy sampling follows a fixed token function of
// (position, previous token), so a sequence's tokens do not depend on batching, chunking or
// preemption. Tokens below 3 (llama's specials) are never favoured. step_greedy() picks
// that token without writing logits (picks_greedy() is true), as a GPU would on the device:
// a greedy serve run then spends no CPU on 32,000-float rows the simulated device never
// copies out.
// KV: accounting only. kv() is a KvPool of the simulated number of blocks (options.kv_blocks,
// else options.kv_bytes divided by the profile's bytes per block) but of a 1-layer, 1-head,
// 1-dim shape: block ids, block_tokens and n_blocks() are what a caller sizes its KV cache by,
// while the pool takes 4 bytes per position, not the simulated model's 128 KiB. Nothing is
// stored in it. simulated_kv_bytes() gives the budget being pretended.
// Waiting: until a steady deadline fixed when step() starts (so writing logits is absorbed):
// sleep_until 100 us before it (about one wake-up's latency), then a yielding spin. The
// waiting thread's timer slack is set to 1 us (prctl PR_SET_TIMERSLACK, once per thread; it
// stays so for that thread's later sleeps), so the kernel does not defer its wake-up. Host work
// given to step_overlapping() runs before that wait, as a GPU server's host runs while its
// device computes. The step's device time (step_overlapping's StepTimes) ends at the deadline
// however late the calling thread gets back: a late wake-up is a gap in which the simulated
// device sits idle, as a real one does until its host notices and launches the next step.
// Thread safety and ownership as Backend; it owns its pool and needs no model file (the
// ModelDesc is synthetic; make_backend's desc argument is not used by it).
#pragma once

#include <cstdint>
#include <memory>

#include "gpu/backend.hpp"
#include "gpu/kv_pool.hpp"
#include "gpu/sim_profile.hpp"

namespace troupe {

class SimBackend final : public Backend {
 public:
  // Throws std::invalid_argument for an unusable profile or options (max_batch_tokens < 1,
  // kv_blocks < 0, a KV budget below one block, time_scale negative or not finite).
  SimBackend(const SimProfile& profile, const BackendOptions& options, double time_scale = 1.0);

  const ModelDesc& desc() const override { return desc_; }
  std::string name() const override;  // "sim (simulated <profile>)"
  KvPool& kv() override { return kv_; }
  int max_batch_tokens() const override { return max_batch_tokens_; }
  void step(std::span<const SeqStep> batch, float* logits) override;
  bool picks_greedy() const override { return true; }
  void step_greedy(std::span<const SeqStep> batch, std::span<int32_t> tokens) override;
  // Runs host_work after writing the step's output and before waiting out its time; the
  // step's end is its deadline (time_scale 0: when it returned).
  StepTimes step_overlapping(std::span<const SeqStep> batch, StepOutput out,
                             FunctionRef<void()> host_work) override;

  // Roofline seconds of a batch (unscaled), without running it.
  double step_seconds(std::span<const SeqStep> batch) const;
  // Of the last step() (unscaled); 0 before the first. Read between steps.
  double last_step_seconds() const { return last_step_seconds_; }
  const SimProfile& profile() const { return profile_; }
  double time_scale() const { return time_scale_; }
  double simulated_kv_bytes() const;

  // The token the logits favour after `token` at `position`: 3 + splitmix64(position << 32 |
  // token) % (n_vocab - 3) (splitmix64: one step of the generator from that seed), or
  // splitmix64(...) % n_vocab for a vocabulary of 3 or fewer.
  static int32_t next_token(int32_t position, int32_t token, uint32_t n_vocab);

 private:
  SimProfile profile_;
  ModelDesc desc_;
  int max_batch_tokens_;
  double time_scale_;
  KvPool kv_;
  double last_step_seconds_ = 0.0;

  // One step: the checks (step_greedy()'s too when pick; a refused batch still runs
  // host_work before the exception leaves), the wanted rows' tokens into out (picked when
  // pick, else logits rows), host_work, then the wait; returns the step's times (see
  // step_overlapping).
  StepTimes simulate(std::span<const SeqStep> batch, StepOutput out, bool pick,
                     FunctionRef<void()> host_work);
};

// A SimBackend of the 7b-h200 profile, waiting in real time; what make_backend("sim") returns.
std::unique_ptr<Backend> make_sim_backend(const BackendOptions& options);

}  // namespace troupe
