#pragma once
// ThreadsPipeline: runtime `threads` (DESIGN.md): `workers` OS threads, each with its own
// StepRunner (cpu backends share one KvPool), driving one BatchPlanner over the shared KV
// cache (SharedPlannerKv, so --sync and --kv-granularity apply to the KV work too). The
// planner and the request table are guarded by one lock of the --sync type (waits:
// ParkingCondvar for parking, std::condition_variable for std, std::condition_variable_any
// for the others); each request's token channel by a lock of the same type.
// A worker, in one hold of the planner lock, completes its last step and plans its next;
// outside it, it hands the sampled tokens to the requests' channels and runs the step.
// One delivery thread runs each request's RequestFlow (text, stop strings, limits) and calls
// its sink, so on_chunk/on_end of a request never run concurrently; a stop string found there
// ends the sequence through planner.cancel. A worker whose step throws fails its sequences
// (WorkerFailed) and retires; the others keep serving (when none is left, every request
// fails and new ones are refused).
// make_threads_pipeline (pipeline.hpp) returns one; make_threads_pipeline_with adds what
// tests and measurements need. Thread safety: as Pipeline. The destructor cancels what is
// live, waits for the end events, then stops and joins its threads.

#include <memory>
#include <vector>

#include "actors/pipeline.hpp"

namespace troupe {

class ThreadsPipeline : public Pipeline {
 public:
  virtual const SharedKvCache& kv_cache() const = 0;
};

// Throws std::invalid_argument for unusable options (sync actor among them).
std::unique_ptr<ThreadsPipeline> make_threads_pipeline_with(PipelineParts parts);

}  // namespace troupe
