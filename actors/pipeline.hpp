// Pipeline: one model generation served by one runtime: the shared KV cache (through the
// sync layer), one BatchPlanner, `workers` StepRunners and the hand-offs between them. The
// Engine (engine.cpp) routes requests to the current pipeline and retires old ones when they
// are idle. Internal to actors/.
// Thread safety: every member may be called from any thread.
#pragma once

#include <memory>
#include <span>
#include <string>

#include "actors/engine.hpp"
#include "actors/shared_kv_cache.hpp"

namespace troupe {

class Pipeline {
 public:
  virtual ~Pipeline() = default;  // every request still live gets on_end(Cancelled) first
  virtual void submit(RequestId id, GenerateRequest request,
                      std::shared_ptr<ResponseSink> sink) = 0;
  virtual void cancel(RequestId id) = 0;
  // Requests submitted and not yet ended.
  virtual int32_t live_requests() const = 0;
  virtual EngineStats stats() const = 0;
  // Gaps between back-to-back steps of every worker: from the end of one StepRunner::run
  // (forward pass and sampling) to the start of the next, i.e. the runtime's hand-offs,
  // locking and planning (a worker that waited for work in between records none), since the
  // last call, in seconds (each worker keeps its last 8192).
  virtual std::vector<double> take_step_gaps() = 0;
  // Cancels every live request; returns how many.
  virtual int cancel_all() = 0;
};

struct PipelineParts {
  std::shared_ptr<const LoadedModel> model;   // tokenizer, desc (sim: the profile's, with
                                              // the tokenizer's n_vocab)
  EngineOptions options;                      // context_tokens resolved (> 0) by the engine
};

// The pieces every runtime builds the same way (engine.cpp):
// the KV pool the cpu backends of one pipeline share (nullptr for other backends);
std::shared_ptr<KvPool> make_pipeline_kv_pool(const PipelineParts& parts);
// worker `worker`'s backend: sim (options.sim_profile with the model's n_vocab,
// sim_time_scale), else make_backend with max_batch_tokens raised to the planner's and, for
// cpu, the shared pool; then options.wrap_backend when set. Throws std::invalid_argument.
std::unique_ptr<Backend> make_pipeline_backend(const PipelineParts& parts, int32_t worker,
                                               const std::shared_ptr<KvPool>& shared_pool);
// options.chat_template by name, else the one the model ships (detected).
ChatTemplate pipeline_chat_template(const PipelineParts& parts);

// What a pipeline reports of its backends (one per worker, all of one kind): the first one's
// name and KV bytes (the simulated bytes for sim), the device memory all of them allocated,
// and the KvCacheConfig that sizes the shared KV cache by the first one's pool.
struct PipelineBackends {
  std::string name;
  uint64_t kv_bytes = 0;
  uint64_t gpu_bytes = 0;
  KvCacheConfig kv_config;
};
PipelineBackends describe_pipeline_backends(std::span<Backend* const> backends,
                                            const EngineOptions& options);

std::unique_ptr<Pipeline> make_threads_pipeline(PipelineParts parts);
std::unique_ptr<Pipeline> make_actors_pipeline(PipelineParts parts);

}  // namespace troupe
