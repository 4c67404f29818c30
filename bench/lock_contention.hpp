#pragma once
// One run of the lock contention benchmark (the method of Rust parking_lot's benchmark):
// `threads` fresh threads start together, each looping {enter the critical section; do
// `work_inside` units of dependent floating-point work on the shared value; leave; do
// `work_outside` units on a local value} until `seconds` have passed, counting its loops.
// With read_ratio r, a fraction r of the loops (chosen by a per-thread pseudo-random
// sequence) only read the shared value: under the shared lock for reader-writer locks,
// under the exclusive lock otherwise. Every run builds a fresh lock (or actor system).
// Runs are meant to be called one at a time from one thread; each blocks for `seconds`.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "locks/sync_mode.hpp"

namespace troupe {

struct ContentionConfig {
  int threads = 1;
  int work_inside = 5;
  int work_outside = 5;
  double seconds = 1;
  double read_ratio = 0;  // in [0, 1]
  // Wrap the lock in Counted<Lock> to learn the longest wait; the counters' shared atomics
  // cost throughput, so compare only runs made with the same setting.
  bool counters = false;
};

struct ContentionRun {
  std::vector<std::uint64_t> loops_per_thread;
  double elapsed_seconds = 0;               // from the start signal to the stop signal
  // With counters: the longest wait for the lock (Counted<Lock>); for `actor`, the longest
  // request round trip (queueing in the mailbox plus the actor's work).
  std::optional<double> longest_wait_ns;
  std::size_t bytes_per_lock = 0;           // see bytes_per_lock()

  std::uint64_t total_loops() const;
  double ops_per_second() const;
  // Each thread's loops relative to an equal split (1.0 = perfectly fair); 0 when no loop
  // completed at all.
  double min_share() const;
  double max_share() const;
};

// The memory one instance of the mode's lock occupies: sizeof(Lock); for `actor`, the size
// of the actor object that owns the data (control block, mailbox and state; the handle is
// a pointer, and queued messages allocate on top).
std::size_t bytes_per_lock(SyncMode mode);

ContentionRun run_contention(SyncMode mode, const ContentionConfig& config);

// Implementation parts shared by the contenders.
namespace contention_detail {

// One unit of dependent work: value = value * 0.75 + carried * 0.25; carried = value.
// Starting from 1.0 every value stays exactly 1.0 (no denormals, no overflow), which the
// compiler cannot know because the shared value comes from memory.
inline void work_units(double& value, double& carried, int units) {
  for (int unit = 0; unit < units; ++unit) {
    value = value * 0.75 + carried * 0.25;
    carried = value;
  }
}

// xorshift64: a cheap per-thread sequence deciding which loops are reads.
class ReadChooser {
 public:
  ReadChooser(double read_ratio, int thread_index);
  bool next_is_read() {
    if (read_ratio_ == 0) return false;
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    return static_cast<double>(state_ >> 11) * 0x1.0p-53 < read_ratio_;
  }

 private:
  double read_ratio_;
  std::uint64_t state_;
};

// Starts `threads` threads running body(thread_index, running) together, lets them run for
// `seconds`, clears `running`, joins them and returns their loop counts and the time.
ContentionRun drive_threads(
    int threads, double seconds,
    const std::function<std::uint64_t(int thread_index, const std::atomic<bool>& running)>&
        body);

ContentionRun run_actor_contention(const ContentionConfig& config);
std::size_t actor_bytes();

}  // namespace contention_detail
}  // namespace troupe
