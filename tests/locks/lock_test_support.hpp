#pragma once
// Helpers shared by the lock tests: starting threads together, bounded polling, busy work.

#include <atomic>
#include <chrono>
#include <functional>
#include <latch>
#include <thread>
#include <vector>

namespace troupe::test {

using namespace std::chrono_literals;

// A deadline long enough that reaching it means a bug (a lost wake-up, a deadlock), never a
// slow machine; tests fail rather than hang when they reach it.
inline constexpr auto generous_timeout = 20s;

// Runs body(index) on `count` threads released at once; joins them all.
inline void run_threads(int count, const std::function<void(int)>& body) {
  std::latch start(count);
  std::vector<std::thread> threads;
  threads.reserve(count);
  for (int i = 0; i < count; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      body(i);
    });
  }
  for (auto& thread : threads) thread.join();
}

// Polls condition() until it holds or `timeout` passes; returns its last value.
template <class Condition>
bool eventually(Condition condition, std::chrono::steady_clock::duration timeout = generous_timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return condition();
    std::this_thread::sleep_for(50us);
  }
  return true;
}

// Keeps the CPU busy for about `duration` (not a sleep: the thread stays runnable).
inline void busy_for(std::chrono::steady_clock::duration duration) {
  const auto end = std::chrono::steady_clock::now() + duration;
  while (std::chrono::steady_clock::now() < end) {
  }
}

}  // namespace troupe::test
