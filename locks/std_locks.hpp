#pragma once
// The standard library's locks under the sync layer's names, so they are chosen, measured and
// composed (Guarded, Counted) like the others. Plain aliases: std::condition_variable keeps
// working with StdMutex. Sizes with libstdc++ on x86-64: std::mutex 40 B, std::shared_mutex 56 B.

#include <mutex>
#include <shared_mutex>

#include "locks/concepts.hpp"

namespace troupe {

using StdMutex = std::mutex;
using StdSharedMutex = std::shared_mutex;

static_assert(Lockable<StdMutex>);
static_assert(SharedLockable<StdSharedMutex>);

}  // namespace troupe
