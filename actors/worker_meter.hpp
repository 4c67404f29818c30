#pragma once
// Meters of runtime `actors`, written by actors and read by stats() from any thread.
// The scheduler's mailbox is a MailboxMeter (actors/mailbox_meter.hpp, "scheduler_mailbox"):
// senders put sent()'s stamp in the message, the scheduler calls handled(stamp), so the wait
// is the time from send to the start of handling (queue + wake-up).
// WorkerMeter: one worker's time inside Backend::step, its sampling time, and the gaps between
// back-to-back steps, from the end of one StepRunner::run (forward pass and sampling) to the
// start of the next: the runtime's hand-offs and planning (the last kGapSamples, for
// percentiles), as the threads runtime measures them.
// Thread-safe: counters are relaxed atomics (a snapshot may mix adjacent moments); the gap
// samples sit behind a mutex the worker holds once per step.

#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

#include "actors/engine.hpp"
#include "actors/mailbox_meter.hpp"
#include "actors/sharing.hpp"

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
