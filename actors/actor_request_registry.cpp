#include "actors/actor_request_registry.hpp"

#include <caf/all.hpp>

#include "actors/actor_messages.hpp"

namespace troupe {

void RequestRegistry::add(RequestId id, const std::function<caf::actor()>& spawn) {
  std::lock_guard hold(mutex_);
  live_[id] = spawn();
}

void RequestRegistry::remove(RequestId id) {
  std::lock_guard hold(mutex_);
  if (live_.erase(id) > 0 && live_.empty()) emptied_.notify_all();
}

bool RequestRegistry::cancel(RequestId id) {
  std::lock_guard hold(mutex_);
  const auto found = live_.find(id);
  if (found == live_.end()) return false;
  caf::anon_send<caf::message_priority::high>(found->second, actor_msg::CancelRequest{});
  return true;
}

int RequestRegistry::cancel_all() {
  std::lock_guard hold(mutex_);
  for (const auto& [id, actor] : live_)
    caf::anon_send<caf::message_priority::high>(actor, actor_msg::CancelRequest{});
  return static_cast<int>(live_.size());
}

int32_t RequestRegistry::live() const {
  std::lock_guard hold(mutex_);
  return static_cast<int32_t>(live_.size());
}

bool RequestRegistry::wait_empty(EngineClock::time_point until) const {
  std::unique_lock hold(mutex_);
  return emptied_.wait_until(hold, until, [this] { return live_.empty(); });
}

void RequestRegistry::record_end(const EndEvent& end) {
  std::lock_guard hold(mutex_);
  switch (end.kind) {
    case EndKind::Finished: ++finished_; break;
    case EndKind::Cancelled: ++cancelled_; break;
    case EndKind::Error: ++failed_; break;
  }
  prompt_tokens_ += static_cast<uint64_t>(end.usage.prompt_tokens);
  generated_tokens_ += static_cast<uint64_t>(end.usage.completion_tokens);
  cached_tokens_ += static_cast<uint64_t>(end.usage.cached_tokens);
}

void RequestRegistry::fill(EngineStats& stats) const {
  std::lock_guard hold(mutex_);
  stats.requests_finished = finished_;
  stats.requests_cancelled = cancelled_;
  stats.requests_failed = failed_;
  stats.prompt_tokens = prompt_tokens_;
  stats.generated_tokens = generated_tokens_;
  stats.cached_tokens = cached_tokens_;
}

}  // namespace troupe
