#include "actors/actor_meters.hpp"

#include <algorithm>
#include <chrono>

namespace troupe {
namespace {

void raise_to(std::atomic<uint64_t>& maximum, uint64_t value) {
  uint64_t seen = maximum.load(std::memory_order_relaxed);
  while (value > seen && !maximum.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

uint64_t nanoseconds(EngineClock::duration duration) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(duration).count();
  return ns > 0 ? static_cast<uint64_t>(ns) : 0;
}

}  // namespace

EngineClock::time_point MailboxMeter::sent() {
  const uint64_t ahead = queued_.fetch_add(1, std::memory_order_relaxed);
  if (ahead > 0) contended_.fetch_add(1, std::memory_order_relaxed);
  raise_to(depth_max_, ahead + 1);
  return EngineClock::now();
}

void MailboxMeter::handled(EngineClock::time_point sent) {
  queued_.fetch_sub(1, std::memory_order_relaxed);
  calls_.fetch_add(1, std::memory_order_relaxed);
  const uint64_t waited = nanoseconds(EngineClock::now() - sent);
  wait_ns_total_.fetch_add(waited, std::memory_order_relaxed);
  raise_to(wait_ns_longest_, waited);
}

SharingStats MailboxMeter::stats() const {
  return {.calls = calls_.load(std::memory_order_relaxed),
          .contended_calls = contended_.load(std::memory_order_relaxed),
          .wait_ns_total = wait_ns_total_.load(std::memory_order_relaxed),
          .wait_ns_longest = wait_ns_longest_.load(std::memory_order_relaxed),
          .mailbox_depth_max = depth_max_.load(std::memory_order_relaxed)};
}

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
