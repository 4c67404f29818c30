// ParkingCondvar: no lost notification, notify_one/notify_all wake whom they should, timeouts.
// Every wait is bounded by a generous deadline, so a lost notification fails the test instead
// of hanging it.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

#include "lock_test_support.hpp"
#include "locks/futex_mutex.hpp"
#include "locks/parking_condvar.hpp"
#include "locks/parking_lot.hpp"
#include "locks/parking_mutex.hpp"
#include "locks/std_locks.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

template <class Lock>
class Condvar : public ::testing::Test {};
using CondvarLocks = ::testing::Types<ParkingMutex, FutexMutex, StdMutex>;
TYPED_TEST_SUITE(Condvar, CondvarLocks);

// Two threads hand a turn back and forth; a single lost notify_one stalls the exchange.
TYPED_TEST(Condvar, PingPongLosesNoNotification) {
  constexpr int rounds = 3000;
  TypeParam lock;
  ParkingCondvar turn_changed;
  int turn = 0;
  std::atomic<int> stalls{0};
  test::run_threads(2, [&](int me) {
    for (int i = 0; i < rounds; ++i) {
      std::unique_lock hold(lock);
      if (!turn_changed.wait_for(hold, test::generous_timeout, [&] { return turn == me; })) {
        ++stalls;
        return;
      }
      turn = 1 - me;
      turn_changed.notify_one();
    }
  });
  EXPECT_EQ(stalls.load(), 0);
}

// Producers and consumers on a bounded queue, each side waiting on its own condvar and
// notifying the other with notify_one (outside the lock): every item arrives exactly once.
TYPED_TEST(Condvar, BoundedQueueDeliversEveryItem) {
  constexpr int producers = 3;
  constexpr int consumers = 3;
  constexpr int items_each = 2000;
  constexpr std::size_t capacity = 4;
  TypeParam lock;
  ParkingCondvar not_empty;
  ParkingCondvar not_full;
  std::deque<int> queue;
  long sum = 0;
  int taken = 0;
  std::atomic<int> stalls{0};
  test::run_threads(producers + consumers, [&](int index) {
    if (index < producers) {
      for (int i = 1; i <= items_each; ++i) {
        std::unique_lock hold(lock);
        if (!not_full.wait_for(hold, test::generous_timeout, [&] { return queue.size() < capacity; })) {
          ++stalls;
          return;
        }
        queue.push_back(i);
        hold.unlock();
        not_empty.notify_one();
      }
    } else {
      for (int i = 0; i < items_each * producers / consumers; ++i) {
        std::unique_lock hold(lock);
        if (!not_empty.wait_for(hold, test::generous_timeout, [&] { return !queue.empty(); })) {
          ++stalls;
          return;
        }
        sum += queue.front();
        ++taken;
        queue.pop_front();
        hold.unlock();
        not_full.notify_one();
      }
    }
  });
  EXPECT_EQ(stalls.load(), 0);
  EXPECT_EQ(taken, producers * items_each);
  EXPECT_EQ(sum, static_cast<long>(producers) * items_each * (items_each + 1) / 2);
}

TEST(ParkingCondvar, NotifyAllWakesEveryWaiter) {
  constexpr int waiters = 6;
  ParkingMutex lock;
  ParkingCondvar go;
  bool ready = false;
  std::atomic<int> released{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < waiters; ++i) {
    threads.emplace_back([&] {
      std::unique_lock hold(lock);
      if (go.wait_for(hold, test::generous_timeout, [&] { return ready; })) ++released;
    });
  }
  EXPECT_TRUE(test::eventually([&] { return parking_lot::parked_count(&go) == waiters; }));
  {
    std::lock_guard hold(lock);
    ready = true;
  }
  go.notify_all();
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(released.load(), waiters);
  EXPECT_EQ(parking_lot::parked_count(&go), 0u);
}

TEST(ParkingCondvar, NotifyOneWakesExactlyOneInArrivalOrder) {
  constexpr int waiters = 4;
  ParkingMutex lock;
  ParkingCondvar permit_granted;
  int permits = 0;
  std::vector<int> served;
  std::vector<std::thread> threads;
  for (int i = 0; i < waiters; ++i) {
    threads.emplace_back([&, i] {
      std::unique_lock hold(lock);
      if (permit_granted.wait_for(hold, test::generous_timeout, [&] { return permits > 0; })) {
        --permits;
        served.push_back(i);
      }
    });
    // Queue them in a known order.
    EXPECT_TRUE(test::eventually([&] { return parking_lot::parked_count(&permit_granted) == i + 1u; }));
  }
  for (int round = 0; round < waiters; ++round) {
    {
      std::lock_guard hold(lock);
      ++permits;
    }
    permit_granted.notify_one();
    // notify_one dequeues one waiter before returning: exactly one fewer is parked.
    EXPECT_EQ(parking_lot::parked_count(&permit_granted), static_cast<std::size_t>(waiters - round - 1));
    EXPECT_TRUE(test::eventually([&] {
      std::lock_guard hold(lock);
      return served.size() == round + 1u;
    }));
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(served, (std::vector<int>{0, 1, 2, 3}));
}

TEST(ParkingCondvar, WaitUntilTimesOutAndRelocks) {
  ParkingMutex lock;
  ParkingCondvar never;
  std::unique_lock hold(lock);
  const auto start = Clock::now();
  EXPECT_EQ(never.wait_for(hold, 20ms), std::cv_status::timeout);
  EXPECT_GE(Clock::now() - start, 20ms);
  EXPECT_TRUE(hold.owns_lock());
  EXPECT_FALSE(std::async(std::launch::async, [&] { return lock.try_lock(); }).get());
  EXPECT_FALSE(never.wait_for(hold, 1ms, [] { return false; }));
  EXPECT_TRUE(never.wait_for(hold, 1ms, [] { return true; }));
}

TEST(ParkingCondvar, NotifyWithoutWaitersIsHarmlessAndNotRemembered) {
  ParkingMutex lock;
  ParkingCondvar condvar;
  condvar.notify_one();
  condvar.notify_all();
  std::unique_lock hold(lock);
  EXPECT_EQ(condvar.wait_for(hold, 5ms), std::cv_status::timeout);
}

// Many fresh waiter/notifier pairs racing, the notifier setting the flag under the lock and
// notifying after releasing it: the window a lost notification would slip through.
TEST(ParkingCondvar, RacingNotifiersNeverLoseAWakeUp) {
  ParkingMutex lock;
  ParkingCondvar condvar;
  std::atomic<int> stalls{0};
  for (int round = 0; round < 300; ++round) {
    bool flag = false;
    test::run_threads(2, [&](int me) {
      if (me == 0) {
        std::unique_lock hold(lock);
        if (!condvar.wait_for(hold, test::generous_timeout, [&] { return flag; })) ++stalls;
      } else {
        {
          std::lock_guard hold(lock);
          flag = true;
        }
        condvar.notify_one();
      }
    });
  }
  EXPECT_EQ(stalls.load(), 0);
}

}  // namespace
}  // namespace troupe
