#include "locks/parking_condvar.hpp"

#include "locks/parking_lot.hpp"

namespace troupe {

bool ParkingCondvar::sleep(FunctionRef<void()> release_lock,
                           std::optional<SteadyDeadline> deadline) {
  const auto result = parking_lot::park(
      this,
      [this] {
        has_waiters_.store(1, std::memory_order_relaxed);
        return true;
      },
      release_lock, deadline);
  return result.status != parking_lot::ParkStatus::TimedOut;
}

void ParkingCondvar::notify_slow(bool all) noexcept {
  if (all) {
    // Clear first: a waiter that queues after this sets the bit again under the bucket lock,
    // and every waiter queued before is woken below.
    has_waiters_.store(0, std::memory_order_relaxed);
    parking_lot::unpark_all(this);
    return;
  }
  parking_lot::unpark_one(this, [this](parking_lot::UnparkResult result) {
    if (!result.have_more_threads) has_waiters_.store(0, std::memory_order_relaxed);
    return parking_lot::default_unpark_token;
  });
}

}  // namespace troupe
