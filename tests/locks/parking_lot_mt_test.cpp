// The parking lot: validation, tokens, FIFO order, timeouts, table growth, and a park/unpark
// stress in which a lost wake-up shows up as a timed-out park instead of a hang.
#include "locks/parking_lot.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <mutex>
#include <thread>
#include <vector>

#include "lock_test_support.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using parking_lot::ParkStatus;

auto no_op = [] {};
auto always = [] { return true; };

TEST(ParkingLot, InvalidParkNeverSleepsNorQueues) {
  int key = 0;
  bool before_sleep_ran = false;
  const auto result = parking_lot::park(
      &key, [] { return false; }, [&] { before_sleep_ran = true; });
  EXPECT_EQ(result.status, ParkStatus::Invalid);
  EXPECT_FALSE(before_sleep_ran);
  EXPECT_EQ(parking_lot::parked_count(&key), 0u);
}

TEST(ParkingLot, ParkTimesOutAndLeavesTheQueue) {
  int key = 0;
  const auto start = Clock::now();
  const auto result = parking_lot::park(&key, always, no_op, start + 20ms);
  EXPECT_EQ(result.status, ParkStatus::TimedOut);
  EXPECT_GE(Clock::now() - start, 20ms);
  EXPECT_EQ(parking_lot::parked_count(&key), 0u);
}

TEST(ParkingLot, BeforeSleepRunsOnceQueuedWithTheBucketUnlocked) {
  int key = 0;
  std::size_t seen_parked = 0;
  const auto result = parking_lot::park(
      &key, always, [&] { seen_parked = parking_lot::parked_count(&key); }, Clock::now() + 1ms);
  EXPECT_EQ(result.status, ParkStatus::TimedOut);
  EXPECT_EQ(seen_parked, 1u);
}

TEST(ParkingLot, UnparkOneWithNobodyParkedStillRunsTheCallback) {
  int key = 0;
  int calls = 0;
  const auto result = parking_lot::unpark_one(&key, [&](parking_lot::UnparkResult r) {
    ++calls;
    EXPECT_EQ(r.unparked_threads, 0u);
    EXPECT_FALSE(r.have_more_threads);
    EXPECT_FALSE(r.be_fair);
    return parking_lot::UnparkToken{7};
  });
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(result.unparked_threads, 0u);
  EXPECT_EQ(parking_lot::unpark_all(&key), 0u);
}

// Threads parked one after the other on one address come out in that order, each with the
// token its unparker chose, and have_more_threads counts down to false. A thread parked on
// another address in the same run is not disturbed.
TEST(ParkingLot, UnparkOneIsFifoAndDeliversTokens) {
  constexpr int parkers = 4;
  int key = 0;
  int other_key = 0;
  std::vector<parking_lot::UnparkToken> tokens(parkers, 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < parkers; ++i) {
    threads.emplace_back([&, i] {
      const auto result = parking_lot::park(&key, always, no_op, Clock::now() + test::generous_timeout);
      tokens[i] = result.unparked() ? result.token : 0;
    });
    EXPECT_TRUE(test::eventually([&] { return parking_lot::parked_count(&key) == i + 1u; }));
  }
  std::thread bystander([&] {
    parking_lot::park(&other_key, always, no_op, Clock::now() + test::generous_timeout);
  });
  EXPECT_TRUE(test::eventually([&] { return parking_lot::parked_count(&other_key) == 1u; }));

  for (int i = 0; i < parkers; ++i) {
    const auto result = parking_lot::unpark_one(&key, [&](parking_lot::UnparkResult r) {
      EXPECT_EQ(r.unparked_threads, 1u);
      EXPECT_EQ(r.have_more_threads, i + 1 < parkers);
      return static_cast<parking_lot::UnparkToken>(100 + i);
    });
    EXPECT_EQ(result.unparked_threads, 1u);
    threads[i].join();
    EXPECT_EQ(tokens[i], 100u + i) << "thread " << i << " was not the one unparked";
  }
  EXPECT_EQ(parking_lot::parked_count(&other_key), 1u);
  EXPECT_EQ(parking_lot::unpark_all(&other_key, 5), 1u);
  bystander.join();
}

