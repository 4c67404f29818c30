#include "actors/actor_scheduler.hpp"

#include <algorithm>
#include <exception>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>

#include <caf/all.hpp>

#include "actors/actor_messages.hpp"
#include "actors/shared_planner_kv.hpp"

namespace troupe {

void SchedulerSnapshot::publish(const PlannerStats& planner) {
  std::lock_guard hold(mutex_);
  planner_ = planner;
}

PlannerStats SchedulerSnapshot::planner() const {
  std::lock_guard hold(mutex_);
  return planner_;
}

namespace {

using namespace actor_msg;

struct SeqEntry {
  caf::actor requester;
  std::shared_ptr<SeqSampling> sampling;
  bool admitted = false;
  int32_t unacked = 0;                  // SeqTokens messages sent and not acknowledged
  std::vector<SampledOutput> outbox;    // tokens waiting for credit
  std::optional<SeqEnded> end;          // sent after the outbox
  bool end_when_freed = false;          // and only once the planner freed its blocks
};

struct WorkerSlot {
  caf::actor actor;
  bool busy = false;
  bool alive = true;
};

struct SchedulerState {
  std::unique_ptr<SharedPlannerKv> kv;
  std::unique_ptr<BatchPlanner> planner;  // declared after kv: destroyed before it
  std::vector<WorkerSlot> workers;
  std::unordered_map<uint64_t, SeqEntry> seqs;
  std::shared_ptr<MailboxMeter> meter;
  std::shared_ptr<SchedulerSnapshot> snapshot;
  std::string broken;  // why the planner is unusable; empty while it is fine
  std::vector<uint64_t> awaiting_free;  // ended (deadline), end sent once their blocks are free
  bool yield_after_dispatch = false;
};

using SchedulerSelf = caf::stateful_actor<SchedulerState>;

SeqRejected rejection(const SubmitResult& result) {
  switch (result.error) {
    case SubmitError::QueueFull:
      return {ErrorKind::QueueFull, "", result.message};
    case SubmitError::EmptyPrompt:
      return {ErrorKind::InvalidRequest, "prompt", result.message};
    case SubmitError::BadMaxTokens:
    case SubmitError::TooLong:
      return {ErrorKind::InvalidRequest, "max_tokens", result.message};
    case SubmitError::DuplicateSequence:
    case SubmitError::None:
      break;
  }
  return {ErrorKind::Internal, "", result.message};
}

// Sends what the sequence's credit allows; the end goes after the last tokens, and then the
// sequence is forgotten.
void flush(SchedulerSelf* self, uint64_t seq) {
  auto found = self->state.seqs.find(seq);
  if (found == self->state.seqs.end()) return;
  SeqEntry& entry = found->second;
  if (!entry.outbox.empty() && entry.unacked < kTokenWindow) {
    self->send(entry.requester, SeqTokens{std::move(entry.outbox)});
    entry.outbox.clear();
    ++entry.unacked;
  }
  if (entry.outbox.empty() && entry.end && !entry.end_when_freed) {
    self->send(entry.requester, std::move(*entry.end));
    self->state.seqs.erase(found);
  }
}

// when_freed: the end reaches the request only once the planner has freed the sequence's
// blocks (a deadline: the client may look at the cache right after its 504).
void end_sequence(SchedulerSelf* self, uint64_t seq, SeqEnded end, bool when_freed = false) {
  auto found = self->state.seqs.find(seq);
  if (found == self->state.seqs.end() || found->second.end) return;
  found->second.end = std::move(end);
  if (when_freed && self->state.planner->info(seq)) {
    found->second.end_when_freed = true;
    self->state.awaiting_free.push_back(seq);
    return;
  }
  flush(self, seq);
}

void release_freed(SchedulerSelf* self) {
  auto& st = self->state;
  std::erase_if(st.awaiting_free, [&](uint64_t seq) {
    if (st.planner->info(seq)) return false;
    auto found = st.seqs.find(seq);
    if (found != st.seqs.end()) {
      found->second.end_when_freed = false;
      flush(self, seq);
    }
    return true;
  });
}

SeqEnded ended_by(SeqEnd reason) {
  SeqEnded end;
  end.reason = reason;
  if (reason == SeqEnd::Failed) end.message = "the sequence's worker failed";
  return end;
}

void end_planned(SchedulerSelf* self, const EndedSeq& ended) {
  end_sequence(self, ended.seq, ended_by(ended.reason), ended.reason == SeqEnd::Deadline);
}

// Every sequence fails and later submits are refused.
void break_down(SchedulerSelf* self, std::string why) {
  auto& st = self->state;
  if (st.broken.empty()) st.broken = std::move(why);
  std::vector<uint64_t> ids;
  for (const auto& [id, entry] : st.seqs) ids.push_back(id);
  for (uint64_t id : ids)
    end_sequence(self, id, {SeqEnd::Failed, ErrorKind::Internal, st.broken});
}

bool any_worker_alive(const SchedulerState& st) {
  for (const WorkerSlot& worker : st.workers)
    if (worker.alive) return true;
  return false;
}

void dispatch(SchedulerSelf* self);

void fail_worker(SchedulerSelf* self, int32_t index, const std::string& why) {
  auto& st = self->state;
  if (index < 0 || index >= int32_t(st.workers.size()) || !st.workers[size_t(index)].alive) return;
  WorkerSlot& worker = st.workers[size_t(index)];
  worker.alive = false;
  worker.busy = false;
  const std::string message = "worker " + std::to_string(index) + " failed: " + why;
  for (uint64_t id : st.planner->fail_worker(index))
    end_sequence(self, id, {SeqEnd::Failed, ErrorKind::WorkerFailed, message});
  if (!any_worker_alive(st)) {
    std::vector<uint64_t> ids;
    for (const auto& [id, entry] : st.seqs) ids.push_back(id);
    for (uint64_t id : ids) {
      st.planner->cancel(id);
      end_sequence(self, id,
                   {SeqEnd::Failed, ErrorKind::WorkerFailed, "no worker is left: " + message});
    }
    // Nothing waits or runs now, so this plan only frees the blocks of what ended.
    st.planner->plan(index, EngineClock::now());
  }
  dispatch(self);
}

struct PlannedBatch {
  size_t worker = 0;
  Batch batch;
};

// In one KV iteration (one transaction with --kv-granularity step): runs `first` (a
// completion), then, unless it returned false or the planner is broken, plans the next batch
// of every idle live worker. Only the planner is touched inside: with --sync actor this runs
// in the KV owner's thread.
std::vector<PlannedBatch> plan_idle_workers(SchedulerState& st, EngineClock::time_point now,
                                            FunctionRef<bool()> first) {
  std::vector<PlannedBatch> planned;
  st.kv->iteration([&] {
    if (!first() || !st.broken.empty()) return;
    for (size_t index = 0; index < st.workers.size(); ++index) {
      const WorkerSlot& worker = st.workers[index];
      if (!worker.alive || worker.busy) continue;
      Batch batch = st.planner->plan(int32_t(index), now);
      // A plan that ended sequences by deadline frees their blocks only at the next plan:
      // an idle worker plans once more for it, so their ends need not wait for other work.
      const bool deadline_ended =
          std::any_of(batch.ended.begin(), batch.ended.end(),
                      [](const EndedSeq& ended) { return ended.reason == SeqEnd::Deadline; });
      if (batch.empty() && (deadline_ended || !st.awaiting_free.empty())) {
        Batch again = st.planner->plan(int32_t(index), now);
        again.ended.insert(again.ended.begin(), batch.ended.begin(), batch.ended.end());
        batch = std::move(again);
      }
      planned.push_back({index, std::move(batch)});
    }
  });
  return planned;
}

// Sends each planned batch to its worker; then, with yield_after_dispatch, yields this core
// to the workers just woken. What the plans ended is left in `ended`, for the caller to end
// once the tokens that go before those ends are in their outboxes.
// completed_worker: the worker whose step just completed (its next step is back to back).
void send_planned(SchedulerSelf* self, std::vector<PlannedBatch>& planned,
                  EngineClock::time_point now, int32_t completed_worker,
                  std::vector<EndedSeq>& ended) {
  auto& st = self->state;
  bool sent = false;
  for (PlannedBatch& plan : planned) {
    ended.insert(ended.end(), plan.batch.ended.begin(), plan.batch.ended.end());
    if (plan.batch.empty()) continue;
    WorkerSlot& worker = st.workers[plan.worker];
    RunStep step;
    for (const PlannedStep& planned_step : plan.batch.steps) {
      auto found = st.seqs.find(planned_step.seq);
      if (found == st.seqs.end())
        throw std::logic_error("the planner scheduled sequence " +
                               std::to_string(planned_step.seq) +
                               " that the scheduler does not know");
      SeqEntry& entry = found->second;
      if (planned_step.want_logits) step.samplers.push_back(entry.sampling);
      if (planned_step.prefill && !entry.admitted) {
        entry.admitted = true;
        self->send(entry.requester, SeqAdmitted{now, planned_step.n_past});
      }
    }
    step.batch = std::make_shared<Batch>(std::move(plan.batch));
    step.back_to_back = int32_t(plan.worker) == completed_worker;
    worker.busy = true;
    self->send(worker.actor, std::move(step));
    sent = true;
  }
  if (sent && st.yield_after_dispatch) std::this_thread::yield();
}

void dispatch(SchedulerSelf* self) {
  auto& st = self->state;
  if (!st.broken.empty()) return;
  const auto now = EngineClock::now();
  std::vector<PlannedBatch> planned = plan_idle_workers(st, now, [] { return true; });
  std::vector<EndedSeq> ended;
  send_planned(self, planned, now, -1, ended);
  for (const EndedSeq& end : ended) end_planned(self, end);
}

// The worker's next step goes out before the tokens and ends of this one are even sorted:
// a worker never waits for the token routing. Completion and the next plans share one KV
// iteration.
void on_step_done(SchedulerSelf* self, StepDone& done) {
  auto& st = self->state;
  if (done.worker < 0 || done.worker >= int32_t(st.workers.size())) return;
  WorkerSlot& worker = st.workers[size_t(done.worker)];
  if (!worker.alive) return;
  worker.busy = false;
  std::vector<EndedSeq> ended;
  std::optional<std::string> refused;
  const auto now = EngineClock::now();
  std::vector<PlannedBatch> planned = plan_idle_workers(st, now, [&] {
    try {
      ended = st.planner->complete(done.batch_id, done.result.sampled);
      return true;
    } catch (const std::invalid_argument& error) {
      refused = error.what();  // nothing completed; fail_worker plans the others
      return false;
    }
  });
  if (refused) {
    fail_worker(self, done.worker, "its step result was refused: " + *refused);
    return;
  }
  std::vector<EndedSeq> plan_ended;
  send_planned(self, planned, now, done.worker, plan_ended);
  std::vector<uint64_t> touched;
  for (SampledOutput& output : done.result.outputs) {
    auto found = st.seqs.find(output.seq);
    if (found == st.seqs.end() || found->second.end) continue;
    found->second.outbox.push_back(std::move(output));
    touched.push_back(found->first);
  }
  for (const EndedSeq& end : plan_ended) end_planned(self, end);
  for (uint64_t id : touched) flush(self, id);
  for (const EndedSeq& end : ended) end_planned(self, end);
}

void on_submit(SchedulerSelf* self, SubmitSeq& submit) {
  auto& st = self->state;
  const uint64_t id = submit.request.seq;
  if (!st.broken.empty()) {
    self->send(submit.requester, SeqRejected{ErrorKind::Internal, "", st.broken});
    return;
  }
  if (!any_worker_alive(st)) {
    self->send(submit.requester, SeqRejected{ErrorKind::WorkerFailed, "",
                                             "no worker is left to serve the request"});
    return;
  }
  const SubmitResult result = st.planner->submit(std::move(submit.request));
  if (!result.ok()) {
    self->send(submit.requester, rejection(result));
    return;
  }
  SeqEntry entry;
  entry.requester = std::move(submit.requester);
  entry.sampling = std::move(submit.sampling);
  st.seqs.emplace(id, std::move(entry));
  dispatch(self);
}

int32_t worker_index(const SchedulerState& st, const caf::actor_addr& source) {
  for (size_t index = 0; index < st.workers.size(); ++index)
    if (st.workers[index].actor.address() == source) return int32_t(index);
  return -1;
}

// Runs a handler; an exception (a KV call that failed) breaks the planner.
template <class F>
void guarded(SchedulerSelf* self, F&& handler) {
  try {
    handler();
  } catch (const std::exception& error) {
    break_down(self, std::string("the scheduler stopped: ") + error.what());
  }
  release_freed(self);
  self->state.snapshot->publish(self->state.planner->stats());
}

caf::behavior scheduler_actor(SchedulerSelf* self, std::shared_ptr<SchedulerActorSetup> setup) {
  auto& st = self->state;
  st.kv = std::make_unique<SharedPlannerKv>(*setup->kv_cache, setup->kv_granularity);
  PlannerConfig config = setup->planner;
  config.workers = int32_t(setup->workers.size());
  st.planner = std::make_unique<BatchPlanner>(config, *st.kv);
  for (caf::actor& worker : setup->workers) {
    self->monitor(worker);
    st.workers.push_back({.actor = std::move(worker)});
  }
  st.meter = setup->meter;
  st.snapshot = setup->snapshot;
  st.yield_after_dispatch = setup->detached && setup->yield_after_dispatch;
  st.snapshot->publish(st.planner->stats());

  self->set_down_handler([self](caf::down_msg& down) {
    const int32_t index = worker_index(self->state, down.source);
    if (index < 0) return;
    guarded(self, [&] {
      fail_worker(self, index, "its actor stopped (" + self->system().render(down.reason) + ")");
    });
  });

  return {
      [self](SubmitSeq& submit) {
        self->state.meter->handled(submit.sent);
        guarded(self, [&] { on_submit(self, submit); });
      },
      [self](const AckTokens& ack) {
        self->state.meter->handled(ack.sent);
        auto found = self->state.seqs.find(ack.seq);
        if (found == self->state.seqs.end()) return;
        found->second.unacked -= ack.messages;
        flush(self, ack.seq);
      },
      [self](const DropSeq& drop) {
        self->state.meter->handled(drop.sent);
        guarded(self, [&] {
          self->state.planner->cancel(drop.seq);
          self->state.seqs.erase(drop.seq);
          dispatch(self);
        });
      },
      [self](StepDone& done) {
        self->state.meter->handled(done.sent);
        guarded(self, [&] { on_step_done(self, done); });
      },
      [self](const ExpireSeq& expire) {
        self->state.meter->handled(expire.sent);
        guarded(self, [&] {
          self->state.planner->cancel(expire.seq);
          end_sequence(self, expire.seq, ended_by(SeqEnd::Deadline), /*when_freed=*/true);
          dispatch(self);
        });
      },
      [self](const WorkerFailed& failed) {
        self->state.meter->handled(failed.sent);
        guarded(self, [&] { fail_worker(self, failed.worker, failed.message); });
      },
  };
}

}  // namespace

caf::actor spawn_scheduler_actor(caf::actor_system& system, SchedulerActorSetup setup) {
  auto shared = std::make_shared<SchedulerActorSetup>(std::move(setup));
  if (shared->detached) return system.spawn<caf::detached>(scheduler_actor, std::move(shared));
  return system.spawn(scheduler_actor, std::move(shared));
}

}  // namespace troupe
