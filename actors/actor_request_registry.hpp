#pragma once
// RequestRegistry: the live requests of one actors pipeline (id -> its RequestActor) and the
// counters of those that ended, for cancel(), cancel_all(), live_requests() and stats().
// A request is added when its actor is spawned (spawn runs under the registry's lock, so the
// actor cannot end before it is listed) and removed when its actor terminates.
// Thread-safe: any thread may call anything.

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <unordered_map>

#include <caf/actor.hpp>

#include "actors/engine.hpp"

namespace troupe {

class RequestRegistry {
 public:
  // Lists `id` with the actor spawn() returns; spawn runs under the lock.
  void add(RequestId id, const std::function<caf::actor()>& spawn);
  void remove(RequestId id);
  // Sends a high-priority CancelRequest; false for an id not listed.
  bool cancel(RequestId id);
  // Cancels every listed request; returns how many.
  int cancel_all();
  int32_t live() const;
  // Waits until no request is listed or `until` passed; true when none is.
  bool wait_empty(EngineClock::time_point until) const;

  // The terminal event of a request (called once per request, before remove()).
  void record_end(const EndEvent& end);
  // Fills the request counters of `stats`.
  void fill(EngineStats& stats) const;

 private:
  mutable std::mutex mutex_;
  mutable std::condition_variable emptied_;
  std::unordered_map<RequestId, caf::actor> live_;
  uint64_t finished_ = 0, cancelled_ = 0, failed_ = 0;
  uint64_t prompt_tokens_ = 0, generated_tokens_ = 0, cached_tokens_ = 0;
};

}  // namespace troupe
