#pragma once
// Locked<Core, Lock>: a single-threaded core shared through a lock. write(f) runs f(Core&)
// under the exclusive lock; read(f) runs f(const Core&) under the shared lock when Lock is
// a reader-writer lock (SharedLockable), else under the exclusive one. The lock is wrapped in
// Counted<Lock>, so sharing_stats() reports acquisitions, contended acquisitions and waits.
// Thread-safe; f must not call back into the same Locked (the locks are not recursive) and
// must not keep references to the core past its return. Not copyable or movable.

#include <utility>

#include "actors/sharing.hpp"
#include "locks/concepts.hpp"
#include "locks/counted.hpp"
#include "locks/guarded.hpp"

namespace troupe {

template <class Core, Lockable Lock>
class Locked {
 public:
  template <class... Args>
  explicit Locked(Args&&... args) : guarded_(std::forward<Args>(args)...) {}

  template <class F>
  decltype(auto) write(F&& f) {
    return guarded_.with(std::forward<F>(f));
  }

  template <class F>
  decltype(auto) read(F&& f) const {
    if constexpr (SharedLockable<Lock>)
      return guarded_.with_shared(std::forward<F>(f));
    else
      return guarded_.with(std::forward<F>(f));
  }

  SharingStats sharing_stats() const {
    return to_sharing_stats(guarded_.lock_object().snapshot());
  }

 private:
  Guarded<Core, Counted<Lock>> guarded_;
};

}  // namespace troupe
