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

void WorkerMeter::step(EngineClock::time_point started, EngineClock::time_point backend_ended,
                       EngineClock::time_point ended, bool back_to_back) {
  busy_ns_.fetch_add(nanoseconds(backend_ended - started), std::memory_order_relaxed);
  sampling_ns_.fetch_add(nanoseconds(ended - backend_ended), std::memory_order_relaxed);
  std::lock_guard hold(gaps_mutex_);
  if (back_to_back && last_end_ != EngineClock::time_point{}) {
    const double gap = std::chrono::duration<double>(started - last_end_).count();
    if (gaps_.size() < kGapSamples) {
      gaps_.push_back(gap);
    } else {
      gaps_[next_gap_] = gap;
      next_gap_ = (next_gap_ + 1) % kGapSamples;
    }
  }
  last_end_ = ended;
}

double WorkerMeter::busy_seconds() const {
  return double(busy_ns_.load(std::memory_order_relaxed)) * 1e-9;
}

double WorkerMeter::sampling_seconds() const {
  return double(sampling_ns_.load(std::memory_order_relaxed)) * 1e-9;
}

std::vector<double> WorkerMeter::take_gaps() {
  std::lock_guard hold(gaps_mutex_);
  std::vector<double> gaps;
  gaps.reserve(gaps_.size());
  gaps.insert(gaps.end(), gaps_.begin() + std::ptrdiff_t(next_gap_), gaps_.end());
  gaps.insert(gaps.end(), gaps_.begin(), gaps_.begin() + std::ptrdiff_t(next_gap_));
  gaps_.clear();
  next_gap_ = 0;
  return gaps;
}

}  // namespace troupe
