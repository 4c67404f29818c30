// split() partitions and FunctionRef, single-threaded.
#include "gpu/thread_pool.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace troupe {
namespace {

TEST(Split, CoversTheRangeInOrderWithNearlyEqualParts) {
  for (int64_t n : {0, 1, 5, 17, 576, 1537})
    for (int64_t parts : {1, 2, 3, 7, 16}) {
      int64_t expected_begin = 0;
      for (int64_t i = 0; i < parts; ++i) {
        const IndexRange range = split(n, parts, i);
        EXPECT_EQ(range.begin, expected_begin);
        EXPECT_GE(range.end, range.begin);
        const int64_t size = range.end - range.begin;
        EXPECT_TRUE(size == n / parts || size == n / parts + 1) << n << " " << parts << " " << i;
        expected_begin = range.end;
      }
      EXPECT_EQ(expected_begin, n);
    }
}

TEST(Split, AlignedBoundaries) {
  // 10 units of 4 (the last one partial) over 3 parts: 4, 3, 3 units.
  EXPECT_EQ(split(38, 3, 0, 4).begin, 0);
  EXPECT_EQ(split(38, 3, 0, 4).end, 16);
  EXPECT_EQ(split(38, 3, 1, 4).begin, 16);
  EXPECT_EQ(split(38, 3, 1, 4).end, 28);
  EXPECT_EQ(split(38, 3, 2, 4).begin, 28);
  EXPECT_EQ(split(38, 3, 2, 4).end, 38);
  // More parts than units: the last parts are empty.
  EXPECT_EQ(split(8, 4, 3, 4).begin, 8);
  EXPECT_EQ(split(8, 4, 3, 4).end, 8);
}

TEST(Split, RejectsBadArguments) {
  EXPECT_THROW(split(10, 0, 0), std::invalid_argument);
  EXPECT_THROW(split(10, 2, 2), std::invalid_argument);
  EXPECT_THROW(split(10, 2, 0, 0), std::invalid_argument);
}

int twice(int v) { return 2 * v; }

TEST(FunctionRef, CallsLambdasAndFunctions) {
  int calls = 0;
  auto add = [&calls](int v) { calls += v; return calls; };
  FunctionRef<int(int)> ref = add;
  EXPECT_EQ(ref(3), 3);
  EXPECT_EQ(ref(4), 7);
  FunctionRef<int(int)> fn = twice;
  EXPECT_EQ(fn(21), 42);
}

TEST(ThreadPool, OneThreadRunsTasksInOrderOnTheCaller) {
  ThreadPool pool(1);
  EXPECT_EQ(pool.size(), 1);
  std::vector<int64_t> order;
  pool.run(5, [&](int64_t task, int thread) {
    EXPECT_EQ(thread, 0);
    order.push_back(task);
  });
  EXPECT_EQ(order, (std::vector<int64_t>{0, 1, 2, 3, 4}));
}

TEST(ThreadPool, RejectsZeroThreads) {
  EXPECT_THROW(ThreadPool pool(0), std::invalid_argument);
}

}  // namespace
}  // namespace troupe
