#include "actors/actor_owned.hpp"

#include <algorithm>
#include <mutex>
#include <thread>
#include <vector>

#include <caf/all.hpp>

namespace troupe::actor_owned_detail {

// The one message an owner handles: a task to run on its core. Local only, never serialized.
struct TaskMessage {
  std::shared_ptr<OwnedTask> task;
};

}  // namespace troupe::actor_owned_detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actor_owned_detail::TaskMessage)

namespace troupe::actor_owned_detail {
namespace {

using Clock = std::chrono::steady_clock;

void raise_to(std::atomic<uint64_t>& maximum, uint64_t value) {
  uint64_t seen = maximum.load(std::memory_order_relaxed);
  while (value > seen && !maximum.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

struct Counters {
  std::atomic<uint64_t> queued{0};  // requests sent and not yet taken by the owner
  std::atomic<uint64_t> calls{0};
  std::atomic<uint64_t> contended{0};
  std::atomic<uint64_t> wait_ns_total{0};
  std::atomic<uint64_t> wait_ns_longest{0};
  std::atomic<uint64_t> depth_max{0};
};

struct OwnerState {
  std::shared_ptr<OwnedCore> core;
};

caf::behavior owner_behavior(caf::stateful_actor<OwnerState>* self,
                             std::shared_ptr<OwnedCore> core,
                             std::shared_ptr<Counters> counters) {
  self->state.core = std::move(core);
  return {
      [self, counters](const TaskMessage& message) {
        counters->queued.fetch_sub(1, std::memory_order_relaxed);
        message.task->run_unless_abandoned(*self->state.core);
        return caf::ok_atom::value;
      },
  };
}

// A calling thread's scoped actor for one owner. Owned by the Owner (destroyed with it, before
// the actor system); the thread only keeps a weak reference.
struct Caller {
  explicit Caller(caf::actor_system& system) : self(system, /*hide=*/true) {}
  caf::scoped_actor self;
};

struct CallerRef {
  uint64_t owner_id;
  std::weak_ptr<Caller> caller;
};
thread_local std::vector<CallerRef> thread_callers;

std::atomic<uint64_t> next_owner_id{1};

}  // namespace

void OwnedTask::run_unless_abandoned(OwnedCore& core) {
  int expected = kQueued;
  if (!state_.compare_exchange_strong(expected, kRunning, std::memory_order_acq_rel)) return;
  run(core);
  state_.store(kDone, std::memory_order_release);
}

bool OwnedTask::abandon() {
  int expected = kQueued;
  return state_.compare_exchange_strong(expected, kAbandoned, std::memory_order_acq_rel);
}

void OwnedTask::wait_done() const {
  while (!done()) std::this_thread::yield();
}

struct Owner::Impl {
  caf::actor_system& system;
  std::string what;
  caf::duration timeout;
  std::chrono::milliseconds timeout_ms;
  std::shared_ptr<Counters> counters = std::make_shared<Counters>();
  uint64_t id = next_owner_id.fetch_add(1, std::memory_order_relaxed);
  caf::actor owner;
  std::mutex callers_mutex;
  std::vector<std::shared_ptr<Caller>> callers;

  Impl(caf::actor_system& system, std::string what, std::chrono::milliseconds timeout)
      : system(system), what(std::move(what)), timeout(timeout), timeout_ms(timeout) {}

  std::shared_ptr<Caller> caller() {
    for (const CallerRef& ref : thread_callers)
      if (ref.owner_id == id)
        if (auto caller = ref.caller.lock()) return caller;
    auto created = std::make_shared<Caller>(system);
    {
      std::lock_guard hold(callers_mutex);
      callers.push_back(created);
    }
    std::erase_if(thread_callers, [](const CallerRef& ref) { return ref.caller.expired(); });
    thread_callers.push_back({id, created});
    return created;
  }

  [[noreturn]] void fail(const std::string& why) const {
    throw SharingError("the actor owning " + what + " " + why);
  }
};

Owner::Owner(caf::actor_system& system, std::shared_ptr<OwnedCore> core, std::string what,
             const SharingOptions& options)
    : impl_(std::make_unique<Impl>(system, std::move(what), options.actor_timeout)) {
  if (options.actor_timeout <= std::chrono::milliseconds::zero())
    throw std::invalid_argument("the actor timeout must be positive, got " +
                                std::to_string(options.actor_timeout.count()) + " ms");
  impl_->owner = system.spawn<caf::detached>(owner_behavior, std::move(core), impl_->counters);
}

Owner::~Owner() {
  {
    std::lock_guard hold(impl_->callers_mutex);
    impl_->callers.clear();
  }
  caf::scoped_actor self{impl_->system, /*hide=*/true};
  caf::anon_send_exit(impl_->owner, caf::exit_reason::user_shutdown);
  self->wait_for(impl_->owner);
}

void Owner::call(const std::shared_ptr<OwnedTask>& task) const {
  Impl& impl = *impl_;
  const std::shared_ptr<Caller> caller = impl.caller();
  Counters& counters = *impl.counters;

  const uint64_t ahead = counters.queued.fetch_add(1, std::memory_order_relaxed);
  raise_to(counters.depth_max, ahead + 1);
  const auto sent = Clock::now();
  bool answered = false;
  std::string failure;
  caller->self->request(impl.owner, impl.timeout, TaskMessage{task})
      .receive([&](caf::ok_atom) { answered = true; },
               [&](caf::error& error) { failure = impl.system.render(error); });
  const auto round_trip = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - sent).count());

  counters.calls.fetch_add(1, std::memory_order_relaxed);
  if (ahead > 0) counters.contended.fetch_add(1, std::memory_order_relaxed);
  counters.wait_ns_total.fetch_add(round_trip, std::memory_order_relaxed);
  raise_to(counters.wait_ns_longest, round_trip);

  if (answered) return;
  if (task->abandon())
    impl.fail("gave no answer (" + failure + ", timeout " +
              std::to_string(impl.timeout_ms.count()) + " ms); the call had no effect");
  task->wait_done();
}

SharingStats Owner::stats() const {
  const Counters& counters = *impl_->counters;
  return {.calls = counters.calls.load(std::memory_order_relaxed),
          .contended_calls = counters.contended.load(std::memory_order_relaxed),
          .wait_ns_total = counters.wait_ns_total.load(std::memory_order_relaxed),
          .wait_ns_longest = counters.wait_ns_longest.load(std::memory_order_relaxed),
          .mailbox_depth_max = counters.depth_max.load(std::memory_order_relaxed)};
}

}  // namespace troupe::actor_owned_detail
