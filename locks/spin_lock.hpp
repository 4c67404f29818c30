#pragma once
// SpinLock: 1 byte, test-and-test-and-set with `pause` and bounded exponential back-off.
//
// Contract: lock/try_lock/try_lock_for/try_lock_until/unlock; not recursive; not fair;
// thread-safe. A waiter never sleeps: it reads the byte (no bus-locking write while it is
// held), pauses 1, 2, 4, ... up to 64 `pause` instructions between reads, and only then tries
// the exchange. It cannot become a yield storm because it never yields: there is no
// sched_yield to hand a core from one waiter to the next. What it can do, and this is the
// honest cost of a spin lock, is burn a waiter's time slice when the holder has been preempted
// (threads > cores): it is a baseline for short critical sections on a core per thread, and
// for measuring exactly that cost.
//
// Memory orders: the winning exchange is `acquire`, unlock's store `release`; the waiting
// reads are `relaxed` (they only decide when to try the exchange again).

#include <atomic>
#include <chrono>
#include <cstdint>

#include "locks/concepts.hpp"
#include "locks/futex.hpp"
#include "locks/spin_wait.hpp"

namespace troupe {

class SpinLock {
 public:
  SpinLock() = default;
  SpinLock(const SpinLock&) = delete;
  SpinLock& operator=(const SpinLock&) = delete;

  void lock() noexcept {
    SpinBackoff backoff;
    while (locked_.exchange(1, std::memory_order_acquire) != 0) {
      do backoff.spin_capped();
      while (locked_.load(std::memory_order_relaxed) != 0);
    }
  }

  bool try_lock() noexcept {
    return locked_.load(std::memory_order_relaxed) == 0 &&
           locked_.exchange(1, std::memory_order_acquire) == 0;
  }

  bool try_lock_until(SteadyDeadline deadline) noexcept {
    SpinBackoff backoff;
    while (!try_lock()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      backoff.spin_capped();
    }
    return true;
  }

  template <class Rep, class Period>
  bool try_lock_for(std::chrono::duration<Rep, Period> timeout) noexcept {
    return try_lock_until(std::chrono::steady_clock::now() + timeout);
  }

  void unlock() noexcept { locked_.store(0, std::memory_order_release); }

 private:
  std::atomic<std::uint8_t> locked_{0};
};

static_assert(sizeof(SpinLock) == 1);
static_assert(TimedLockable<SpinLock>);

}  // namespace troupe
