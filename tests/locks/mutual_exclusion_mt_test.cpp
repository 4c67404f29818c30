// Mutual exclusion for every lock of the sync layer: a plain, non-atomic counter incremented
// under the lock by 2, 8, 16 and 32 threads must end at exactly threads x iterations.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <type_traits>

#include "lock_test_support.hpp"
#include "locks/counted.hpp"
#include "locks/futex_mutex.hpp"
#include "locks/parking_mutex.hpp"
#include "locks/parking_rw_lock.hpp"
#include "locks/spin_lock.hpp"
#include "locks/spin_wait.hpp"
#include "locks/std_locks.hpp"

namespace troupe {
namespace {

template <class Lock>
class MutualExclusion : public ::testing::Test {};

using AllLocks = ::testing::Types<StdMutex, StdSharedMutex, ParkingMutex, ParkingRwLock,
                                  FutexMutex, SpinLock, Counted<ParkingMutex>,
                                  Counted<ParkingRwLock>>;
TYPED_TEST_SUITE(MutualExclusion, AllLocks);

// Reads, works a little, writes back: two threads inside at once lose an increment (and
// ThreadSanitizer reports the race). Yields make the threads overlap in time even on two
// cores, and some are taken while holding the lock, so the slow paths (parking, waking,
// hand-off) run too, not only the uncontended CAS.
// A SpinLock waiter never sleeps, so a holder that leaves its core makes every waiter burn a
// whole time slice: that documented cost is not what this test measures.
template <class Lock>
constexpr bool waiters_sleep = !std::is_same_v<Lock, SpinLock>;

template <class Lock>
std::uint64_t count_under_lock(int threads, int iterations) {
  Lock lock;
  std::uint64_t counter = 0;
  test::run_threads(threads, [&](int) {
    for (int i = 0; i < iterations; ++i) {
      lock.lock();
      const std::uint64_t read = counter;
      std::atomic_signal_fence(std::memory_order_seq_cst);  // keep read and write apart
      if (waiters_sleep<Lock> && i % 64 == 0) {
        std::this_thread::yield();  // a holder off its core: waiters exhaust spinning and park
      } else {
        for (int k = 0; k < 4; ++k) cpu_relax();
      }
      std::atomic_signal_fence(std::memory_order_seq_cst);
      counter = read + 1;
      lock.unlock();
      if (i % 16 == 0) std::this_thread::yield();  // interleave the threads, not run them in turn
    }
  });
  return counter;
}

TYPED_TEST(MutualExclusion, CounterIsExactUnder2Threads) {
  EXPECT_EQ(count_under_lock<TypeParam>(2, 20000), 2u * 20000);
}

TYPED_TEST(MutualExclusion, CounterIsExactUnder8Threads) {
  EXPECT_EQ(count_under_lock<TypeParam>(8, 5000), 8u * 5000);
}

TYPED_TEST(MutualExclusion, CounterIsExactUnder16Threads) {
  EXPECT_EQ(count_under_lock<TypeParam>(16, 2500), 16u * 2500);
}

TYPED_TEST(MutualExclusion, CounterIsExactUnder32Threads) {
  EXPECT_EQ(count_under_lock<TypeParam>(32, 1250), 32u * 1250);
}

TYPED_TEST(MutualExclusion, TryLockNeverAdmitsTwo) {
  TypeParam lock;
  std::uint64_t counter = 0;
  std::atomic<std::uint64_t> successes{0};
  test::run_threads(8, [&](int) {
    for (int i = 0; i < 4000; ++i) {
      if (!lock.try_lock()) continue;
      const std::uint64_t read = counter;
      std::atomic_signal_fence(std::memory_order_seq_cst);
      cpu_relax();
      std::atomic_signal_fence(std::memory_order_seq_cst);
      counter = read + 1;
      lock.unlock();
      successes.fetch_add(1, std::memory_order_relaxed);
    }
  });
  EXPECT_EQ(counter, successes.load());
  EXPECT_GT(successes.load(), 0u);
}

}  // namespace
}  // namespace troupe
