#pragma once
// Thin wrappers over the Linux futex system call on a 32-bit atomic word (process-private).
// futex_wait sleeps only while the word still holds `expected` (checked atomically by the
// kernel); it may return spuriously, so callers re-check their condition in a loop.
// Deadlines are absolute steady_clock (CLOCK_MONOTONIC) time points. Thread-safe.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>

namespace troupe {

using SteadyDeadline = std::chrono::steady_clock::time_point;

enum class FutexWaitResult { Woken, TimedOut };

// Woken covers a real wake-up, a spurious one, a signal and "the word no longer held expected".
FutexWaitResult futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                           std::optional<SteadyDeadline> deadline = std::nullopt) noexcept;

// Wakes up to `count` threads sleeping on `word`. The word may already be freed memory when a
// woken thread has returned and exited in between: the kernel then wakes nobody, or wakes a
// sleeper on a reused address, which every futex user tolerates as a spurious wake-up.
void futex_wake(const std::atomic<std::uint32_t>& word, int count) noexcept;

}  // namespace troupe
