// Pipeline: one model generation served by one runtime: the shared KV cache (through the
// sync layer), one BatchPlanner, `workers` StepRunners and the hand-offs between them. The
// Engine (engine.cpp) routes requests to the current pipeline and retires old ones when they
// are idle. Internal to actors/.
// Thread safety: every member may be called from any thread.
#pragma once

#include <memory>

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
  // Cancels every live request; returns how many.
  virtual int cancel_all() = 0;
};

struct PipelineParts {
  std::shared_ptr<const LoadedModel> model;   // tokenizer, desc (sim: the profile's)
  EngineOptions options;
};

std::unique_ptr<Pipeline> make_threads_pipeline(PipelineParts parts);
std::unique_ptr<Pipeline> make_actors_pipeline(PipelineParts parts);

}  // namespace troupe
