#include "locks/parking_mutex.hpp"

#include "locks/parking_lot.hpp"
#include "locks/spin_wait.hpp"

namespace troupe {
namespace {

constexpr parking_lot::UnparkToken handoff_token = 1;

// The fairness timer costs a clock read, so a holder looks at it on one contended unlock in 64.
bool time_to_check_fairness() noexcept {
  thread_local std::uint32_t contended_unlocks = 0;
  return (++contended_unlocks & 63) == 0;
}

}  // namespace

bool ParkingMutex::lock_slow(std::optional<SteadyDeadline> deadline) {
  SpinBackoff spin;
  bool woken = false;  // unparked to compete: we clear woken_bit when we acquire or park again
  std::uint8_t state = state_.load(std::memory_order_relaxed);
  for (;;) {
    const std::uint8_t ours = woken ? woken_bit : 0;
    if (woken && (state & handoff_bit)) {
      if (state_.compare_exchange_weak(state, state & ~(handoff_bit | woken_bit),
                                       std::memory_order_acquire, std::memory_order_relaxed)) {
        return true;
      }
      continue;
    }
    if (!(state & locked_bit)) {
      if (state_.compare_exchange_weak(state, (state | locked_bit) & ~ours,
                                       std::memory_order_acquire, std::memory_order_relaxed)) {
        return true;
      }
      continue;
    }
    if (!(state & parked_bit) && spin.spin()) {
      state = state_.load(std::memory_order_relaxed);
      continue;
    }
    // A CAS, not a store: it fails if the holder hands us the lock meanwhile.
    const std::uint8_t parking = (state | parked_bit) & ~ours;
    if (parking != state && !state_.compare_exchange_weak(state, parking, std::memory_order_relaxed,
                                                          std::memory_order_relaxed)) {
      continue;
    }
    const auto place = woken ? parking_lot::QueuePlace::Front : parking_lot::QueuePlace::Back;
    const auto result = parking_lot::park(
        this,
        [this] {
          const auto s = state_.load(std::memory_order_relaxed);
          return (s & (locked_bit | parked_bit)) == (locked_bit | parked_bit);
        },
        [] {}, deadline, place);
    if (result.status == parking_lot::ParkStatus::TimedOut) return false;
    if (result.unparked() && result.token == handoff_token) return true;
    woken = result.unparked();
    spin.reset();
    state = state_.load(std::memory_order_relaxed);
  }
}

void ParkingMutex::unlock_contended(std::uint8_t state) noexcept {
  bool fairness_checked = false;
  for (;;) {
    if ((state & parked_bit) && !(state & woken_bit)) return wake_one_or_hand_off();
    if ((state & woken_bit) && !fairness_checked) {
      fairness_checked = true;
      if (time_to_check_fairness() && parking_lot::claim_fair_handoff(this)) {
        // The woken thread's turn: it finds the lock still locked and now its own.
        while (state & woken_bit) {
          if (state_.compare_exchange_weak(state, state | handoff_bit, std::memory_order_release,
                                           std::memory_order_relaxed)) {
            return;
          }
        }
        continue;
      }
    }
    if (state_.compare_exchange_weak(state, state & ~locked_bit, std::memory_order_release,
                                     std::memory_order_relaxed)) {
      return;
    }
  }
}

void ParkingMutex::wake_one_or_hand_off() noexcept {
  parking_lot::unpark_one(this, [this](parking_lot::UnparkResult result) {
    if (result.unparked_threads != 0 && result.be_fair) {
      if (!result.have_more_threads) state_.fetch_and(~parked_bit, std::memory_order_relaxed);
      return handoff_token;
    }
    // Release, marking the thread we wake (if any); another woken thread's bit is kept.
    std::uint8_t state = state_.load(std::memory_order_relaxed);
    std::uint8_t next;
    do {
      next = (state & woken_bit) | (result.have_more_threads ? parked_bit : 0) |
             (result.unparked_threads != 0 ? woken_bit : 0);
    } while (!state_.compare_exchange_weak(state, next, std::memory_order_release,
                                           std::memory_order_relaxed));
    return parking_lot::default_unpark_token;
  });
}

}  // namespace troupe
