#pragma once
// The messages between the actors of runtime `actors` (request, scheduler and worker actors).
// Local only, never serialized: each type is whitelisted as an unsafe message type. Messages
// to the scheduler carry the time they were sent, for its mailbox meter. Internal to actors/.
//
// Who sends what:
//   request   -> scheduler  SubmitSeq (once), AckTokens, ExpireSeq (once), DropSeq (once)
//   scheduler -> worker     RunStep: at most one in flight per worker
//   worker    -> scheduler  StepDone (high priority) or WorkerFailed: one per RunStep
//   scheduler -> request    SeqAdmitted, SeqTokens (at most kTokenWindow unacknowledged),
//                           SeqEnded or SeqRejected (once)
//   pipeline  -> request    CancelRequest (high priority); the request's own RequestDeadline
// What bounds each mailbox (CAF's are unbounded):
//   worker     one RunStep (the scheduler's busy flag)
//   scheduler  per worker one StepDone or WorkerFailed; per live request one SubmitSeq, one
//              ExpireSeq, one DropSeq and kTokenWindow / kTokenAckEvery AckTokens
//   request    kTokenWindow SeqTokens, one SeqAdmitted, one end, a cancel and its timer;
//              tokens beyond the window wait in the scheduler's outbox of that sequence
//              (at most its max_new_tokens)
//   KV owner   (sync actor) one call per calling thread (ActorOwned)
// The number of live requests is the caller's (the daemon's connections); the planner's
// max_queued refuses the excess as soon as their SubmitSeq is handled.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>

#include "actors/engine.hpp"
#include "actors/request_flow.hpp"
#include "actors/step_runner.hpp"
#include "model/batch_planner.hpp"

namespace troupe::actor_msg {

// Token messages a request may hold unacknowledged; it acknowledges every kTokenAckEvery.
// Tokens beyond the window wait in the scheduler's outbox of that sequence (at most its
// max_new_tokens) and go out together once credit returns. Each acknowledgement is a message
// the scheduler must wake for: 8 rather than 4 took about 2 context switches off each step
// (troupe-bench serve, 8 workers x 256 sequences).
inline constexpr int32_t kTokenWindow = 16;
inline constexpr int32_t kTokenAckEvery = 8;

struct SubmitSeq {
  SeqRequest request;
  std::shared_ptr<SeqSampling> sampling;
  caf::actor requester;
  EngineClock::time_point sent;
};

struct AckTokens {
  uint64_t seq = 0;
  int32_t messages = 0;
  EngineClock::time_point sent;
};

// The request ended on its side (stop string, cancel): forget the sequence.
struct DropSeq {
  uint64_t seq = 0;
  EngineClock::time_point sent;
};

// The request's deadline passed: end the sequence, and answer SeqEnded (Deadline) once its
// blocks are free.
struct ExpireSeq {
  uint64_t seq = 0;
  EngineClock::time_point sent;
};

struct RunStep {
  std::shared_ptr<Batch> batch;
  // One per step of the batch with want_logits, in batch order.
  std::vector<std::shared_ptr<SeqSampling>> samplers;
  bool back_to_back = false;  // planned as the worker's previous step completed
};

struct StepDone {
  int32_t worker = 0;
  uint64_t batch_id = 0;
  StepResult result;
  EngineClock::time_point sent;
};

struct WorkerFailed {
  int32_t worker = 0;
  std::string message;
  EngineClock::time_point sent;
};

struct SeqAdmitted {
  EngineClock::time_point at;
  int32_t cached_tokens = 0;
};

struct SeqTokens {
  std::vector<SampledOutput> outputs;
};

struct SeqEnded {
  SeqEnd reason = SeqEnd::Length;
  ErrorKind error = ErrorKind::WorkerFailed;  // for Failed
  std::string message;                        // for Failed: why
};

struct SeqRejected {
  ErrorKind error = ErrorKind::Internal;
  std::string param;    // for InvalidRequest
  std::string message;
};

struct CancelRequest {};
struct RequestDeadline {};

}  // namespace troupe::actor_msg

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actor_msg::SubmitSeq)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actor_msg::AckTokens)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actor_msg::DropSeq)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actor_msg::ExpireSeq)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actor_msg::RunStep)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actor_msg::StepDone)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actor_msg::WorkerFailed)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actor_msg::SeqAdmitted)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actor_msg::SeqTokens)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actor_msg::SeqEnded)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actor_msg::SeqRejected)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actor_msg::CancelRequest)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actor_msg::RequestDeadline)
