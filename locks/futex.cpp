#include "locks/futex.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

namespace troupe {
namespace {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));

std::uint32_t* address_of(const std::atomic<std::uint32_t>& word) noexcept {
  return const_cast<std::uint32_t*>(reinterpret_cast<const std::uint32_t*>(&word));
}

}  // namespace

FutexWaitResult futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                           std::optional<SteadyDeadline> deadline) noexcept {
  timespec absolute{};
  timespec* timeout = nullptr;
  if (deadline) {
    const auto since_epoch = deadline->time_since_epoch();
    if (since_epoch.count() < 0) return FutexWaitResult::TimedOut;
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    absolute.tv_sec = static_cast<time_t>(seconds.count());
    absolute.tv_nsec = static_cast<long>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - seconds).count());
    timeout = &absolute;
  }
  // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC timeout, the clock of steady_clock.
  const long rc = syscall(SYS_futex, address_of(word), FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG,
                          expected, timeout, nullptr, FUTEX_BITSET_MATCH_ANY);
  if (rc == -1 && errno == ETIMEDOUT) return FutexWaitResult::TimedOut;
  return FutexWaitResult::Woken;
}

void futex_wake(const std::atomic<std::uint32_t>& word, int count) noexcept {
  syscall(SYS_futex, address_of(word), FUTEX_WAKE | FUTEX_PRIVATE_FLAG, count, nullptr, nullptr,
          0);
}

}  // namespace troupe
