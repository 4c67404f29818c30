#include "locks/futex_mutex.hpp"

namespace troupe {

bool FutexMutex::lock_contended(std::uint32_t observed,
                                std::optional<SteadyDeadline> deadline) noexcept {
  // Whoever takes the lock from here on marks it `contended`, so that its unlock wakes the next
  // sleeper: a thread that slept can no longer know whether others still sleep.
  if (observed != contended) observed = state_.exchange(contended, std::memory_order_acquire);
  while (observed != unlocked) {
    if (futex_wait(state_, contended, deadline) == FutexWaitResult::TimedOut) return false;
    observed = state_.exchange(contended, std::memory_order_acquire);
  }
  return true;
}

}  // namespace troupe
