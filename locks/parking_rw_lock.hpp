#pragma once
// ParkingRwLock: a 4-byte reader-writer lock on the parking lot, writer-preferring.
//
// Contract: lock/try_lock/unlock (exclusive) and lock_shared/try_lock_shared/unlock_shared;
// not recursive, no upgrade; thread-safe. Unlock only what you hold.
// - A writer first takes the `writer` bit, which at once stops new readers, then waits for the
//   readers already inside to leave (the last one wakes it). So a writer waits for at most the
//   readers that were inside when it arrived: readers cannot starve writers.
// - A writer's unlock wakes every parked reader and one parked writer; they compete, so reads
//   and writes alternate in batches and readers cannot be starved by a stream of writers either.
//   Among writers: barging, plus eventual fairness: once the parking lot's fairness timer has
//   expired, a writer's unlock hands the writer bit directly to the longest-parked writer.
// - Spinning (bounded `pause` back-off, never sched_yield, none once someone of the same kind
//   is parked) is the same as ParkingMutex's; see there why it cannot become a yield storm.
//
// State word: bit 0 `writer`, bit 1 writers parked, bit 2 readers parked, bit 3 the writer is
// parked waiting for readers to leave, bits 4-31 the number of readers inside.
// Three parking-lot addresses are used: this+0 (writers), this+1 (readers), this+2 (the writer
// waiting for readers to drain).
//
// Memory orders: entering (CAS setting `writer` or adding a reader; the writer's load that sees
// no readers left) is `acquire`; leaving (clearing `writer`, removing a reader) is `release`.
// The readers' decrements are read-modify-writes, so the writer's acquire load that sees the
// count reach zero synchronizes with every reader that left. Setting a "parked" bit is
// `relaxed`: sleeping is re-validated under the parking-lot bucket lock the waker also takes.

#include <atomic>
#include <cstdint>

namespace troupe {

class ParkingRwLock {
 public:
  ParkingRwLock() = default;
  ParkingRwLock(const ParkingRwLock&) = delete;
  ParkingRwLock& operator=(const ParkingRwLock&) = delete;

  void lock() {
    std::uint32_t expected = 0;
    if (!state_.compare_exchange_weak(expected, writer_bit, std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
      lock_slow();
    }
  }

  bool try_lock() noexcept {
    std::uint32_t state = state_.load(std::memory_order_relaxed);
    while (!(state & writer_bit) && state < one_reader) {
      if (state_.compare_exchange_weak(state, state | writer_bit, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
        return true;
      }
    }
    return false;
  }

  void unlock() noexcept {
    std::uint32_t expected = writer_bit;
    if (!state_.compare_exchange_strong(expected, 0, std::memory_order_release,
                                        std::memory_order_relaxed)) {
      unlock_slow();
    }
  }

  void lock_shared() {
    std::uint32_t state = state_.load(std::memory_order_relaxed);
    if (state & writer_bit ||
        !state_.compare_exchange_weak(state, state + one_reader, std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
      lock_shared_slow();
    }
  }

  bool try_lock_shared() noexcept {
    std::uint32_t state = state_.load(std::memory_order_relaxed);
    while (!(state & writer_bit)) {
      if (state_.compare_exchange_weak(state, state + one_reader, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
        return true;
      }
    }
    return false;
  }

  void unlock_shared() noexcept {
    const std::uint32_t after = state_.fetch_sub(one_reader, std::memory_order_release) - one_reader;
    if (after < one_reader && (after & drain_parked_bit)) wake_draining_writer();
  }

 private:
  static constexpr std::uint32_t writer_bit = 1;
  static constexpr std::uint32_t writers_parked_bit = 2;
  static constexpr std::uint32_t readers_parked_bit = 4;
  static constexpr std::uint32_t drain_parked_bit = 8;
  static constexpr std::uint32_t one_reader = 16;

  const void* writers_key() const noexcept { return this; }
  const void* readers_key() const noexcept { return reinterpret_cast<const char*>(this) + 1; }
  const void* drain_key() const noexcept { return reinterpret_cast<const char*>(this) + 2; }

  void lock_slow();
  void wait_for_readers_to_leave();
  void unlock_slow() noexcept;
  void lock_shared_slow();
  void wake_draining_writer() noexcept;

  std::atomic<std::uint32_t> state_{0};
};

static_assert(sizeof(ParkingRwLock) == 4);

}  // namespace troupe
