#include "actors/mailbox_meter.hpp"

#include "locks/counted.hpp"

namespace troupe {

MailboxMeter::Clock::time_point MailboxMeter::sent() {
  const uint64_t ahead = queued_.fetch_add(1, std::memory_order_relaxed);
  if (ahead > 0) contended_.fetch_add(1, std::memory_order_relaxed);
  raise_to(depth_max_, ahead + 1);
  return Clock::now();
}

void MailboxMeter::taken() { queued_.fetch_sub(1, std::memory_order_relaxed); }

void MailboxMeter::completed(Clock::time_point sent) {
  calls_.fetch_add(1, std::memory_order_relaxed);
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - sent).count();
  const uint64_t waited = ns > 0 ? static_cast<uint64_t>(ns) : 0;
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

}  // namespace troupe
