#pragma once
// ActorPipeline: runtime `actors` (DESIGN.md, "The flow of one request"): one CAF actor
// system per pipeline, a RequestActor per request, one SchedulerActor running the batch
// planner, `workers` WorkerActors each owning a StepRunner, and the shared KV cache (owned by
// an actor of the same system under --sync actor). make_actors_pipeline (pipeline.hpp)
// returns one; make_actor_pipeline adds what tests and measurements need: the actor system
// (its test coordinator when options.deterministic), the KV cache, the workers, step gaps.
// Production: the scheduler and the workers are detached (own threads; they block in KV calls
// and Backend::step), request actors run on CAF's scheduler (2 threads, polling off). With
// cores to spare (at least workers + 4) workers poll for their next step; without, the
// scheduler yields its core after sending steps (SchedulerActorSetup::yield_after_dispatch).
// Deterministic (EngineOptions::deterministic): the system runs CAF's test coordinator and
// nothing moves until the caller runs it (caf::scheduler::test_coordinator::run()); the
// destructor runs it itself. Only the KV cache's owner (sync actor) keeps its own thread.
// Thread safety: as Pipeline. The destructor ends every live request (Cancelled), stops the
// actors and waits for them.

#include <cstdint>
#include <memory>
#include <vector>

#include "actors/pipeline.hpp"

namespace caf {
class actor;
class actor_system;
}  // namespace caf

namespace troupe {

class ActorPipeline : public Pipeline {
 public:
  virtual caf::actor_system& system() = 0;
  virtual const SharedKvCache& kv_cache() const = 0;
  // Worker i's actor (tests stop one to see its sequences fail).
  virtual caf::actor worker(int32_t index) const = 0;
};

// Backends as make_pipeline_backend makes them (options.wrap_backend injects test backends).
// Throws std::invalid_argument for unusable options.
std::unique_ptr<ActorPipeline> make_actor_pipeline(PipelineParts parts);

}  // namespace troupe
