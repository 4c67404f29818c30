#pragma once
// ParkingCondvar: a 1-byte condition variable on the parking lot, for ParkingMutex and for
// any other Lockable (std::unique_lock<Lock> of it, the way std::condition_variable_any works).
//
// Contract: wait/wait_until/wait_for atomically release the lock and sleep, and re-acquire
// the lock before returning (also on timeout). No lost notification: a waiter is queued, and
// the byte's `has waiters` bit set, under the parking-lot bucket lock *before* the lock is
// released, so a notifier that changes the predicate under the lock and then notifies (with
// or without the lock) always finds it. There are no spurious wake-ups, but as with every
// condition variable, use the predicate overloads: another thread may change the predicate
// between the notify and the re-lock. notify_one wakes the longest waiter; notify_all wakes
// all of them (no requeueing onto the mutex). Thread-safe; must outlive its waiters.
//
// Memory orders: the `has waiters` bit is `relaxed` both ways. Its writer (the waiter) sets it
// before releasing the user's lock, and a notifier that is supposed to find it acquired that
// lock afterwards, so the lock's own release/acquire orders the bit; a stale bit only sends
// notify down the slow path, which clears it under the bucket lock when no one is queued.

#include <atomic>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>

#include "locks/concepts.hpp"
#include "locks/function_ref.hpp"
#include "locks/futex.hpp"

namespace troupe {

class ParkingCondvar {
 public:
  ParkingCondvar() = default;
  ParkingCondvar(const ParkingCondvar&) = delete;
  ParkingCondvar& operator=(const ParkingCondvar&) = delete;

  template <Lockable Lock>
  void wait(std::unique_lock<Lock>& lock) {
    wait_impl(lock, std::nullopt);
  }

  template <Lockable Lock, std::predicate Predicate>
  void wait(std::unique_lock<Lock>& lock, Predicate ready) {
    while (!ready()) wait(lock);
  }

  template <Lockable Lock>
  std::cv_status wait_until(std::unique_lock<Lock>& lock, SteadyDeadline deadline) {
    return wait_impl(lock, deadline) ? std::cv_status::no_timeout : std::cv_status::timeout;
  }

  // Returns ready() as last evaluated: false means the deadline passed first.
  template <Lockable Lock, std::predicate Predicate>
  bool wait_until(std::unique_lock<Lock>& lock, SteadyDeadline deadline, Predicate ready) {
    while (!ready()) {
      if (wait_until(lock, deadline) == std::cv_status::timeout) return ready();
    }
    return true;
  }

  template <Lockable Lock, class Rep, class Period>
  std::cv_status wait_for(std::unique_lock<Lock>& lock, std::chrono::duration<Rep, Period> d) {
    return wait_until(lock, std::chrono::steady_clock::now() + d);
  }

  template <Lockable Lock, class Rep, class Period, std::predicate Predicate>
  bool wait_for(std::unique_lock<Lock>& lock, std::chrono::duration<Rep, Period> d,
                Predicate ready) {
    return wait_until(lock, std::chrono::steady_clock::now() + d, std::move(ready));
  }

  void notify_one() noexcept {
    if (has_waiters_.load(std::memory_order_relaxed)) notify_slow(false);
  }

  void notify_all() noexcept {
    if (has_waiters_.load(std::memory_order_relaxed)) notify_slow(true);
  }

 private:
  template <Lockable Lock>
  bool wait_impl(std::unique_lock<Lock>& lock, std::optional<SteadyDeadline> deadline) {
    Lock& mutex = *lock.mutex();
    const bool notified = sleep([&mutex] { mutex.unlock(); }, deadline);
    mutex.lock();
    return notified;
  }

  // Queues the caller, runs release_lock, sleeps; false when the deadline passed first.
  bool sleep(FunctionRef<void()> release_lock, std::optional<SteadyDeadline> deadline);
  void notify_slow(bool all) noexcept;

  std::atomic<std::uint8_t> has_waiters_{0};
};

static_assert(sizeof(ParkingCondvar) == 1);

}  // namespace troupe
