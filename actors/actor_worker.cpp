#include "actors/actor_worker.hpp"

#include <exception>
#include <string>
#include <thread>
#include <vector>

#include <caf/all.hpp>

#include "actors/actor_messages.hpp"

namespace troupe {
namespace {

using namespace actor_msg;

struct WorkerState {
  std::shared_ptr<WorkerActorSetup> setup;
  std::vector<SeqSampling*> samplers;  // scratch
};

using WorkerSelf = caf::stateful_actor<WorkerState>;

void run_step(WorkerSelf* self, const RunStep& step) {
  WorkerActorSetup& setup = *self->state.setup;
  auto scheduler = caf::actor_cast<caf::actor>(self->current_sender());
  std::vector<SeqSampling*>& samplers = self->state.samplers;
  samplers.clear();
  for (const auto& sampling : step.samplers) samplers.push_back(sampling.get());
  StepResult result;
  setup.meter->starting(EngineClock::now());
  try {
    result = setup.runner->run(*step.batch, samplers);
  } catch (const std::exception& error) {
    setup.meter->step_failed();
    const std::string why = error.what();
    self->send(scheduler, WorkerFailed{setup.index, why, setup.scheduler_meter->sent()});
    self->quit(caf::make_error(caf::sec::runtime_error, why));
    return;
  }
  setup.meter->step(result.started, result.backend_ended, step.back_to_back);
  self->send<caf::message_priority::high>(
      scheduler, StepDone{setup.index, step.batch->id, std::move(result),
                          setup.scheduler_meter->sent()});
  if (setup.detached && setup.poll_for.count() > 0) {
    const auto until = EngineClock::now() + setup.poll_for;
    while (self->mailbox().empty() && EngineClock::now() < until) std::this_thread::yield();
  }
}

caf::behavior worker_actor(WorkerSelf* self, std::shared_ptr<WorkerActorSetup> setup) {
  self->state.setup = std::move(setup);
  return {
      [self](const RunStep& step) { run_step(self, step); },
  };
}

}  // namespace

caf::actor spawn_worker_actor(caf::actor_system& system, WorkerActorSetup setup) {
  auto shared = std::make_shared<WorkerActorSetup>(std::move(setup));
  if (shared->detached) return system.spawn<caf::detached>(worker_actor, std::move(shared));
  return system.spawn(worker_actor, std::move(shared));
}

}  // namespace troupe
