#pragma once
// RequestActor: one request of runtime `actors`. It starts a RequestFlow (a client's mistake
// ends the request at once), submits the sequence to the scheduler, feeds the tokens it
// receives to the flow and pushes the chunks to the sink, acknowledges token messages (credit,
// see actor_messages.hpp), and ends with exactly one on_end: finished (EOS, stop string,
// max_tokens), cancelled (CancelRequest), timed out (its deadline, or the planner's: the
// scheduler ends the sequence and answers once its blocks are free, within a second or the
// request ends on its own), or an error from the scheduler (rejected, worker failed). Ending
// on its own side it tells the scheduler to drop the sequence. Should the actor die otherwise (an exception in a handler),
// the request still ends (Internal) and leaves the registry.
// Runs on the actor system's scheduler (the test coordinator in deterministic mode).

#include <memory>

#include <caf/fwd.hpp>

#include "actors/mailbox_meter.hpp"
#include "actors/actor_request_registry.hpp"
#include "actors/engine.hpp"

namespace troupe {

struct RequestActorSetup {
  RequestId id = 0;                       // also the planner's sequence id
  GenerateRequest request;                // timeout filled in by the pipeline
  std::shared_ptr<ResponseSink> sink;
  std::shared_ptr<const LoadedModel> model;
  std::shared_ptr<const ChatTemplate> chat_template;
  int32_t context_tokens = 0;
  caf::actor scheduler;
  std::shared_ptr<RequestRegistry> registry;
  std::shared_ptr<MailboxMeter> scheduler_meter;
};

caf::actor spawn_request_actor(caf::actor_system& system, RequestActorSetup setup);

}  // namespace troupe
