#pragma once
// WorkerActor: one backend of runtime `actors`. Each RunStep runs StepRunner::run (forward
// pass, sampling) and answers StepDone (tokens, logprobs, timings) to its sender; the
// scheduler sends it at most one step at a time. An exception in a step is a failure: the
// worker reports WorkerFailed and stops (its exit reason says why).
// Spawned detached (its own thread: it blocks in Backend::step) unless deterministic (then
// CAF's test coordinator runs it). Owns its StepRunner; the model the runner borrows must
// outlive the actor.

#include <cstdint>
#include <memory>

#include <caf/fwd.hpp>

#include "actors/actor_meters.hpp"
#include "actors/step_runner.hpp"

namespace troupe {

struct WorkerActorSetup {
  int32_t index = 0;
  std::shared_ptr<StepRunner> runner;
  std::shared_ptr<WorkerMeter> meter;
  std::shared_ptr<MailboxMeter> scheduler_meter;
  bool detached = true;
};

caf::actor spawn_worker_actor(caf::actor_system& system, WorkerActorSetup setup);

}  // namespace troupe
