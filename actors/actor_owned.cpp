#include "actors/actor_owned.hpp"

#include <algorithm>
#include <mutex>
#include <thread>
#include <vector>

#include <caf/all.hpp>

#include "actors/mailbox_meter.hpp"

namespace troupe::actor_owned_detail {

// The one message an owner handles: a task to run on its core. Local only, never serialized.
struct TaskMessage {
  std::shared_ptr<OwnedTask> task;
};

}  // namespace troupe::actor_owned_detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actor_owned_detail::TaskMessage)

namespace troupe::actor_owned_detail {
namespace {

struct OwnerState {
  std::shared_ptr<OwnedCore> core;
};

caf::behavior owner_behavior(caf::stateful_actor<OwnerState>* self,
                             std::shared_ptr<OwnedCore> core,
                             std::shared_ptr<MailboxMeter> counters) {
  self->state.core = std::move(core);
  return {
      [self, counters](const TaskMessage& message) {
        counters->taken();
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
  std::shared_ptr<MailboxMeter> counters = std::make_shared<MailboxMeter>();
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
  const auto sent = impl.counters->sent();
  bool answered = false;
  std::string failure;
  caller->self->request(impl.owner, impl.timeout, TaskMessage{task})
      .receive([&](caf::ok_atom) { answered = true; },
               [&](caf::error& error) { failure = impl.system.render(error); });
  impl.counters->completed(sent);  // the wait of an actor call is its round trip

  if (answered) return;
  if (task->abandon())
    impl.fail("gave no answer (" + failure + ", timeout " +
              std::to_string(impl.timeout_ms.count()) + " ms); the call had no effect");
  task->wait_done();
}

SharingStats Owner::stats() const { return impl_->counters->stats(); }

}  // namespace troupe::actor_owned_detail
