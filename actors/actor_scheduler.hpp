#pragma once
// SchedulerActor: runs the BatchPlanner (over SharedPlannerKv) for runtime `actors`.
// - SubmitSeq: the planner's submit (refusals go back as SeqRejected at once).
// - Whenever a worker is idle and something may have changed (a submit, a drop, a step done,
//   a worker failed) it plans for that worker and sends RunStep: at most one step in flight
//   per worker; a sequence stays on the worker that admitted it. The samplers of the
//   sequences that want logits travel with the batch.
// - StepDone: BatchPlanner::complete, then each sequence's tokens go to its RequestActor
//   within the credit window (actor_messages.hpp); ends follow the last tokens.
// - A worker that reports a failure (WorkerFailed) or dies (it is monitored) has its
//   sequences failed (BatchPlanner::fail_worker, ErrorKind::WorkerFailed); the others keep
//   serving. With no worker left every sequence fails and submits are refused.
// - A KV call that throws leaves the planner unusable: every sequence fails (Internal) and
//   later submits are refused.
// Publishes the planner's statistics in a SchedulerSnapshot after every message.
// Spawned detached (its own thread: it blocks in calls to the shared KV cache) unless
// deterministic (then CAF's test coordinator runs it).
// yield_after_dispatch: after sending steps, the scheduler yields its core before it routes
// the tokens. Where cores are scarce (fewer than workers + 4), a worker it has just woken
// otherwise waits behind that routing for a core (the README has the measured gaps).

#include <memory>
#include <mutex>
#include <vector>

#include <caf/fwd.hpp>

#include "actors/mailbox_meter.hpp"
#include "actors/shared_kv_cache.hpp"
#include "actors/sharing_granularity.hpp"
#include "model/batch_planner.hpp"

namespace troupe {

// The scheduler's state as other threads may read it. Thread-safe.
class SchedulerSnapshot {
 public:
  void publish(const PlannerStats& planner);
  PlannerStats planner() const;

 private:
  mutable std::mutex mutex_;
  PlannerStats planner_;
};

struct SchedulerActorSetup {
  PlannerConfig planner;             // workers = workers.size()
  SharedKvCache* kv_cache = nullptr; // must outlive the actor
  KvGranularity kv_granularity = KvGranularity::Step;
  std::vector<caf::actor> workers;
  std::shared_ptr<MailboxMeter> meter;
  std::shared_ptr<SchedulerSnapshot> snapshot;
  bool detached = true;
  bool yield_after_dispatch = false;
};

caf::actor spawn_scheduler_actor(caf::actor_system& system, SchedulerActorSetup setup);

}  // namespace troupe
