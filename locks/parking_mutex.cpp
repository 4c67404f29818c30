#include "locks/parking_mutex.hpp"

#include "locks/parking_lot.hpp"
#include "locks/spin_wait.hpp"

namespace troupe {
namespace {
constexpr parking_lot::UnparkToken handoff_token = 1;
}  // namespace

bool ParkingMutex::lock_slow(std::optional<SteadyDeadline> deadline) {
  SpinBackoff spin;
  std::uint8_t state = state_.load(std::memory_order_relaxed);
  for (;;) {
    if (!(state & locked_bit)) {
      if (state_.compare_exchange_weak(state, state | locked_bit, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
        return true;
      }
      continue;
    }
    if (!(state & parked_bit)) {
      if (spin.spin()) {
        state = state_.load(std::memory_order_relaxed);
        continue;
      }
      if (!state_.compare_exchange_weak(state, state | parked_bit, std::memory_order_relaxed,
                                        std::memory_order_relaxed)) {
        continue;
      }
    }
    const auto result = parking_lot::park(
        this,
        [this] { return state_.load(std::memory_order_relaxed) == (locked_bit | parked_bit); },
        [] {}, deadline);
    if (result.unparked() && result.token == handoff_token) return true;
    if (result.status == parking_lot::ParkStatus::TimedOut) return false;
    spin.reset();
    state = state_.load(std::memory_order_relaxed);
  }
}

void ParkingMutex::unlock_slow() noexcept {
  // The state is locked|parked and, while we own it, nobody else changes it: the stores below
  // cannot lose an update.
  parking_lot::unpark_one(this, [this](parking_lot::UnparkResult result) {
    if (result.unparked_threads != 0 && result.be_fair) {
      if (!result.have_more_threads) state_.store(locked_bit, std::memory_order_relaxed);
      return handoff_token;
    }
    state_.store(result.have_more_threads ? parked_bit : 0, std::memory_order_release);
    return parking_lot::default_unpark_token;
  });
}

}  // namespace troupe
