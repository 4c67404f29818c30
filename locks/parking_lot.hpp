#pragma once
// The parking lot: a process-wide hash table of wait queues keyed by address, after
// WebKit's ParkingLot and Rust's parking_lot_core. It lets a lock keep no queue of its own, so
// ParkingMutex and ParkingCondvar fit in one byte.
//
// - Each bucket has its own small lock (a FutexMutex); an operation on one address locks one
//   bucket only. The table grows (never shrinks) to keep at least 3 buckets per live thread
//   that has touched it; old tables are kept, as stale readers may still look at them.
// - Each thread sleeps on its own futex word, which its unparker clears (`release`) under the
//   bucket lock before waking it, so a wake-up that comes before the sleep is never lost.
// - validate() runs under the bucket lock: state an unparker changes under the same bucket
//   lock cannot change between validate() and the enqueue. before_sleep() runs after the
//   thread is queued and the bucket is unlocked, so it may unpark (release a lock, say), but
//   it must not park.
// - Queues are first-in first-out, except that a thread may rejoin at the front (QueuePlace).
// - Unpark callbacks run under the bucket lock: they must be short and must not touch the
//   parking lot. An address is only a key, never dereferenced.
// All functions are thread-safe. Timeouts are absolute steady_clock time points.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "locks/function_ref.hpp"

namespace troupe::parking_lot {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

// A value handed from the unparking thread to the thread it unparks (e.g. "lock handed off").
using UnparkToken = std::uintptr_t;
inline constexpr UnparkToken default_unpark_token = 0;

enum class ParkStatus {
  Unparked,  // woken by unpark_one/unpark_all; `token` holds what the unparker passed
  Invalid,   // validate() returned false; the thread never slept
  TimedOut,  // the deadline passed while the thread was still queued
};

struct ParkResult {
  ParkStatus status;
  UnparkToken token = default_unpark_token;
  bool unparked() const noexcept { return status == ParkStatus::Unparked; }
};

// What unpark_one's callback is told, under the bucket lock.
struct UnparkResult {
  std::size_t unparked_threads = 0;  // 0 or 1
  bool have_more_threads = false;    // other threads still parked on the same address
  // Eventual fairness: true when the fairness timer of the address's bucket has expired (a
  // random 0.25-0.75 ms after the last fair turn, whether reported here or claimed with
  // claim_fair_handoff); the caller should then hand its resource directly to the unparked
  // thread instead of letting it compete. Only ever true with a thread unparked.
  bool be_fair = false;
};

// Where a parking thread joins the queue of its address. Front is for a thread that was
// unparked, lost the race for what it was woken for, and parks again: it keeps its turn
// instead of going behind threads that arrived after it.
enum class QueuePlace { Back, Front };

// Parks the calling thread on `addr` if validate() holds, until unparked or `deadline` passes.
ParkResult park(const void* addr, FunctionRef<bool()> validate, FunctionRef<void()> before_sleep,
                std::optional<Deadline> deadline = std::nullopt,
                QueuePlace place = QueuePlace::Back);

// Unparks the longest-waiting thread parked on `addr`, if any. `callback` runs under the
// bucket lock (even when nobody was parked) and returns the token the unparked thread gets.
UnparkResult unpark_one(const void* addr, FunctionRef<UnparkToken(UnparkResult)> callback);

// Unparks every thread parked on `addr`, giving each `token`; returns how many.
std::size_t unpark_all(const void* addr, UnparkToken token = default_unpark_token);

// Claims the fairness turn of `addr` without unparking anyone: true (and the timer restarted)
// when the timer unpark_one reports as be_fair has expired. Lock-free; costs a clock read, so
// for callers that ask only now and then (ParkingMutex hands over to an already woken thread).
bool claim_fair_handoff(const void* addr) noexcept;

// Diagnostics (tests, metrics): a snapshot that may be stale by the time it returns.
std::size_t parked_count(const void* addr);
std::size_t bucket_count();

namespace testing {
// Replaces the clock read by the fairness timer (nullptr restores steady_clock::now). Lets a
// test measure fairness in "virtual time" instead of wall time. Process-wide; not for
// production use.
using FairnessClock = Clock::time_point (*)() noexcept;
void set_fairness_clock(FairnessClock clock) noexcept;
}  // namespace testing

}  // namespace troupe::parking_lot
