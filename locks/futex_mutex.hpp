#pragma once
// FutexMutex: 4 bytes, the three-state futex mutex of Drepper's "Futexes Are Tricky"
// (0 unlocked, 1 locked, 2 locked and maybe waiters). No spinning: a contended lock() sleeps in
// the kernel at once, as glibc's std::mutex does, so it is the "std::mutex in 4 bytes" baseline.
// Not fair: an unlock wakes one sleeper, which then competes with arriving threads.
// Thread-safe; not recursive; unlock() only by the owner. Also the parking lot's bucket lock.
//
// Memory orders: acquiring exchanges/CASes are `acquire` and the releasing exchange is
// `release`, which is all a mutex needs; failed CASes are `relaxed` (nothing is read under them).

#include <atomic>
#include <chrono>
#include <cstdint>

#include "locks/futex.hpp"

namespace troupe {

class FutexMutex {
 public:
  FutexMutex() = default;
  FutexMutex(const FutexMutex&) = delete;
  FutexMutex& operator=(const FutexMutex&) = delete;

  void lock() noexcept {
    std::uint32_t expected = unlocked;
    if (!state_.compare_exchange_strong(expected, locked, std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
      lock_contended(expected, std::nullopt);
    }
  }

  bool try_lock() noexcept {
    std::uint32_t expected = unlocked;
    return state_.compare_exchange_strong(expected, locked, std::memory_order_acquire,
                                          std::memory_order_relaxed);
  }

  bool try_lock_until(SteadyDeadline deadline) noexcept {
    std::uint32_t expected = unlocked;
    if (state_.compare_exchange_strong(expected, locked, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
      return true;
    }
    return lock_contended(expected, deadline);
  }

  template <class Rep, class Period>
  bool try_lock_for(std::chrono::duration<Rep, Period> timeout) noexcept {
    return try_lock_until(std::chrono::steady_clock::now() + timeout);
  }

  void unlock() noexcept {
    if (state_.exchange(unlocked, std::memory_order_release) == contended) futex_wake(state_, 1);
  }

 private:
  static constexpr std::uint32_t unlocked = 0;
  static constexpr std::uint32_t locked = 1;
  static constexpr std::uint32_t contended = 2;

  // `observed` is the value the fast-path CAS saw; returns false only when the deadline passed.
  bool lock_contended(std::uint32_t observed, std::optional<SteadyDeadline> deadline) noexcept;

  std::atomic<std::uint32_t> state_{unlocked};
};

static_assert(sizeof(FutexMutex) == 4);

}  // namespace troupe
