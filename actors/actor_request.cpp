#include "actors/actor_request.hpp"

#include <chrono>
#include <exception>
#include <string>
#include <utility>
#include <variant>

#include <caf/all.hpp>

#include "actors/actor_messages.hpp"
#include "actors/request_flow.hpp"

namespace troupe {
namespace {

using namespace actor_msg;

// The request's side that outlives its actor's behavior: the terminal event is sent exactly
// once, by the actor or, if it dies first, by its exit functor.
struct RequestCore {
  explicit RequestCore(RequestActorSetup setup) : setup(std::move(setup)) {}

  void end(EndEvent event) {
    ended = true;
    if (event.model_generation == 0) event.model_generation = setup.model->generation();
    setup.registry->record_end(event);
    setup.sink->on_end(std::move(event));
  }

  RequestActorSetup setup;
  std::unique_ptr<RequestFlow> flow;
  bool ended = false;
  bool submitted = false;
  bool expiring = false;  // the deadline passed; the scheduler was asked to end it
  int32_t token_messages_unacked = 0;
};

struct RequestState {
  std::shared_ptr<RequestCore> core;
};

using RequestSelf = caf::stateful_actor<RequestState>;

void drop_sequence(RequestCore& core) {
  if (!core.submitted) return;
  core.submitted = false;
  caf::anon_send(core.setup.scheduler,
                 DropSeq{core.setup.id, core.setup.scheduler_meter->sent()});
}

// Ends the request through its flow (chunk held back, usage, timings) and stops the actor.
void finish(RequestSelf* self, EndKind kind, ErrorKind error = ErrorKind::None,
            std::string message = {}, std::string param = {}) {
  RequestCore& core = *self->state.core;
  if (core.ended) return;
  auto [chunk, end] = core.flow->finish(kind, EngineClock::now(), error, std::move(message));
  if (chunk) core.setup.sink->on_chunk(std::move(*chunk));
  if (!param.empty()) end.param = std::move(param);
  drop_sequence(core);
  core.end(std::move(end));
  self->quit();
}

void on_tokens(RequestSelf* self, SeqTokens& tokens) {
  RequestCore& core = *self->state.core;
  if (++core.token_messages_unacked == kTokenAckEvery && core.submitted) {
    caf::anon_send(core.setup.scheduler, AckTokens{core.setup.id, core.token_messages_unacked,
                                                   core.setup.scheduler_meter->sent()});
    core.token_messages_unacked = 0;
  }
  for (const SampledOutput& output : tokens.outputs) {
    RequestFlow::Step step = core.flow->on_token(output);
    if (step.chunk) core.setup.sink->on_chunk(std::move(*step.chunk));
    if (step.done) {
      finish(self, EndKind::Finished);
      return;
    }
  }
}

void on_ended(RequestSelf* self, const SeqEnded& ended) {
  self->state.core->submitted = false;  // the scheduler has forgotten the sequence
  switch (ended.reason) {
    case SeqEnd::Length:
    case SeqEnd::Stop:
      finish(self, EndKind::Finished);
      return;
    case SeqEnd::Cancelled:
      finish(self, EndKind::Cancelled);
      return;
    case SeqEnd::Deadline:
      finish(self, EndKind::Error, ErrorKind::Timeout,
             "the request did not finish before its deadline");
      return;
    case SeqEnd::Failed:
      finish(self, EndKind::Error, ended.error, ended.message);
      return;
  }
}

// The scheduler ends the sequence and answers once its blocks are free; should it not answer
// within kExpireGrace, the request ends on its own.
constexpr std::chrono::seconds kExpireGrace{1};

void on_deadline(RequestSelf* self) {
  RequestCore& core = *self->state.core;
  if (core.submitted && !core.expiring) {
    core.expiring = true;
    caf::anon_send(core.setup.scheduler,
                   ExpireSeq{core.setup.id, core.setup.scheduler_meter->sent()});
    self->delayed_send(self, kExpireGrace, RequestDeadline{});
    return;
  }
  finish(self, EndKind::Error, ErrorKind::Timeout,
         "the request did not finish before its deadline");
}

std::string describe_exception(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

caf::behavior request_actor(RequestSelf* self, std::shared_ptr<RequestActorSetup> setup) {
  auto core = std::make_shared<RequestCore>(std::move(*setup));
  self->state.core = core;
  self->attach_functor([core] {
    if (!core->ended) {
      drop_sequence(*core);
      EndEvent end;
      end.kind = EndKind::Error;
      end.error = ErrorKind::Internal;
      end.message = "the request's actor stopped before the request ended";
      core->end(std::move(end));
    }
    core->setup.registry->remove(core->setup.id);
  });
  self->set_exception_handler([self](std::exception_ptr& error) -> caf::error {
    RequestCore& core = *self->state.core;
    if (!core.ended && core.flow) {
      try {
        finish(self, EndKind::Error, ErrorKind::Internal,
               "internal error while serving the request: " + describe_exception(error));
      } catch (...) {
      }
    }
    return caf::sec::runtime_error;
  });

  const GenerateRequest& request = core->setup.request;
  auto started = RequestFlow::start(request, core->setup.model, *core->setup.chat_template,
                                    core->setup.context_tokens);
  if (auto* refused = std::get_if<EndEvent>(&started)) {
    core->end(std::move(*refused));
    self->quit();
    return {};
  }
  core->flow = std::move(std::get<std::unique_ptr<RequestFlow>>(started));
  RequestFlow& flow = *core->flow;

  SeqRequest seq{.seq = core->setup.id,
                 .prompt = flow.prompt(),
                 .max_new_tokens = flow.max_new_tokens(),
                 .priority = request.priority,
                 .deadline = flow.deadline()};
  auto sampling = std::make_shared<SeqSampling>(flow.sampling(), flow.prompt(), flow.ignore_eos());
  self->send(core->setup.scheduler,
             SubmitSeq{std::move(seq), std::move(sampling), caf::actor{self},
                       core->setup.scheduler_meter->sent()});
  core->submitted = true;
  const auto now = EngineClock::now();
  if (flow.deadline() != EngineClock::time_point::max())
    self->delayed_send(self, flow.deadline() > now ? flow.deadline() - now : EngineClock::duration{},
                       RequestDeadline{});

  return {
      [self](const SeqAdmitted& admitted) {
        self->state.core->flow->on_queued(admitted.at, admitted.cached_tokens);
      },
      [self](SeqTokens& tokens) { on_tokens(self, tokens); },
      [self](const SeqEnded& ended) { on_ended(self, ended); },
      [self](const SeqRejected& rejected) {
        self->state.core->submitted = false;
        finish(self, EndKind::Error, rejected.error, rejected.message, rejected.param);
      },
      [self](CancelRequest) { finish(self, EndKind::Cancelled); },
      [self](RequestDeadline) { on_deadline(self); },
  };
}

}  // namespace

caf::actor spawn_request_actor(caf::actor_system& system, RequestActorSetup setup) {
  return system.spawn(request_actor, std::make_shared<RequestActorSetup>(std::move(setup)));
}

}  // namespace troupe
