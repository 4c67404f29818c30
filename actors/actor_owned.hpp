#pragma once
// ActorOwned<Core>: a single-threaded core owned by a CAF actor; every call is one request
// message to it and one reply. write(f) / read(f) send f to the owner, which runs f(Core&)
// (or f(const Core&)) in its own thread while the caller blocks for the reply, at most
// SharingOptions::actor_timeout; a batched call is one message like any other.
// - The owner is spawned detached (its own thread), so a caller that blocks a CAF scheduler
//   thread never starves it. Each calling thread reuses one hidden scoped_actor per owner.
// - f runs only while its caller waits: on a timeout the request is withdrawn if the owner
//   has not started it (the call throws SharingError and had no effect), or awaited if it
//   has. So f may capture the caller's locals by reference.
// - An exception thrown by f reaches the caller; the owner survives it.
// - Each caller blocks for its reply, so the owner's mailbox never holds more than one
//   request per calling thread: bounded without credits.
// - sharing_stats(): requests, those that found another one queued, round trips, and the
//   deepest the mailbox got.
// Thread-safe. The actor system must outlive the ActorOwned; destroy it when no call is in
// flight: the destructor stops the owner and waits for it, so the core is gone on return.
// This header includes no CAF header (they are costly to compile); actor_owned.cpp does.

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "actors/sharing.hpp"

namespace caf {
class actor_system;
}

namespace troupe {
namespace actor_owned_detail {

class OwnedCore {
 public:
  virtual ~OwnedCore() = default;
};

template <class Core>
class OwnedCoreOf final : public OwnedCore {
 public:
  explicit OwnedCoreOf(Core&& core) : core(std::move(core)) {}
  Core core;
};

// One call's work, shared by the caller and the owner. States: queued -> running -> done,
// or queued -> abandoned (the caller gave up; the owner skips it).
class OwnedTask {
 public:
  virtual ~OwnedTask() = default;
  // Owner side: runs the task unless it was abandoned.
  void run_unless_abandoned(OwnedCore& core);
  // Caller side, after a timeout: true when the task will never run; false when the owner
  // has started it (wait_done() then returns once it finished).
  bool abandon();
  void wait_done() const;
  bool done() const { return state_.load(std::memory_order_acquire) == kDone; }

 protected:
  virtual void run(OwnedCore& core) noexcept = 0;

 private:
  static constexpr int kQueued = 0, kRunning = 1, kDone = 2, kAbandoned = 3;
  std::atomic<int> state_{kQueued};
};

template <class Core, class CoreRef, class F>
class TaskOf final : public OwnedTask {
 public:
  using Result = std::invoke_result_t<F&, CoreRef>;
  static_assert(!std::is_reference_v<Result>, "a call through an actor returns values");

  explicit TaskOf(F& f) : f_(f) {}

  Result take() {
    if (error_) std::rethrow_exception(error_);
    if constexpr (!std::is_void_v<Result>) return std::move(*result_);
  }

 private:
  void run(OwnedCore& core) noexcept override {
    try {
      Core& owned = static_cast<OwnedCoreOf<Core>&>(core).core;
      if constexpr (std::is_void_v<Result>)
        std::invoke(f_, static_cast<CoreRef>(owned));
      else
        result_.emplace(std::invoke(f_, static_cast<CoreRef>(owned)));
    } catch (...) {
      error_ = std::current_exception();
    }
  }

  F& f_;
  std::conditional_t<std::is_void_v<Result>, bool, std::optional<Result>> result_{};
  std::exception_ptr error_;
};

// The non-template part: the CAF actor, the callers' scoped actors, the statistics.
class Owner {
 public:
  // `what` names the state in error messages ("the KV cache").
  Owner(caf::actor_system& system, std::shared_ptr<OwnedCore> core, std::string what,
        const SharingOptions& options);
  ~Owner();
  Owner(const Owner&) = delete;
  Owner& operator=(const Owner&) = delete;

  // Blocks until the owner ran the task. Throws SharingError on timeout or a dead owner.
  void call(const std::shared_ptr<OwnedTask>& task) const;
  SharingStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace actor_owned_detail

template <class Core>
class ActorOwned {
 public:
  ActorOwned(caf::actor_system& system, Core core, std::string what,
             const SharingOptions& options = {})
      : owner_(system,
               std::make_shared<actor_owned_detail::OwnedCoreOf<Core>>(std::move(core)),
               std::move(what), options) {}

  template <class F>
  auto write(F&& f) {
    return call<Core&>(f);
  }

  template <class F>
  auto read(F&& f) const {
    return call<const Core&>(f);
  }

  SharingStats sharing_stats() const { return owner_.stats(); }

 private:
  template <class CoreRef, class F>
  auto call(F& f) const {
    auto task = std::make_shared<actor_owned_detail::TaskOf<Core, CoreRef, F>>(f);
    owner_.call(task);
    return task->take();
  }

  actor_owned_detail::Owner owner_;
};

}  // namespace troupe
