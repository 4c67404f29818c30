#pragma once
// Counted<Lock>: a Lock that counts its own contention. Opt-in per lock instance: the plain
// locks carry no counters, so "off" costs nothing; Counted<ParkingMutex> is used where the
// figures are wanted (Guarded<T, Counted<L>>, the bench).
//
// Counts acquisitions (exclusive and shared), contended acquisitions (those whose first
// try_lock failed, so the thread had to wait), and the total and longest wait of the contended
// ones in nanoseconds of steady_clock. A failed try_lock/try_lock_for counts nothing.
// Satisfies the same concepts as Lock. Thread-safe; snapshot() may run concurrently with
// locking and reads each counter atomically (`relaxed`: they are statistics, not
// synchronization), so a snapshot taken under load may mix counts from adjacent moments.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>

#include "locks/concepts.hpp"

namespace troupe {

struct LockStats {
  std::uint64_t acquisitions = 0;
  std::uint64_t contended_acquisitions = 0;
  std::uint64_t total_wait_ns = 0;
  std::uint64_t longest_wait_ns = 0;
};

// Raises `maximum` to `value` if it is below (relaxed: a statistic, ordered with nothing).
inline void raise_to(std::atomic<std::uint64_t>& maximum, std::uint64_t value) noexcept {
  std::uint64_t seen = maximum.load(std::memory_order_relaxed);
  while (value > seen && !maximum.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

// The counters alone, for a lock that must stay a plain Lock (e.g. the mutex a condition
// variable waits on): lock(l) locks l and counts (contended when try_lock failed first);
// acquire(l) does the same and hands back the held lock. Counted<Lock> counts with one.
class LockCounter {
 public:
  using Clock = std::chrono::steady_clock;

  template <Lockable Lock>
  void lock(Lock& lock) {
    if (lock.try_lock()) return record_uncontended();
    const auto start = Clock::now();
    lock.lock();
    record_contended(start);
  }

  template <Lockable Lock>
  std::unique_lock<Lock> acquire(Lock& lock) {
    this->lock(lock);
    return std::unique_lock<Lock>(lock, std::adopt_lock);
  }

  void record_uncontended() noexcept { acquisitions_.fetch_add(1, std::memory_order_relaxed); }

  void record_contended(Clock::time_point start) noexcept {
    const auto waited = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
    acquisitions_.fetch_add(1, std::memory_order_relaxed);
    contended_acquisitions_.fetch_add(1, std::memory_order_relaxed);
    total_wait_ns_.fetch_add(waited, std::memory_order_relaxed);
    raise_to(longest_wait_ns_, waited);
  }

  LockStats snapshot() const noexcept {
    return {acquisitions_.load(std::memory_order_relaxed),
            contended_acquisitions_.load(std::memory_order_relaxed),
            total_wait_ns_.load(std::memory_order_relaxed),
            longest_wait_ns_.load(std::memory_order_relaxed)};
  }

 private:
  std::atomic<std::uint64_t> acquisitions_{0};
  std::atomic<std::uint64_t> contended_acquisitions_{0};
  std::atomic<std::uint64_t> total_wait_ns_{0};
  std::atomic<std::uint64_t> longest_wait_ns_{0};
};

template <Lockable Lock>
class Counted {
 public:
  Counted() = default;
  Counted(const Counted&) = delete;
  Counted& operator=(const Counted&) = delete;

  void lock() { counter_.lock(lock_); }

  bool try_lock() {
    if (!lock_.try_lock()) return false;
    counter_.record_uncontended();
    return true;
  }

  template <class Rep, class Period>
    requires TimedLockable<Lock>
  bool try_lock_for(std::chrono::duration<Rep, Period> timeout) {
    if (lock_.try_lock()) {
      counter_.record_uncontended();
      return true;
    }
    const auto start = LockCounter::Clock::now();
    if (!lock_.try_lock_for(timeout)) return false;
    counter_.record_contended(start);
    return true;
  }

  void unlock() { lock_.unlock(); }

  void lock_shared()
    requires SharedLockable<Lock>
  {
    if (lock_.try_lock_shared()) return counter_.record_uncontended();
    const auto start = LockCounter::Clock::now();
    lock_.lock_shared();
    counter_.record_contended(start);
  }

  bool try_lock_shared()
    requires SharedLockable<Lock>
  {
    if (!lock_.try_lock_shared()) return false;
    counter_.record_uncontended();
    return true;
  }

  void unlock_shared()
    requires SharedLockable<Lock>
  {
    lock_.unlock_shared();
  }

  LockStats snapshot() const noexcept { return counter_.snapshot(); }

 private:
  Lock lock_;
  LockCounter counter_;
};

}  // namespace troupe
