#pragma once
// What every sharing wrapper (Locked<Core, Lock>, ActorOwned<Core>) has in common: the
// options chosen at start-up next to --sync, the statistics they expose for metrics, and the
// error a call through an actor raises when its owner does not answer.
// SharingStats is a plain value (a snapshot); counters are cumulative since construction and
// read with relaxed atomics, so a snapshot under load may mix adjacent moments.

#include <chrono>
#include <cstdint>
#include <stdexcept>

#include "locks/counted.hpp"

namespace troupe {

struct SharingOptions {
  // How long a call through an actor waits for its reply before it throws SharingError.
  // Far above any healthy round trip: it only turns a stuck owner into an error.
  std::chrono::milliseconds actor_timeout{10'000};
};

struct SharingStats {
  uint64_t calls = 0;              // lock acquisitions (shared ones included) or actor requests
  uint64_t contended_calls = 0;    // lock: found it taken and waited; actor: found a request
                                   // already queued in the owner's mailbox
  uint64_t wait_ns_total = 0;      // lock: time the contended calls waited for the lock;
                                   // actor: round trips of all requests (queue + work + wake-up)
  uint64_t wait_ns_longest = 0;
  uint64_t mailbox_depth_max = 0;  // actor: most requests queued at once; 0 for a lock

  double contended_fraction() const {
    return calls == 0 ? 0.0 : double(contended_calls) / double(calls);
  }
};

// A lock's counters (Counted<Lock>, LockCounter) as SharingStats.
inline SharingStats to_sharing_stats(const LockStats& lock) {
  return {.calls = lock.acquisitions,
          .contended_calls = lock.contended_acquisitions,
          .wait_ns_total = lock.total_wait_ns,
          .wait_ns_longest = lock.longest_wait_ns,
          .mailbox_depth_max = 0};
}

// A call through an actor that got no answer within SharingOptions::actor_timeout, or whose
// owner is gone. The call had no effect.
class SharingError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace troupe
