#include "actors/step_runner.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace troupe {

StepRunner::StepRunner(std::unique_ptr<Backend> backend, const Vocab& vocab)
    : backend_(std::move(backend)), vocab_(vocab) {
  if (!backend_) throw std::invalid_argument("StepRunner needs a backend");
}

StepResult StepRunner::run(const Batch& batch, std::span<SeqSampling* const> samplers) {
  return run(batch, samplers, [] {});
}

StepResult StepRunner::run(const Batch& batch, std::span<SeqSampling* const> samplers,
                           FunctionRef<void()> host_work) {
  StepResult result;
  steps_.clear();
  std::size_t wanting = 0;
  for (const PlannedStep& planned : batch.steps) {
    steps_.push_back({.seq_id = planned.seq,
                      .tokens = planned.tokens,
                      .n_past = planned.n_past,
                      .block_table = planned.block_table,
                      .want_logits = planned.want_logits});
    wanting += planned.want_logits;
  }
  if (samplers.size() != wanting) {
    host_work();
    throw std::invalid_argument("StepRunner::run: " + std::to_string(samplers.size()) +
                                " samplers for " + std::to_string(wanting) +
                                " steps that want logits");
  }
  const bool picked =
      wanting > 0 && backend_->picks_greedy() &&
      std::all_of(samplers.begin(), samplers.end(),
                  [](const SeqSampling* seq) { return seq->sampler.plain_greedy(); });
  const std::size_t n_vocab = backend_->desc().n_vocab;
  Backend::StepTimes times;
  if (picked) {
    picked_.resize(wanting);
    times = backend_->step_overlapping(steps_, {.picked = picked_}, host_work);
  } else if (!steps_.empty()) {
    logits_.resize(wanting * n_vocab);
    const Backend::StepOutput rows{.logits = wanting ? logits_.data() : nullptr, .picked = {}};
    times = backend_->step_overlapping(steps_, rows, host_work);
  } else {
    host_work();
    times.started = times.ended = EngineClock::now();
  }
  result.started = times.started;
  result.backend_ended = times.ended;

  result.sampled.reserve(wanting);
  result.outputs.reserve(wanting);
  std::size_t row = 0;
  for (const PlannedStep& planned : batch.steps) {
    if (!planned.want_logits) continue;
    SeqSampling& seq = *samplers[row];
    SampleResult sample;
    if (picked)
      sample.token = picked_[row];
    else
      sample = seq.sampler.sample(std::span<float>(logits_.data() + row * n_vocab, n_vocab),
                                  seq.history);
    seq.history.push_back(sample.token);
    result.sampled.push_back(
        {.seq = planned.seq, .token = sample.token,
         .stop = !seq.ignore_eos && vocab_.is_eog(sample.token)});
    result.outputs.push_back({.seq = planned.seq,
                              .token = sample.token,
                              .logprob = sample.logprob,
                              .top = {sample.top.begin(), sample.top.end()},
                              .at = EngineClock::now()});
    ++row;
  }
  return result;
}

}  // namespace troupe
