// Guarded<T, Lock>: access only through a held lock, for exclusive and shared locks.
#include "locks/guarded.hpp"

#include <gtest/gtest.h>

#include <condition_variable>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "lock_test_support.hpp"
#include "locks/counted.hpp"
#include "locks/parking_condvar.hpp"
#include "locks/parking_rw_lock.hpp"
#include "locks/std_locks.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;

TEST(Guarded, ConstructsTheValueInPlace) {
  Guarded<std::string> text(3, 'x');
  EXPECT_EQ(text.with([](std::string& s) { return s; }), "xxx");
}

TEST(Guarded, WithReturnsWhatTheFunctionReturnsIncludingReferences) {
  Guarded<std::vector<int>> numbers(std::vector<int>{1, 2, 3});
  EXPECT_EQ(numbers.with([](std::vector<int>& v) { return v.size(); }), 3u);
  numbers.with([](std::vector<int>& v) { v.push_back(4); });
  EXPECT_EQ(numbers.with([](const std::vector<int>& v) { return v.back(); }), 4);
}

TEST(Guarded, TheLockIsHeldInsideWithAndReleasedAfter) {
  Guarded<int> value(0);
  const auto probe = [&] {
    return std::async(std::launch::async, [&] {
             auto guard = value.try_lock();
             return guard.has_value();
           }).get();
  };
  value.with([&](int&) { EXPECT_FALSE(probe()); });
  EXPECT_TRUE(probe());
}

TEST(Guarded, AGuardHoldsTheLockForItsLifetime) {
  Guarded<std::vector<int>> numbers;
  {
    auto guard = numbers.lock();
    guard->push_back(1);
    (*guard).push_back(2);
    EXPECT_FALSE(std::async(std::launch::async, [&] { return numbers.try_lock().has_value(); }).get());
    auto moved = std::move(guard);
    EXPECT_EQ(moved->size(), 2u);
  }
  EXPECT_TRUE(std::async(std::launch::async, [&] { return numbers.try_lock().has_value(); }).get());
}

TEST(Guarded, SharedAccessLetsReadersInTogetherButNotAWriter) {
  Guarded<int, ParkingRwLock> value(42);
  auto reader = value.lock_shared();
  EXPECT_EQ(*reader, 42);
  EXPECT_EQ(std::async(std::launch::async, [&] {
              return value.with_shared([](const int& v) { return v + 1; });
            }).get(),
            43);
  EXPECT_FALSE(std::async(std::launch::async, [&] { return value.try_lock().has_value(); }).get());
}

TEST(Guarded, WorksWithTheStandardLocks) {
  Guarded<int, StdSharedMutex> shared(1);
  EXPECT_EQ(shared.with_shared([](const int& v) { return v; }), 1);
  Guarded<int, StdMutex> exclusive(2);
  EXPECT_EQ(exclusive.with([](int& v) { return ++v; }), 3);
}

TEST(Guarded, ExposesTheLockStatisticsOfACountedLock) {
  Guarded<int, Counted<ParkingMutex>> value(0);
  for (int i = 0; i < 5; ++i) value.with([](int& v) { ++v; });
  EXPECT_EQ(value.lock_object().snapshot().acquisitions, 5u);
}

template <class Condvar, class Lock>
void hand_over_through_a_guard() {
  Guarded<std::vector<int>, Lock> queue;
  Condvar not_empty;
  std::thread producer([&] {
    std::this_thread::sleep_for(5ms);
    queue.with([](std::vector<int>& q) { q.push_back(7); });
    not_empty.notify_one();
  });
  auto guard = queue.lock();
  EXPECT_TRUE(guard.wait_until(not_empty, std::chrono::steady_clock::now() + test::generous_timeout,
                               [](std::vector<int>& q) { return !q.empty(); }));
  EXPECT_EQ(guard->front(), 7);
  producer.join();
}

TEST(Guarded, AGuardWaitsOnACondvarUnderTheLock) {
  hand_over_through_a_guard<ParkingCondvar, ParkingMutex>();
  hand_over_through_a_guard<std::condition_variable_any, ParkingMutex>();
  hand_over_through_a_guard<std::condition_variable, StdMutex>();
}

TEST(Guarded, ConcurrentWritersAreSerialized) {
  Guarded<std::vector<int>, ParkingMutex> numbers;
  test::run_threads(8, [&](int index) {
    for (int i = 0; i < 500; ++i) numbers.with([&](std::vector<int>& v) { v.push_back(index); });
  });
  EXPECT_EQ(numbers.with([](std::vector<int>& v) { return v.size(); }), 8u * 500);
}

}  // namespace
}  // namespace troupe
