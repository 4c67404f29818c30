#pragma once
// SharingActorSystem: a CAF actor system, configured programmatically (never from argv or a
// caf-application.ini), for programs that need actor-owned state but run no actor runtime of
// their own: the kvcache bench and the tests. The owners of ActorOwned state are detached
// (their own threads), so the scheduler gets one thread with polling off: it idles instead
// of taking CPU from the callers.
// Thread-safe as caf::actor_system is. Destroy it after every ActorOwned made with it.

#include <memory>

namespace caf {
class actor_system;
}

namespace troupe {

class SharingActorSystem {
 public:
  SharingActorSystem();
  ~SharingActorSystem();
  SharingActorSystem(const SharingActorSystem&) = delete;
  SharingActorSystem& operator=(const SharingActorSystem&) = delete;

  caf::actor_system& system();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace troupe
