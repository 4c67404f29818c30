#pragma once
// Guarded<T, Lock>: a T that can only be reached while its lock is held.
//
//   Guarded<Queue, ParkingMutex> queue;
//   queue.with([&](Queue& q) { q.push(item); });          // exclusive, for the call
//   auto q = queue.lock(); q->push(item);                  // exclusive, for the guard's life
//   rw.with_shared([](const Core& c) { return c.size(); }) // shared; SharedLockable only
//   q.wait(condvar, [](Queue& q) { return !q.empty(); });  // wait on a condvar under the lock
//
// There is no accessor that bypasses the lock: reading or writing T unguarded, writing through
// a shared access, or asking for shared access on an exclusive-only lock does not compile
// (tests/locks/guarded_misuse.cpp). What the type system cannot stop: keeping a pointer or
// reference obtained inside `with` past its end. Thread-safe like its Lock; not copyable or
// movable (its lock may have waiters).

#include <concepts>
#include <functional>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <utility>

#include "locks/concepts.hpp"
#include "locks/futex.hpp"
#include "locks/parking_mutex.hpp"

namespace troupe {

template <class T, Lockable Lock = ParkingMutex>
class Guarded {
 public:
  // Exclusive access for as long as it lives. Movable, not copyable.
  class Guard {
   public:
    T* operator->() const noexcept { return value_; }
    T& operator*() const noexcept { return *value_; }

    // Releases the lock while waiting on `condvar` (ParkingCondvar, std::condition_variable_any,
    // or std::condition_variable when Lock is std::mutex) until ready(T&) holds.
    template <class Condvar, std::predicate<T&> Predicate>
    void wait(Condvar& condvar, Predicate ready) {
      condvar.wait(lock_, [&] { return std::invoke(ready, *value_); });
    }
    // Returns ready(T&) as last evaluated: false means the deadline passed first.
    template <class Condvar, std::predicate<T&> Predicate>
    bool wait_until(Condvar& condvar, SteadyDeadline deadline, Predicate ready) {
      return condvar.wait_until(lock_, deadline, [&] { return std::invoke(ready, *value_); });
    }

   private:
    friend class Guarded;
    Guard(std::unique_lock<Lock> lock, T& value) noexcept : lock_(std::move(lock)), value_(&value) {}
    std::unique_lock<Lock> lock_;
    T* value_;
  };

  // Shared (read-only) access for as long as it lives. Movable, not copyable.
  class SharedGuard {
   public:
    const T* operator->() const noexcept { return value_; }
    const T& operator*() const noexcept { return *value_; }

   private:
    friend class Guarded;
    SharedGuard(std::shared_lock<Lock> lock, const T& value) noexcept
        : lock_(std::move(lock)), value_(&value) {}
    std::shared_lock<Lock> lock_;
    const T* value_;
  };

  template <class... Args>
    requires std::constructible_from<T, Args...>
  explicit Guarded(Args&&... args) : value_(std::forward<Args>(args)...) {}

  Guarded(const Guarded&) = delete;
  Guarded& operator=(const Guarded&) = delete;

  template <std::invocable<T&> F>
  decltype(auto) with(F&& f) {
    std::lock_guard<Lock> hold(lock_);
    return std::invoke(std::forward<F>(f), value_);
  }

  template <std::invocable<const T&> F>
  decltype(auto) with(F&& f) const {
    std::lock_guard<Lock> hold(lock_);
    return std::invoke(std::forward<F>(f), value_);
  }

  template <std::invocable<const T&> F>
    requires SharedLockable<Lock>
  decltype(auto) with_shared(F&& f) const {
    std::shared_lock<Lock> hold(lock_);
    return std::invoke(std::forward<F>(f), value_);
  }

  Guard lock() { return Guard(std::unique_lock<Lock>(lock_), value_); }

  std::optional<Guard> try_lock() {
    std::unique_lock<Lock> lock(lock_, std::try_to_lock);
    if (!lock.owns_lock()) return std::nullopt;
    return Guard(std::move(lock), value_);
  }

  SharedGuard lock_shared() const
    requires SharedLockable<Lock>
  {
    return SharedGuard(std::shared_lock<Lock>(lock_), value_);
  }

  // The lock itself, read-only: for its statistics (Counted<Lock>::snapshot), never to lock.
  const Lock& lock_object() const noexcept { return lock_; }

 private:
  mutable Lock lock_;
  T value_;
};

}  // namespace troupe
