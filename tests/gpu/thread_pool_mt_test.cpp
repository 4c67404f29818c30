// ThreadPool under many calls, with spinning and with sleeping workers, errors and
// concurrent callers. Run under ThreadSanitizer by the tsan preset.
#include "gpu/thread_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

namespace troupe {
namespace {

// Every task runs exactly once per call, on a valid thread index, and run() returns only
// after all of them finished (their plain writes are visible to the caller).
void check_many_calls(ThreadPool& pool, int calls, bool pause_between) {
  std::vector<int> hits(97);
  std::vector<int> thread_of(97);
  for (int call = 0; call < calls; ++call) {
    const int64_t n_tasks = call % 97;
    std::fill(hits.begin(), hits.end(), 0);
    pool.run(n_tasks, [&](int64_t task, int thread) {
      ++hits[task];
      thread_of[task] = thread;
    });
    for (int64_t t = 0; t < 97; ++t) {
      ASSERT_EQ(hits[t], t < n_tasks ? 1 : 0) << "call " << call << " task " << t;
      if (t < n_tasks) {
        ASSERT_TRUE(thread_of[t] >= 0 && thread_of[t] < pool.size());
      }
    }
    if (pause_between && call % 50 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

TEST(ThreadPoolMt, ManyCallsWithSpinningWorkers) {
  ThreadPool pool(4);
  check_many_calls(pool, 1000, false);
}

TEST(ThreadPoolMt, ManyCallsWithSleepingWorkers) {
  ThreadPool pool(3, /*spin_us=*/0);
  check_many_calls(pool, 600, true);
}

TEST(ThreadPoolMt, TasksRunInParallel) {
  ThreadPool pool(2);
  std::atomic<int> arrived{0};
  std::atomic<bool> both_seen{true};
  pool.run(2, [&](int64_t, int) {
    arrived.fetch_add(1);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (arrived.load() < 2) {
      if (std::chrono::steady_clock::now() > deadline) {
        both_seen = false;
        return;
      }
    }
  });
  EXPECT_TRUE(both_seen.load()) << "the two tasks never ran at the same time";
}

TEST(ThreadPoolMt, StaticSplitGivesTheSameResultForEveryThreadCount) {
  std::vector<double> values(1000);
  for (size_t i = 0; i < values.size(); ++i) values[i] = 1.0 / static_cast<double>(i + 1);
  std::vector<double> first;
  for (int threads : {1, 2, 3, 4}) {
    ThreadPool pool(threads);
    const int parts = 8;
    std::vector<double> partial(parts);
    pool.run(parts, [&](int64_t part, int) {
      const IndexRange range = split(static_cast<int64_t>(values.size()), parts, part);
      double sum = 0.0;
      for (int64_t i = range.begin; i < range.end; ++i) sum += values[i];
      partial[part] = sum;
    });
    if (first.empty()) first = partial;
    EXPECT_EQ(partial, first) << threads << " threads";
  }
}

TEST(ThreadPoolMt, ErrorsPropagateAndThePoolStaysUsable) {
  ThreadPool pool(3);
  for (int round = 0; round < 20; ++round) {
    EXPECT_THROW(pool.run(50,
                          [&](int64_t task, int) {
                            if (task == 17) throw std::runtime_error("task 17 failed");
                          }),
                 std::runtime_error);
    std::atomic<int> count{0};
    pool.run(50, [&](int64_t, int) { count.fetch_add(1); });
    EXPECT_EQ(count.load(), 50);
  }
}

TEST(ThreadPoolMt, ConcurrentCallersAreSerialized) {
  ThreadPool pool(3);
  std::atomic<int> inside{0};
  std::atomic<bool> overlapped{false};
  std::atomic<int> total{0};
  auto caller = [&] {
    for (int call = 0; call < 300; ++call) {
      std::atomic<int> seen_calls{0};
      pool.run(6, [&](int64_t task, int) {
        if (task == 0 && inside.fetch_add(1) != 0) overlapped = true;
        total.fetch_add(1);
        seen_calls.fetch_add(1);
        if (task == 0) inside.fetch_sub(1);
      });
      if (seen_calls.load() != 6) overlapped = true;
    }
  };
  std::thread other(caller);
  caller();
  other.join();
  EXPECT_FALSE(overlapped.load());
  EXPECT_EQ(total.load(), 2 * 300 * 6);
}

TEST(ThreadPoolMt, DestroysWhileWorkersSleepOrSpin) {
  for (int spin_us : {0, 1000}) {
    ThreadPool pool(4, spin_us);
    std::atomic<int> count{0};
    pool.run(8, [&](int64_t, int) { count.fetch_add(1); });
    EXPECT_EQ(count.load(), 8);
  }
}

}  // namespace
}  // namespace troupe
