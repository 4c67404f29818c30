// Eventual fairness of ParkingMutex, as a bound that can fail.
//
// Sixteen threads share one ParkingMutex. Fifteen "bargers" grab it with try_lock in a loop
// and hold it ~10 us each time, so it is almost never free; one "waiter" takes it with lock()
// again and again, parks, and can only win a barging race by luck. Without eventual fairness
// the waiter starves; with it, the lock is handed to the waiter once the fairness timer expires.
//
// Wall-clock time would make such a bound depend on machine noise, so the fairness clock is
// injected and driven by the lock's own traffic: every acquisition made by a barger while the
// waiter is parked (seen through parking_lot::parked_count just before the barger unlocks; only
// the waiter ever parks) advances the virtual clock by 250 us. The contract under test: a
// parked waiter is handed the lock at the first unlock once the fairness timer (a random
// 0.25-0.75 ms, stated here as at most 1 ms) has expired, so at most 4 such acquisitions
// happen while it is parked. Time the
// waiter spends not parked (spinning, or woken and not yet scheduled) belongs to the OS
// scheduler, not to the lock, and is not counted.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "lock_test_support.hpp"
#include "locks/parking_lot.hpp"
#include "locks/parking_mutex.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr int bargers = 15;  // + the waiter: a 16-thread run
constexpr auto virtual_step = 250us;
constexpr int bound = 4;  // 1 ms of virtual time / 250 us per counted acquisition

// The injected fairness clock. `frozen` makes the timer never expire: a lock without fairness.
std::atomic<Clock::rep> virtual_now{0};
std::atomic<bool> frozen{false};

Clock::time_point virtual_clock() noexcept {
  if (frozen.load(std::memory_order_relaxed)) return Clock::time_point{};
  return Clock::time_point(Clock::duration(virtual_now.load(std::memory_order_relaxed)));
}

struct FairnessClockScope {
  explicit FairnessClockScope(bool freeze) {
    frozen = freeze;
    // Start past any timer an earlier run may have left in the bucket.
    const auto start = std::max(Clock::now(), virtual_clock()) + 1s;
    virtual_now = start.time_since_epoch().count();
    parking_lot::testing::set_fairness_clock(&virtual_clock);
  }
  ~FairnessClockScope() { parking_lot::testing::set_fairness_clock(nullptr); }
};

struct StarvationRun {
  int waits = 0;
  int worst = 0;  // most barger acquisitions while the waiter was parked, over its waits
};

// Runs waits until `max_waits` or, if `stop_when_exceeded`, until one exceeds the bound.
StarvationRun run_starvation(int max_waits, bool stop_when_exceeded) {
  ParkingMutex lock;
  std::atomic<int> while_parked{0};  // written under `lock`; atomic so bargers may peek
  std::atomic<bool> stop{false};
  StarvationRun run;
  test::run_threads(bargers + 1, [&](int index) {
    if (index == bargers) {  // the waiter
      for (; run.waits < max_waits; ++run.waits) {
        lock.lock();
        run.worst = std::max(run.worst, while_parked.load());
        while_parked = 0;
        lock.unlock();
        if (stop_when_exceeded && run.worst > bound) break;
        std::this_thread::sleep_for(50us);  // let the bargers take the lock back
      }
      stop = true;
      return;
    }
    while (!stop.load()) {
      // Past the bound the outcome is known: stand back so a starving waiter can finish.
      if (while_parked.load(std::memory_order_relaxed) > bound || !lock.try_lock()) {
        std::this_thread::yield();
        continue;
      }
      test::busy_for(10us);
      // The waiter is parked as this acquisition ends, so the unlock below decides between
      // waking it to compete and handing it the lock.
      if (parking_lot::parked_count(&lock) > 0) {
        while_parked.fetch_add(1, std::memory_order_relaxed);
        virtual_now.fetch_add(Clock::duration(virtual_step).count());
      }
      lock.unlock();
    }
  });
  return run;
}

TEST(ParkingMutexFairness, AParkedWaiterIsServedWithinTheBound) {
  FairnessClockScope clock(/*freeze=*/false);
  const StarvationRun run = run_starvation(/*max_waits=*/60, /*stop_when_exceeded=*/false);
  EXPECT_EQ(run.waits, 60);
  EXPECT_LE(run.worst, bound);
  printf("DEBUG fair worst %d\n", run.worst);
}

// The same run with the fairness timer frozen is a ParkingMutex without eventual fairness:
// the waiter then loses to the bargers beyond the bound. This shows the test above can fail.
TEST(ParkingMutexFairness, WithoutFairnessTheBoundIsExceeded) {
  FairnessClockScope clock(/*freeze=*/true);
  const StarvationRun run = run_starvation(/*max_waits=*/3000, /*stop_when_exceeded=*/true);
  EXPECT_GT(run.worst, bound) << "after " << run.waits << " waits";
  printf("DEBUG unfair waits %d worst %d\n", run.waits, run.worst);
}

}  // namespace
}  // namespace troupe
