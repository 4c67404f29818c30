#pragma once
// The lock concepts every lock of the sync layer satisfies, so code can take any of them
// (Guarded, Counted, the bench, the sharing wrappers) and say what it needs.
// Lockable: lock/try_lock/unlock. SharedLockable: also lock_shared/try_lock_shared/
// unlock_shared. TimedLockable: also try_lock_for(duration).

#include <chrono>
#include <concepts>

namespace troupe {

template <class L>
concept Lockable = requires(L& lock) {
  lock.lock();
  { lock.try_lock() } -> std::convertible_to<bool>;
  lock.unlock();
};

template <class L>
concept SharedLockable = Lockable<L> && requires(L& lock) {
  lock.lock_shared();
  { lock.try_lock_shared() } -> std::convertible_to<bool>;
  lock.unlock_shared();
};

template <class L>
concept TimedLockable = Lockable<L> && requires(L& lock, std::chrono::nanoseconds timeout) {
  { lock.try_lock_for(timeout) } -> std::convertible_to<bool>;
};

}  // namespace troupe
