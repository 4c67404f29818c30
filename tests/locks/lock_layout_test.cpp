// Sizes and concepts: the promises the sync layer makes about every lock type.
#include <gtest/gtest.h>

#include "locks/concepts.hpp"
#include "locks/counted.hpp"
#include "locks/futex_mutex.hpp"
#include "locks/parking_condvar.hpp"
#include "locks/parking_mutex.hpp"
#include "locks/parking_rw_lock.hpp"
#include "locks/spin_lock.hpp"
#include "locks/std_locks.hpp"

namespace troupe {
namespace {

// Checked by the compiler: this file does not build if a lock stops satisfying its concepts.
static_assert(Lockable<StdMutex> && !SharedLockable<StdMutex>);
static_assert(SharedLockable<StdSharedMutex>);
static_assert(TimedLockable<ParkingMutex> && !SharedLockable<ParkingMutex>);
static_assert(SharedLockable<ParkingRwLock>);
static_assert(TimedLockable<FutexMutex>);
static_assert(TimedLockable<SpinLock>);
static_assert(TimedLockable<Counted<ParkingMutex>> && !SharedLockable<Counted<ParkingMutex>>);
static_assert(SharedLockable<Counted<ParkingRwLock>> && !TimedLockable<Counted<ParkingRwLock>>);
static_assert(!Lockable<int>);

TEST(LockLayout, SizesAreWhatTheDesignPromises) {
  EXPECT_EQ(sizeof(ParkingMutex), 1u);
  EXPECT_EQ(alignof(ParkingMutex), 1u);
  EXPECT_EQ(sizeof(ParkingCondvar), 1u);
  EXPECT_EQ(sizeof(SpinLock), 1u);
  EXPECT_EQ(sizeof(FutexMutex), 4u);
  EXPECT_LE(sizeof(ParkingRwLock), sizeof(void*));
  // The figures the README quotes for the standard locks (libstdc++, x86-64).
  EXPECT_EQ(sizeof(StdMutex), 40u);
  EXPECT_EQ(sizeof(StdSharedMutex), 56u);
}

TEST(LockLayout, ManyParkingMutexesPackIntoOneCacheLine) {
  struct Row {
    ParkingMutex locks[64];
  };
  EXPECT_EQ(sizeof(Row), 64u);
}

}  // namespace
}  // namespace troupe
