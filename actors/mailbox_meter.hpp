#pragma once
// MailboxMeter: an actor's mailbox as SharingStats, the one meter of every actor that others
// message (the scheduler of runtime `actors`, the owner of an ActorOwned core).
// A sender calls sent() (the message counts as queued; contended when another was queued
// already) and keeps the stamp; the receiver calls taken() when it starts on the message;
// completed(stamp) adds one call and its wait (now - stamp). handled(stamp) is taken() then
// completed(stamp), for a meter whose wait ends when handling starts; a caller that waits for
// a reply calls completed(stamp) itself, so the wait is the round trip.
// Thread-safe: relaxed atomic counters; a snapshot may mix adjacent moments.

#include <atomic>
#include <chrono>
#include <cstdint>

#include "actors/sharing.hpp"

namespace troupe {

class MailboxMeter {
 public:
  using Clock = std::chrono::steady_clock;

  Clock::time_point sent();
  void taken();
  void completed(Clock::time_point sent);
  void handled(Clock::time_point sent) {
    taken();
    completed(sent);
  }
  SharingStats stats() const;

 private:
  std::atomic<uint64_t> queued_{0};
  std::atomic<uint64_t> calls_{0};
  std::atomic<uint64_t> contended_{0};
  std::atomic<uint64_t> wait_ns_total_{0};
  std::atomic<uint64_t> wait_ns_longest_{0};
  std::atomic<uint64_t> depth_max_{0};
};

}  // namespace troupe
