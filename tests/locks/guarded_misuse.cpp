// Compiled by tests/locks/CMakeLists.txt: once as is (the positive control, which must
// compile), and once per GUARDED_MISUSE value, each of which must fail to compile.
#include <vector>

#include "locks/guarded.hpp"
#include "locks/parking_mutex.hpp"
#include "locks/parking_rw_lock.hpp"

using troupe::Guarded;
using troupe::ParkingMutex;
using troupe::ParkingRwLock;

int main() {
  Guarded<std::vector<int>, ParkingMutex> exclusive;
  Guarded<std::vector<int>, ParkingRwLock> shared;

  // The legitimate uses, next to the misuses so a failure can only come from the misuse line.
  exclusive.with([](std::vector<int>& v) { v.push_back(1); });
  exclusive.lock()->push_back(2);
  shared.with([](std::vector<int>& v) { v.push_back(3); });
  int total = static_cast<int>(shared.with_shared([](const std::vector<int>& v) { return v.size(); }));
  total += static_cast<int>(shared.lock_shared()->size());

#if GUARDED_MISUSE == 1  // reading the value without taking the lock
  total += static_cast<int>(exclusive.value_.size());
#elif GUARDED_MISUSE == 2  // shared access on a lock that has no shared side
  exclusive.with_shared([](const std::vector<int>& v) { return v.size(); });
#elif GUARDED_MISUSE == 3  // writing through shared access
  shared.with_shared([](auto& v) { v.push_back(4); });
#elif GUARDED_MISUSE == 4  // writing through a shared guard
  shared.lock_shared()->push_back(5);
#elif GUARDED_MISUSE == 5  // copying a guard (two owners of one lock)
  auto guard = exclusive.lock();
  auto copy = guard;
#elif GUARDED_MISUSE == 6  // copying the Guarded (the value would escape its lock)
  auto copy = exclusive;
#elif GUARDED_MISUSE == 7  // reaching the lock to lock it by hand
  exclusive.lock_object().lock();
#endif
  return total == 0;
}
