#include "locks/parking_rw_lock.hpp"

#include "locks/parking_lot.hpp"
#include "locks/spin_wait.hpp"

namespace troupe {
namespace {
constexpr parking_lot::UnparkToken handoff_token = 1;
}  // namespace

void ParkingRwLock::lock_slow() {
  SpinBackoff spin;
  std::uint32_t state = state_.load(std::memory_order_relaxed);
  for (;;) {
    if (!(state & writer_bit)) {
      if (state_.compare_exchange_weak(state, state | writer_bit, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
        break;
      }
      continue;
    }
    if (!(state & writers_parked_bit)) {
      if (spin.spin()) {
        state = state_.load(std::memory_order_relaxed);
        continue;
      }
      if (!state_.compare_exchange_weak(state, state | writers_parked_bit,
                                        std::memory_order_relaxed, std::memory_order_relaxed)) {
        continue;
      }
    }
    const auto result = parking_lot::park(
        writers_key(),
        [this] {
          const auto s = state_.load(std::memory_order_relaxed);
          return (s & writer_bit) && (s & writers_parked_bit);
        },
        [] {});
    if (result.token == handoff_token) return;  // readers were kept out: none inside
    spin.reset();
    state = state_.load(std::memory_order_relaxed);
  }
  wait_for_readers_to_leave();
}

void ParkingRwLock::wait_for_readers_to_leave() {
  SpinBackoff spin;
  for (;;) {
    std::uint32_t state = state_.load(std::memory_order_acquire);
    if (state < one_reader) return;
    if (!(state & drain_parked_bit)) {
      if (spin.spin()) continue;
      if (!state_.compare_exchange_weak(state, state | drain_parked_bit,
                                        std::memory_order_relaxed, std::memory_order_relaxed)) {
        continue;
      }
    }
    parking_lot::park(
        drain_key(),
        [this] {
          const auto s = state_.load(std::memory_order_relaxed);
          return s >= one_reader && (s & drain_parked_bit);
        },
        [] {});
  }
}

void ParkingRwLock::wake_draining_writer() noexcept {
  // Only the reader that saw the count reach zero gets here, and the writer clears nothing
  // itself: the bit is cleared here, under the bucket lock the writer validates under.
  parking_lot::unpark_one(drain_key(), [this](parking_lot::UnparkResult) {
    state_.fetch_and(~drain_parked_bit, std::memory_order_relaxed);
    return parking_lot::default_unpark_token;
  });
}

void ParkingRwLock::unlock_slow() noexcept {
  // We hold `writer`, so no reader is inside; other threads may only set "parked" bits, hence
  // read-modify-writes. The writer bit is cleared by a CAS that fails if a writer has just
  // parked, so that writer is never left asleep behind a released lock.
  std::uint32_t state = state_.load(std::memory_order_relaxed);
  while (!(state & writers_parked_bit)) {
    if (state_.compare_exchange_weak(state, state & ~writer_bit, std::memory_order_release,
                                     std::memory_order_relaxed)) {
      break;
    }
  }
  if (state & writers_parked_bit) {
    bool handed_off = false;
    parking_lot::unpark_one(writers_key(), [&](parking_lot::UnparkResult result) {
      const std::uint32_t parked_cleared = result.have_more_threads ? 0 : writers_parked_bit;
      if (result.unparked_threads != 0 && result.be_fair) {
        handed_off = true;
        state_.fetch_and(~parked_cleared, std::memory_order_relaxed);
        return handoff_token;
      }
      state_.fetch_and(~(writer_bit | parked_cleared), std::memory_order_release);
      return parking_lot::default_unpark_token;
    });
    if (handed_off) return;  // parked readers wait for the next writer's unlock
  }
  // A reader parks only after seeing readers_parked set under the bucket lock, so clearing the
  // bit before unpark_all cannot leave one asleep; a reader that parks again for a newer writer
  // is woken spuriously and parks again.
  if (state_.fetch_and(~readers_parked_bit, std::memory_order_relaxed) & readers_parked_bit) {
    parking_lot::unpark_all(readers_key());
  }
}

void ParkingRwLock::lock_shared_slow() {
  SpinBackoff spin;
  std::uint32_t state = state_.load(std::memory_order_relaxed);
  for (;;) {
    if (!(state & writer_bit)) {
      if (state_.compare_exchange_weak(state, state + one_reader, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
        return;
      }
      continue;
    }
    if (!(state & readers_parked_bit)) {
      if (spin.spin()) {
        state = state_.load(std::memory_order_relaxed);
        continue;
      }
      if (!state_.compare_exchange_weak(state, state | readers_parked_bit,
                                        std::memory_order_relaxed, std::memory_order_relaxed)) {
        continue;
      }
    }
    parking_lot::park(
        readers_key(),
        [this] {
          const auto s = state_.load(std::memory_order_relaxed);
          return (s & writer_bit) && (s & readers_parked_bit);
        },
        [] {});
    spin.reset();
    state = state_.load(std::memory_order_relaxed);
  }
}

}  // namespace troupe
