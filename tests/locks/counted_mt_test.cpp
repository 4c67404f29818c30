// Counted<Lock>: contention counters that count exactly what happened.
#include "locks/counted.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "lock_test_support.hpp"
#include "locks/parking_mutex.hpp"
#include "locks/parking_rw_lock.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST(Counted, StartsAtZero) {
  Counted<ParkingMutex> lock;
  const LockStats stats = lock.snapshot();
  EXPECT_EQ(stats.acquisitions, 0u);
  EXPECT_EQ(stats.contended_acquisitions, 0u);
  EXPECT_EQ(stats.total_wait_ns, 0u);
  EXPECT_EQ(stats.longest_wait_ns, 0u);
}

TEST(Counted, UncontendedAcquisitionsWaitForNothing) {
  Counted<ParkingMutex> lock;
  for (int i = 0; i < 10; ++i) {
    lock.lock();
    lock.unlock();
  }
  ASSERT_TRUE(lock.try_lock());
  lock.unlock();
  ASSERT_TRUE(lock.try_lock_for(1ms));
  lock.unlock();
  const LockStats stats = lock.snapshot();
  EXPECT_EQ(stats.acquisitions, 12u);
  EXPECT_EQ(stats.contended_acquisitions, 0u);
  EXPECT_EQ(stats.total_wait_ns, 0u);
}

TEST(Counted, FailedAttemptsCountNothing) {
  Counted<ParkingMutex> lock;
  lock.lock();
  std::async(std::launch::async, [&] {
    EXPECT_FALSE(lock.try_lock());
    EXPECT_FALSE(lock.try_lock_for(2ms));
  }).get();
  lock.unlock();
  const LockStats stats = lock.snapshot();
  EXPECT_EQ(stats.acquisitions, 1u);
  EXPECT_EQ(stats.contended_acquisitions, 0u);
}

// The waiter blocks while the lock is held, so its acquisition is contended, and the wait it
// records lies within the interval the waiter itself measured around lock().
TEST(Counted, AContendedAcquisitionRecordsItsWait) {
  Counted<ParkingMutex> lock;
  lock.lock();
  std::atomic<bool> waiting{false};
  auto waiter = std::async(std::launch::async, [&] {
    waiting = true;
    const auto start = Clock::now();
    lock.lock();
    const auto envelope = Clock::now() - start;
    lock.unlock();
    return envelope;
  });
  EXPECT_TRUE(test::eventually([&] { return waiting.load(); }));
  std::this_thread::sleep_for(20ms);
  lock.unlock();
  const auto envelope_ns = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(waiter.get()).count());
  const LockStats stats = lock.snapshot();
  EXPECT_EQ(stats.acquisitions, 2u);
  EXPECT_EQ(stats.contended_acquisitions, 1u);
  EXPECT_GT(stats.longest_wait_ns, 0u);
  EXPECT_LE(stats.longest_wait_ns, envelope_ns);
  EXPECT_EQ(stats.total_wait_ns, stats.longest_wait_ns);
}

TEST(Counted, CountsSharedAcquisitionsToo) {
  Counted<ParkingRwLock> lock;
  lock.lock_shared();
  ASSERT_TRUE(lock.try_lock_shared());
  lock.unlock_shared();
  lock.unlock_shared();
  lock.lock();
  lock.unlock();
  EXPECT_EQ(lock.snapshot().acquisitions, 3u);
}

TEST(Counted, CountsEveryAcquisitionUnderContention) {
  constexpr int threads = 8;
  constexpr int iterations = 3000;
  Counted<ParkingMutex> lock;
  test::run_threads(threads, [&](int) {
    for (int i = 0; i < iterations; ++i) {
      lock.lock();
      lock.unlock();
    }
  });
  const LockStats stats = lock.snapshot();
  EXPECT_EQ(stats.acquisitions, static_cast<std::uint64_t>(threads) * iterations);
  EXPECT_LE(stats.contended_acquisitions, stats.acquisitions);
  EXPECT_LE(stats.longest_wait_ns, stats.total_wait_ns);
  EXPECT_EQ(stats.contended_acquisitions == 0, stats.total_wait_ns == 0);
}

}  // namespace
}  // namespace troupe
