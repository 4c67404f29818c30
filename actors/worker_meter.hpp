#pragma once
// WorkerMeter: one worker's busy time (each step's device work, Backend::StepTimes) and the
// gaps between back-to-back steps, from the end of one step's device work to the start of the
// next: the host noticing the end, sampling, and the runtime's hand-offs, locking and planning
// (the last kGapSamples, for percentiles). Busy time and gaps thus add up to the wall time.
// Both runtimes keep one per worker; the worker writes it once per step and stats() reads it
// from any thread.
// Thread-safe: the counters, the step in progress and the gap samples sit behind a mutex the
// worker holds twice per step.

#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

#include "actors/engine.hpp"

namespace troupe {

class WorkerMeter {
 public:
  static constexpr size_t kGapSamples = 8192;

  // The worker is about to run a step: until step() or step_failed(), the time since `now`
  // counts as busy, so a reader in the middle of a long step sees it.
  void starting(EngineClock::time_point now);
  // A step's device work, from started to device_ended (busy; the next gap starts there).
  // back_to_back: the step was planned when the previous one completed (the worker did not
  // wait for work), so the gap since then is recorded.
  void step(EngineClock::time_point started, EngineClock::time_point device_ended,
            bool back_to_back);
  void step_failed();  // the step since starting() threw: none is in progress any more
  // Busy (device) time; the step in progress since starting() counts up to `now`.
  double busy_seconds(EngineClock::time_point now = EngineClock::now()) const;
  // The recorded gaps in seconds (oldest first), then cleared.
  std::vector<double> take_gaps();

 private:
  mutable std::mutex mutex_;  // guards every member below
  uint64_t busy_ns_ = 0;
  std::optional<EngineClock::time_point> in_progress_;
  std::vector<double> gaps_;
  size_t next_gap_ = 0;
  EngineClock::time_point last_end_{};
};

}  // namespace troupe