// A thread that parks again after losing a race goes ahead of those that came after it.
TEST(ParkingLot, ParkingAtTheFrontKeepsTheTurn) {
  int key = 0;
  std::vector<int> order;
  std::mutex order_lock;
  std::vector<std::thread> threads;
  const auto park_as = [&](int id, parking_lot::QueuePlace place) {
    threads.emplace_back([&, id, place] {
      const auto result =
          parking_lot::park(&key, always, no_op, Clock::now() + test::generous_timeout, place);
      if (result.unparked()) {
        std::lock_guard hold(order_lock);
        order.push_back(id);
      }
    });
    EXPECT_TRUE(test::eventually([&] { return parking_lot::parked_count(&key) == threads.size(); }));
  };
  park_as(0, parking_lot::QueuePlace::Back);
  park_as(1, parking_lot::QueuePlace::Back);
  park_as(2, parking_lot::QueuePlace::Front);
  for (std::size_t i = 0; i < threads.size(); ++i) {
    parking_lot::unpark_one(&key, [](parking_lot::UnparkResult) { return parking_lot::default_unpark_token; });
    EXPECT_TRUE(test::eventually([&] {
      std::lock_guard hold(order_lock);
      return order.size() == i + 1;
    }));
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(order, (std::vector<int>{2, 0, 1}));
}

// The fairness timer, driven by an injected clock: a turn is due once 0.25-0.75 ms have passed
// since the last one, and only one claimer gets each turn.
std::atomic<Clock::rep> injected_now{0};
Clock::time_point injected_clock() noexcept { return Clock::time_point(Clock::duration(injected_now.load())); }

TEST(ParkingLot, FairTurnsComeEveryQuarterToThreeQuarterMillisecond) {
  int key = 0;
  injected_now = (Clock::now() + 1s).time_since_epoch().count();  // past any pending turn
  parking_lot::testing::set_fairness_clock(&injected_clock);
  EXPECT_TRUE(parking_lot::claim_fair_handoff(&key));
  EXPECT_FALSE(parking_lot::claim_fair_handoff(&key));
  injected_now += Clock::duration(249us).count();
  EXPECT_FALSE(parking_lot::claim_fair_handoff(&key));
  injected_now += Clock::duration(501us).count();  // 750 us after the last turn
  EXPECT_TRUE(parking_lot::claim_fair_handoff(&key));
  // unpark_one reports turns from the same timer: not the one just claimed, the next one.
  const auto be_fair_when_unparking = [&] {
    std::thread parked([&] { parking_lot::park(&key, always, no_op, Clock::now() + test::generous_timeout); });
    EXPECT_TRUE(test::eventually([&] { return parking_lot::parked_count(&key) == 1u; }));
    const auto result = parking_lot::unpark_one(&key, [](parking_lot::UnparkResult) {
      return parking_lot::default_unpark_token;
    });
    parked.join();
    return result.be_fair;
  };
  EXPECT_FALSE(be_fair_when_unparking());
  injected_now += Clock::duration(750us).count();
  EXPECT_TRUE(be_fair_when_unparking());
  EXPECT_FALSE(parking_lot::claim_fair_handoff(&key));
  parking_lot::testing::set_fairness_clock(nullptr);
}

TEST(ParkingLot, UnparkAllWakesEveryoneWithTheToken) {
  constexpr int parkers = 5;
  int key = 0;
  std::atomic<int> got_token{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < parkers; ++i) {
    threads.emplace_back([&] {
      const auto result = parking_lot::park(&key, always, no_op, Clock::now() + test::generous_timeout);
      if (result.unparked() && result.token == 9) ++got_token;
    });
  }
  EXPECT_TRUE(test::eventually([&] { return parking_lot::parked_count(&key) == parkers; }));
  EXPECT_EQ(parking_lot::unpark_all(&key, 9), static_cast<std::size_t>(parkers));
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(got_token.load(), parkers);
}

// A counting semaphore built on the parking lot: consumers park while no permit is left and
// producers add a permit then unpark one. validate() re-reads the count under the bucket lock,
// so a permit added between a consumer's check and its sleep is never missed; a lost wake-up
// would leave a consumer asleep until its (generous) deadline.
TEST(ParkingLot, ParkUnparkStressLosesNoWakeUp) {
  constexpr int producers = 4;
  constexpr int consumers = 8;
  constexpr int permits_per_consumer = 4000;
  constexpr int permits_per_producer = consumers * permits_per_consumer / producers;
  std::atomic<int> permits{0};
  std::atomic<int> timeouts{0};
  std::atomic<long> consumed{0};
  std::atomic<long> sleeps{0};
  test::run_threads(producers + consumers, [&](int index) {
    if (index < producers) {
      for (int i = 0; i < permits_per_producer; ++i) {
        permits.fetch_add(1);
        parking_lot::unpark_one(&permits, [](parking_lot::UnparkResult) {
          return parking_lot::default_unpark_token;
        });
        if (i % 8 == 0) std::this_thread::yield();  // let consumers run dry and park
      }
      return;
    }
    for (int taken = 0; taken < permits_per_consumer;) {
      int available = permits.load();
      if (available > 0) {
        if (permits.compare_exchange_weak(available, available - 1)) ++taken;
        continue;
      }
      const auto result = parking_lot::park(
          &permits, [&] { return permits.load() == 0; }, no_op,
          Clock::now() + test::generous_timeout);
      if (result.status == ParkStatus::TimedOut) {
        ++timeouts;
        return;
      }
      if (result.unparked()) ++sleeps;
    }
    consumed += permits_per_consumer;
  });
  EXPECT_EQ(timeouts.load(), 0);
  EXPECT_EQ(consumed.load(), consumers * permits_per_consumer);
  EXPECT_EQ(permits.load(), 0);
  EXPECT_GT(sleeps.load(), 0) << "no consumer ever slept: the stress did not stress";
}

// Timeouts racing with unparks: each park ends exactly once, either unparked or timed out,
// and the queue is empty at the end.
TEST(ParkingLot, TimeoutsRacingWithUnparksEndEveryParkOnce) {
  int key = 0;
  std::atomic<bool> stop{false};
  std::atomic<int> unparked{0};
  std::atomic<int> woken{0};
  std::atomic<int> timed_out{0};
  std::thread unparker([&] {
    while (!stop.load()) {
      const auto r = parking_lot::unpark_one(&key, [](parking_lot::UnparkResult) {
        return parking_lot::default_unpark_token;
      });
      unparked += static_cast<int>(r.unparked_threads);
      std::this_thread::sleep_for(20us);
    }
  });
  test::run_threads(4, [&](int) {
    for (int i = 0; i < 200; ++i) {
      const auto r = parking_lot::park(&key, always, no_op, Clock::now() + std::chrono::microseconds(i % 50));
      (r.status == ParkStatus::TimedOut ? timed_out : woken) += 1;
    }
  });
  stop = true;
  unparker.join();
  EXPECT_EQ(woken.load() + timed_out.load(), 4 * 200);
  EXPECT_EQ(woken.load(), unparked.load());
  EXPECT_EQ(parking_lot::parked_count(&key), 0u);
}

// Growing the table while threads are parked moves them without loss or reordering.
TEST(ParkingLot, TableGrowsWithThreadsAndKeepsParkedThreadsInOrder) {
  constexpr int parkers = 6;
  constexpr int crowd = 300;
  int key = 0;
  std::vector<int> order;
  std::mutex order_lock;
  std::vector<std::thread> threads;
  for (int i = 0; i < parkers; ++i) {
    threads.emplace_back([&, i] {
      const auto result = parking_lot::park(&key, always, no_op, Clock::now() + test::generous_timeout);
      if (result.unparked()) {
        std::lock_guard hold(order_lock);
        order.push_back(i);
      }
    });
    EXPECT_TRUE(test::eventually([&] { return parking_lot::parked_count(&key) == i + 1u; }));
  }
  const std::size_t buckets_before = parking_lot::bucket_count();

  // `crowd` more threads touch the parking lot and stay alive together.
  std::latch all_registered(crowd + 1);
  std::vector<std::thread> crowd_threads;
  for (int i = 0; i < crowd; ++i) {
    crowd_threads.emplace_back([&] {
      int own_key = 0;
      parking_lot::park(&own_key, [] { return false; }, no_op);
      all_registered.arrive_and_wait();
    });
  }
  all_registered.arrive_and_wait();
  EXPECT_GE(parking_lot::bucket_count(), 3u * (crowd + parkers));
  EXPECT_GT(parking_lot::bucket_count(), buckets_before);
  for (auto& thread : crowd_threads) thread.join();

  EXPECT_EQ(parking_lot::parked_count(&key), static_cast<std::size_t>(parkers));
  for (int i = 0; i < parkers; ++i) {
    parking_lot::unpark_one(&key, [](parking_lot::UnparkResult) { return parking_lot::default_unpark_token; });
    EXPECT_TRUE(test::eventually([&] {
      std::lock_guard hold(order_lock);
      return order.size() == i + 1u;
    }));
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5}));
}

}  // namespace
}  // namespace troupe
