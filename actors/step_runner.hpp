// StepRunner: runs one planned Batch on one Backend and samples, the work of one worker step
// in both runtimes. The samplers travel with the batch: a sequence is in at most one step at
// a time, so its SeqSampling is used by one worker at a time (the hand-off through the
// runtime's message or lock orders the accesses). When the backend picks greedy tokens
// itself (Backend::picks_greedy) and every sampler of the batch is plain greedy
// (Sampler::plain_greedy), the step is Backend::step_greedy and nothing is sampled on the
// worker: the same tokens, without a row of logits per sequence.
// Thread safety: none; one StepRunner per worker thread. Owns its backend.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "actors/request_flow.hpp"
#include "gpu/backend.hpp"
#include "model/batch_planner.hpp"
#include "model/sampler.hpp"
#include "model/vocab.hpp"

namespace troupe {

// One sequence's sampling state: its Sampler (random state included) and the history the
// penalties look at (prompt, then generated tokens, appended by run()).
struct SeqSampling {
  SeqSampling(const SamplingParams& params, std::vector<int32_t> prompt, bool ignore_eos)
      : sampler(params), history(std::move(prompt)), ignore_eos(ignore_eos) {}
  Sampler sampler;
  std::vector<int32_t> history;
  bool ignore_eos = false;
};

struct StepResult {
  std::vector<SampledToken> sampled;   // for BatchPlanner::complete (stop = EOS unless ignored)
  std::vector<SampledOutput> outputs;  // same order, for the requests
  // The backend's step from started to backend_ended (Backend::StepTimes); each output's
  // `at` is stamped after that, once it is sampled.
  EngineClock::time_point started, backend_ended;
};

class StepRunner {
 public:
  // vocab decides EOS; it must outlive the runner (keep the model handle).
  StepRunner(std::unique_ptr<Backend> backend, const Vocab& vocab);
  Backend& backend() { return *backend_; }

  // samplers[i] belongs to the i-th step of batch with want_logits. Throws what the backend
  // throws (the caller treats it as a worker failure).
  StepResult run(const Batch& batch, std::span<SeqSampling* const> samplers);
  // The same, with host work overlapping the step where the backend allows it
  // (Backend::step_overlapping): it runs exactly once, also when run() throws. started and
  // backend_ended are the backend's device work, which host work does not stretch.
  StepResult run(const Batch& batch, std::span<SeqSampling* const> samplers,
                 FunctionRef<void()> host_work);

 private:
  std::unique_ptr<Backend> backend_;
  const Vocab& vocab_;
  std::vector<SeqStep> steps_;
  std::vector<float> logits_;
  std::vector<int32_t> picked_;
};

}  // namespace troupe
