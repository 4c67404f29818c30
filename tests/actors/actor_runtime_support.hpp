// Helpers of the actors runtime tests: a tiny generated model (cpu backend), a backend
// wrapper that traces every step with its worker and can fail or slow down, and the greedy
// tokens of one sequence run alone on its own backend (the reference the runtime's outputs
// must equal). Header-only. StepTrace is thread-safe.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "actors/engine.hpp"
#include "actors/pipeline.hpp"
#include "gpu/backend.hpp"
#include "gpu/kv_pool.hpp"
#include "model/model_state.hpp"
#include "tests/util/scratch_file.hpp"
#include "tests/actors/runtime_test_support.hpp"
#include "tests/util/tiny_model.hpp"

namespace troupe::test {

// The llama-spm-f32 tiny model, loaded from a scratch file that lives as long as this.
struct TinyLoadedModel {
  TinyLoadedModel()
      : scratch(tiny_model_bytes(tiny_model_preset("llama-spm-f32"))),
        model(LoadedModel::open(scratch.path())) {}
  ScratchFile scratch;
  std::shared_ptr<const LoadedModel> model;
};

struct TracedEntry {
  int32_t worker = 0;
  uint64_t seq = 0;
  int32_t n_past = 0;
  int32_t tokens = 0;
  bool want_logits = false;
};

// Every step of every worker, in the order they ran. Thread-safe.
class StepTrace {
 public:
  void add(std::vector<TracedEntry> step) {
    std::lock_guard hold(mutex_);
    steps_.push_back(std::move(step));
  }
  std::vector<std::vector<TracedEntry>> steps() const {
    std::lock_guard hold(mutex_);
    return steps_;
  }
  size_t size() const {
    std::lock_guard hold(mutex_);
    return steps_.size();
  }
  // Entries of `seq`, in order.
  std::vector<TracedEntry> of(uint64_t seq) const {
    std::lock_guard hold(mutex_);
    std::vector<TracedEntry> found;
    for (const auto& step : steps_)
      for (const TracedEntry& entry : step)
        if (entry.seq == seq) found.push_back(entry);
    return found;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::vector<TracedEntry>> steps_;
};

// What a TracingBackend does besides stepping. fail_from: its steps from that number on
// (0-based) throw; delay: each step first sleeps this long. failed_at: when it first threw.
struct StepScript {
  int fail_from = -1;
  std::chrono::microseconds delay{0};
  std::atomic<int64_t> failed_at_ns{0};
};

// Traces each step into a StepTrace, then runs it on the wrapped backend (one step at a time,
// as every backend).
class TracingBackend final : public Backend {
 public:
  TracingBackend(int32_t worker, std::unique_ptr<Backend> inner, std::shared_ptr<StepTrace> log,
                  std::shared_ptr<StepScript> script)
      : worker_(worker), inner_(std::move(inner)), log_(std::move(log)),
        script_(std::move(script)) {}
  const ModelDesc& desc() const override { return inner_->desc(); }
  std::string name() const override { return inner_->name(); }
  KvPool& kv() override { return inner_->kv(); }
  int max_batch_tokens() const override { return inner_->max_batch_tokens(); }
  void step(std::span<const SeqStep> batch, float* logits) override {
    if (script_ && script_->delay.count() > 0) std::this_thread::sleep_for(script_->delay);
    if (script_ && script_->fail_from >= 0 && steps_ >= script_->fail_from) {
      script_->failed_at_ns.store(
          std::chrono::duration_cast<std::chrono::nanoseconds>(
              EngineClock::now().time_since_epoch()).count());
      throw std::runtime_error("injected backend failure");
    }
    ++steps_;
    std::vector<TracedEntry> entries;
    for (const SeqStep& entry : batch)
      entries.push_back({worker_, entry.seq_id, entry.n_past, int32_t(entry.tokens.size()),
                         entry.want_logits});
    log_->add(std::move(entries));
    inner_->step(batch, logits);
  }

 private:
  int32_t worker_;
  std::unique_ptr<Backend> inner_;
  std::shared_ptr<StepTrace> log_;
  std::shared_ptr<StepScript> script_;
  int steps_ = 0;
};

// Options for the tiny model on the cpu backend (1 thread per worker), small KV blocks so
// sequences span several, and no deadline pressure.
inline EngineOptions tiny_options(SyncMode sync, int32_t workers) {
  EngineOptions options;
  options.runtime = Runtime::Actors;
  options.sync = sync;
  options.backend.name = "cpu";
  options.backend.threads = 1;
  options.backend.kv_block_tokens = 4;
  options.backend.kv_blocks = 96;
  options.workers = workers;
  options.planner.max_batch_tokens = 8;
  options.planner.max_seqs = 4;
  options.planner.max_queued = 16;
  options.context_tokens = 256;
  return options;
}

// Steps of each worker go through a TracingBackend logging into `log`; worker i follows
// scripts[i] when there is one.
inline void trace_steps(EngineOptions& options, std::shared_ptr<StepTrace> log,
                      std::vector<std::shared_ptr<StepScript>> scripts = {}) {
  options.wrap_backend = [log, scripts](int32_t worker, std::unique_ptr<Backend> inner) {
    std::shared_ptr<StepScript> script =
        size_t(worker) < scripts.size() ? scripts[size_t(worker)] : nullptr;
    return std::unique_ptr<Backend>(
        std::make_unique<TracingBackend>(worker, std::move(inner), log, script));
  };
}

inline GenerateRequest greedy_request(std::vector<int32_t> prompt, int32_t max_tokens) {
  GenerateRequest request;
  request.prompt_tokens = std::move(prompt);
  request.max_tokens = max_tokens;
  request.ignore_eos = true;
  request.sampling.temperature = 0.0f;
  return request;
}

// Prompt tokens 3 + (seed * 7 + i * 5) % 200: plain vocabulary ids of the tiny model.
inline std::vector<int32_t> tiny_prompt(int32_t length, int32_t seed) {
  std::vector<int32_t> prompt;
  for (int32_t i = 0; i < length; ++i) prompt.push_back(3 + (seed * 7 + i * 5) % 200);
  return prompt;
}

// The greedy continuation of `prompt` by the tiny model run alone on a fresh cpu backend
// (solo_greedy of runtime_test_support.hpp).
inline std::vector<int32_t> greedy_alone(const LoadedModel& model, const std::vector<int32_t>& prompt,
                                         int32_t n_new) {
  BackendOptions options;
  options.threads = 1;
  options.kv_block_tokens = 4;
  options.kv_blocks = 96;
  std::unique_ptr<Backend> backend = make_backend(model.desc(), options);
  return solo_greedy(*backend, prompt, n_new);
}

}  // namespace troupe::test
