#include "actors/worker_meter.hpp"

#include <algorithm>
#include <chrono>

namespace troupe {
namespace {

uint64_t nanoseconds(EngineClock::duration duration) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(duration).count();
  return ns > 0 ? static_cast<uint64_t>(ns) : 0;
}

}  // namespace

void WorkerMeter::starting(EngineClock::time_point now) {
  std::lock_guard hold(mutex_);
  in_progress_ = now;
}

void WorkerMeter::step_failed() {
  std::lock_guard hold(mutex_);
  in_progress_.reset();
}

void WorkerMeter::step(EngineClock::time_point started, EngineClock::time_point device_ended,
                       bool back_to_back) {
  std::lock_guard hold(mutex_);
  busy_ns_ += nanoseconds(device_ended - started);
  in_progress_.reset();
  if (back_to_back && last_end_ != EngineClock::time_point{}) {
    const double gap = std::chrono::duration<double>(started - last_end_).count();
    if (gaps_.size() < kGapSamples) {
      gaps_.push_back(gap);
    } else {
      gaps_[next_gap_] = gap;
      next_gap_ = (next_gap_ + 1) % kGapSamples;
    }
  }
  last_end_ = device_ended;
}

double WorkerMeter::busy_seconds(EngineClock::time_point now) const {
  std::lock_guard hold(mutex_);
  uint64_t busy = busy_ns_;
  if (in_progress_) busy += nanoseconds(now - *in_progress_);
  return double(busy) * 1e-9;
}

std::vector<double> WorkerMeter::take_gaps() {
  std::lock_guard hold(mutex_);
  std::vector<double> gaps;
  gaps.reserve(gaps_.size());
  gaps.insert(gaps.end(), gaps_.begin() + std::ptrdiff_t(next_gap_), gaps_.end());
  gaps.insert(gaps.end(), gaps_.begin(), gaps_.begin() + std::ptrdiff_t(next_gap_));
  gaps_.clear();
  next_gap_ = 0;
  return gaps;
}

}  // namespace troupe
