#pragma once
// ParkingMutex: a 1-byte mutex on the parking lot (WebKit WTF::Lock / Rust parking_lot style).
//
// Contract: lock / try_lock / try_lock_for / try_lock_until / unlock; unlock only by the
// owner; not recursive; thread-safe.
// - Fast paths are inline: lock is one CAS (two when waiters are parked), unlock one CAS.
// - Barging: a released lock is free for whoever comes first, so the running thread keeps
//   it while the others sleep, instead of passing it to a thread that must first be woken.
// - One woken thread at a time: an unlock that finds threads parked wakes the one that has
//   waited longest and marks it `woken`; later unlocks wake nobody while it is on its way.
//   If it loses the race it parks again at the front of the queue, keeping its turn.
// - Eventual fairness: once the parking lot's fairness timer for this address has expired (a
//   random 0.25-0.75 ms since the last fair turn), the lock is handed over without being
//   released: to the woken thread if one is on its way (`handoff` bit), else to the longest
//   parked waiter. So every waiter gets its turn within a bounded number of turns.
//
// Spinning, and why it cannot collapse when threads outnumber cores: a contended lock() spins
// only while nobody is parked, with exponential `pause` back-off for a budget of a few
// microseconds (SpinBackoff), then parks. It never calls sched_yield. Rust's parking_lot
// collapses on many cores (its issues #338, #418) because its spin phase ends in sched_yield
// calls: with more runnable threads than cores, each yielding waiter hands its core to another
// waiter, which yields too, while the lock holder waits in the run queue. Here, as soon as one
// waiter is parked the `parked` bit stops all spinning, so once threads outnumber cores new
// waiters go to sleep at once and leave the cores to the holder; a waiter that does spin
// burns a bounded few microseconds, not time slices; and with one woken thread at a time an
// unlock does not flood the run queue with woken threads.
//
// State byte: bit 0 locked, bit 1 parked (threads may be parked under this address), bit 2
// woken (a thread unparked to compete has not yet acquired or parked again), bit 3 handoff
// (the lock, still locked, belongs to that woken thread).
//
// Memory orders: CASes that acquire the lock (or take a hand-off) are `acquire`; those that
// release it (or hand it off) are `release`, which orders successive owners' critical
// sections. Bits that only steer who sleeps and who wakes are changed `relaxed`: the decision
// to sleep is re-validated under the parking-lot bucket lock that every waker also takes, and
// a hand-off to a parked thread is ordered by the parking lot's release/acquire on the
// thread's sleeping word.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>

#include "locks/futex.hpp"

namespace troupe {

class ParkingMutex {
 public:
  ParkingMutex() = default;
  ParkingMutex(const ParkingMutex&) = delete;
  ParkingMutex& operator=(const ParkingMutex&) = delete;

  void lock() {
    if (!try_acquire()) lock_slow(std::nullopt);
  }

  bool try_lock() noexcept {
    std::uint8_t state = state_.load(std::memory_order_relaxed);
    while (!(state & locked_bit)) {
      if (state_.compare_exchange_weak(state, state | locked_bit, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
        return true;
      }
    }
    return false;
  }

  bool try_lock_until(SteadyDeadline deadline) { return try_acquire() || lock_slow(deadline); }

  template <class Rep, class Period>
  bool try_lock_for(std::chrono::duration<Rep, Period> timeout) {
    return try_lock_until(std::chrono::steady_clock::now() + timeout);
  }

  void unlock() noexcept {
    std::uint8_t state = locked_bit;
    if (!state_.compare_exchange_strong(state, 0, std::memory_order_release,
                                        std::memory_order_relaxed)) {
      unlock_contended(state);
    }
  }

 private:
  static constexpr std::uint8_t locked_bit = 1;
  static constexpr std::uint8_t parked_bit = 2;
  static constexpr std::uint8_t woken_bit = 4;
  static constexpr std::uint8_t handoff_bit = 8;

  // One CAS when the byte is 0; a second one when only waiter bits were set.
  bool try_acquire() noexcept {
    std::uint8_t state = 0;
    if (state_.compare_exchange_weak(state, locked_bit, std::memory_order_acquire,
                                     std::memory_order_relaxed)) {
      return true;
    }
    return !(state & locked_bit) &&
           state_.compare_exchange_weak(state, state | locked_bit, std::memory_order_acquire,
                                        std::memory_order_relaxed);
  }

  bool lock_slow(std::optional<SteadyDeadline> deadline);  // false only on timeout
  void unlock_contended(std::uint8_t state) noexcept;
  void wake_one_or_hand_off() noexcept;

  std::atomic<std::uint8_t> state_{0};
};

static_assert(sizeof(ParkingMutex) == 1);

}  // namespace troupe
