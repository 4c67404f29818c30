#pragma once
// WorkerMeter: one worker's time inside Backend::step, its sampling time, and the gaps between
// back-to-back steps, from the end of one StepRunner::run (forward pass and sampling) to the
// start of the next: the runtime's hand-offs, locking and planning (the last kGapSamples, for
// percentiles). Both runtimes keep one per worker; the worker writes it once per step and
// stats() reads it from any thread.
// Thread-safe: counters are relaxed atomics (a snapshot may mix adjacent moments); the gap
// samples sit behind a mutex the worker holds once per step.

#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

#include "actors/engine.hpp"

namespace troupe {

class WorkerMeter {
 public:
  static constexpr size_t kGapSamples = 8192;

  // A step: Backend::step from started to backend_ended, sampling until ended. back_to_back:
  // the step was planned when the previous one completed (the worker did not wait for work),
  // so the gap since the previous step ended is recorded.
  void step(EngineClock::time_point started, EngineClock::time_point backend_ended,
            EngineClock::time_point ended, bool back_to_back);
  double busy_seconds() const;      // inside Backend::step
  double sampling_seconds() const;  // sampling after it
  // The recorded gaps in seconds (oldest first), then cleared.
  std::vector<double> take_gaps();

 private:
  std::atomic<uint64_t> busy_ns_{0};
  std::atomic<uint64_t> sampling_ns_{0};
  std::mutex gaps_mutex_;
  std::vector<double> gaps_;
  size_t next_gap_ = 0;
  EngineClock::time_point last_end_{};
};

}  // namespace troupe
