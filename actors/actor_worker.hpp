#pragma once
// WorkerActor: one backend of runtime `actors`. Each RunStep runs StepRunner::run (forward
// pass, sampling) and answers StepDone (tokens, logprobs, timings) to its sender, with high
// priority (it overtakes the token acknowledgements queued there: the next step is planned
// sooner); the scheduler sends it at most one step at a time. Then it may poll its mailbox
// for a while (poll_for) so that the next step finds it awake. An exception in a step is a failure: the
// worker reports WorkerFailed and stops (its exit reason says why).
// Spawned detached (its own thread: it blocks in Backend::step) unless deterministic (then
// CAF's test coordinator runs it). Owns its StepRunner; the model the runner borrows must
// outlive the actor.

#include <chrono>
#include <cstdint>
#include <memory>

#include <caf/fwd.hpp>

#include "actors/mailbox_meter.hpp"
#include "actors/worker_meter.hpp"
#include "actors/step_runner.hpp"

namespace troupe {

struct WorkerActorSetup {
  int32_t index = 0;
  std::shared_ptr<StepRunner> runner;
  std::shared_ptr<WorkerMeter> meter;
  std::shared_ptr<MailboxMeter> scheduler_meter;
  bool detached = true;
  // After each step, how long a detached worker polls its mailbox for the next step before
  // its thread goes to sleep (a wake-up costs tens of microseconds). 0: never polls.
  std::chrono::microseconds poll_for{0};
};

caf::actor spawn_worker_actor(caf::actor_system& system, WorkerActorSetup setup);

}  // namespace troupe
