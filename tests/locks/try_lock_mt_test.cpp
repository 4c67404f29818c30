// try_lock for every lock, and the timeouts of the timed ones.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "lock_test_support.hpp"
#include "locks/counted.hpp"
#include "locks/futex_mutex.hpp"
#include "locks/parking_mutex.hpp"
#include "locks/parking_rw_lock.hpp"
#include "locks/spin_lock.hpp"
#include "locks/std_locks.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Runs f on another thread and returns its result (try_lock from the owner is undefined for
// std::mutex, so every probe comes from a thread that holds nothing).
template <class F>
auto on_other_thread(F f) {
  return std::async(std::launch::async, f).get();
}

template <class Lock>
class TryLock : public ::testing::Test {};
using AllLocks = ::testing::Types<StdMutex, StdSharedMutex, ParkingMutex, ParkingRwLock,
                                  FutexMutex, SpinLock, Counted<ParkingMutex>>;
TYPED_TEST_SUITE(TryLock, AllLocks);

TYPED_TEST(TryLock, SucceedsWhenFreeFailsWhenHeld) {
  TypeParam lock;
  ASSERT_TRUE(lock.try_lock());
  EXPECT_FALSE(on_other_thread([&] { return lock.try_lock(); }));
  lock.unlock();
  EXPECT_TRUE(on_other_thread([&] {
    const bool taken = lock.try_lock();
    if (taken) lock.unlock();
    return taken;
  }));
  lock.lock();
  EXPECT_FALSE(on_other_thread([&] { return lock.try_lock(); }));
  lock.unlock();
}

TYPED_TEST(TryLock, ReleasedLockGoesToABlockedLocker) {
  TypeParam lock;
  lock.lock();
  std::atomic<bool> entered{false};
  std::thread locker([&] {
    lock.lock();
    entered = true;
    lock.unlock();
  });
  std::this_thread::sleep_for(5ms);
  EXPECT_FALSE(entered.load());
  lock.unlock();
  EXPECT_TRUE(test::eventually([&] { return entered.load(); }));
  locker.join();
}

template <class Lock>
class TimedLock : public ::testing::Test {};
using TimedLocks = ::testing::Types<ParkingMutex, FutexMutex, SpinLock, Counted<ParkingMutex>>;
TYPED_TEST_SUITE(TimedLock, TimedLocks);

TYPED_TEST(TimedLock, TimesOutNoEarlierThanAskedWhileHeld) {
  TypeParam lock;
  lock.lock();
  const auto [acquired, waited] = on_other_thread([&] {
    const auto start = Clock::now();
    const bool taken = lock.try_lock_for(30ms);
    return std::pair(taken, Clock::now() - start);
  });
  EXPECT_FALSE(acquired);
  EXPECT_GE(waited, 30ms);
  EXPECT_LT(waited, test::generous_timeout);
  lock.unlock();
}

TYPED_TEST(TimedLock, ZeroTimeoutIsATryLock) {
  TypeParam lock;
  EXPECT_TRUE(on_other_thread([&] {
    const bool taken = lock.try_lock_for(0ms);
    if (taken) lock.unlock();
    return taken;
  }));
  lock.lock();
  EXPECT_FALSE(on_other_thread([&] { return lock.try_lock_for(0ms); }));
  lock.unlock();
}

TYPED_TEST(TimedLock, AcquiresWhenReleasedBeforeTheDeadline) {
  TypeParam lock;
  lock.lock();
  auto waiter = std::async(std::launch::async, [&] {
    const bool taken = lock.try_lock_for(test::generous_timeout);
    if (taken) lock.unlock();
    return taken;
  });
  std::this_thread::sleep_for(10ms);
  lock.unlock();
  EXPECT_TRUE(waiter.get());
}

// A waiter that gave up must not leave the lock unable to wake the others.
TYPED_TEST(TimedLock, AGivenUpWaiterLeavesTheLockWorking) {
  TypeParam lock;
  lock.lock();
  EXPECT_FALSE(on_other_thread([&] { return lock.try_lock_for(5ms); }));
  std::atomic<int> entered{0};
  std::thread a([&] { lock.lock(); ++entered; lock.unlock(); });
  std::thread b([&] { lock.lock(); ++entered; lock.unlock(); });
  std::this_thread::sleep_for(5ms);
  lock.unlock();
  EXPECT_TRUE(test::eventually([&] { return entered.load() == 2; }));
  a.join();
  b.join();
  EXPECT_TRUE(lock.try_lock());
  lock.unlock();
}

// Many short timed waits racing with unlocks: every wait ends (acquired or timed out) and
// exclusion holds throughout.
TYPED_TEST(TimedLock, TimeoutsRacingWithUnlocksKeepExclusion) {
  TypeParam lock;
  int counter = 0;
  std::atomic<int> acquired{0};
  test::run_threads(6, [&](int index) {
    for (int i = 0; i < 300; ++i) {
      if (index % 2 == 0) {
        lock.lock();
        ++counter;
        test::busy_for(20us);
        lock.unlock();
        ++acquired;
      } else if (lock.try_lock_for(std::chrono::microseconds(i % 40))) {
        ++counter;
        lock.unlock();
        ++acquired;
      }
    }
  });
  EXPECT_EQ(counter, acquired.load());
  EXPECT_GE(acquired.load(), 3 * 300);
}

}  // namespace
}  // namespace troupe
