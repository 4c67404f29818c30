#pragma once
// ParkingMutex: a 1-byte mutex on the parking lot (WebKit WTF::Lock / Rust parking_lot style).
//
// Contract: lock / try_lock / try_lock_for / try_lock_until / unlock; unlock only by the
// owner; not recursive; thread-safe. The byte holds two bits: `locked`, and `parked` (some
// thread may be parked in the parking lot under this mutex's address).
// - Fast paths are inline: lock is one CAS 0 -> locked, unlock one CAS locked -> 0.
// - Barging: a released lock is free for whoever comes first, so a running thread need not
//   wait for a sleeping one to be scheduled (the throughput of the design).
// - Eventual fairness: when the parking lot's fairness timer for this address has expired (a
//   random 0.25-0.75 ms since the last hand-off), unlock hands the lock directly to the thread
//   that has waited longest, which cannot then be beaten to it. No thread starves.
//
// Spinning, and why it cannot collapse when threads outnumber cores: a contended lock() spins
// only while nobody is parked, with exponential `pause` back-off for a budget of a few
// microseconds (SpinBackoff), then parks. It never calls sched_yield. Rust's parking_lot
// collapses on many cores (its issues #338, #418) because its spin phase ends in sched_yield
// calls: with more runnable threads than cores, each yielding waiter hands its core to another
// waiter, which yields too, while the lock holder waits in the run queue, so the cores are kept
// busy doing yields. Here, as soon as one waiter is parked the `parked` bit stops all spinning,
// so once threads outnumber cores new waiters go to sleep at once and leave the cores to the
// holder; and a waiter that does spin burns a bounded few microseconds, not time slices.
//
// Memory orders: acquiring CASes are `acquire` and releasing stores/CASes `release`, which is
// what makes the critical sections of successive owners happen-before each other. Setting the
// `parked` bit is `relaxed`: it is only a hint to the unlocker, and the decision to sleep is
// re-validated under the parking-lot bucket lock that the unlocker also takes. On a hand-off
// the byte stays locked; the new owner is ordered after the old one by the parking lot's
// release/acquire on its sleeping word.

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
    std::uint8_t expected = 0;
    if (!state_.compare_exchange_weak(expected, locked_bit, std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
      lock_slow(std::nullopt);
    }
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

  bool try_lock_until(SteadyDeadline deadline) {
    std::uint8_t expected = 0;
    if (state_.compare_exchange_strong(expected, locked_bit, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
      return true;
    }
    return lock_slow(deadline);
  }

  template <class Rep, class Period>
  bool try_lock_for(std::chrono::duration<Rep, Period> timeout) {
    return try_lock_until(std::chrono::steady_clock::now() + timeout);
  }

  void unlock() noexcept {
    std::uint8_t expected = locked_bit;
    if (!state_.compare_exchange_strong(expected, 0, std::memory_order_release,
                                        std::memory_order_relaxed)) {
      unlock_slow();
    }
  }

 private:
  static constexpr std::uint8_t locked_bit = 1;
  static constexpr std::uint8_t parked_bit = 2;

  bool lock_slow(std::optional<SteadyDeadline> deadline);  // false only on timeout
  void unlock_slow() noexcept;

  std::atomic<std::uint8_t> state_{0};
};

static_assert(sizeof(ParkingMutex) == 1);

}  // namespace troupe
