#include "bench/statistics.hpp"

#include <cmath>
#include <stdexcept>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace troupe {
namespace {

TEST(Statistics, MedianOfOddAndEvenCounts) {
  const std::vector<double> odd{3, 1, 2};
  const std::vector<double> even{4, 1, 3, 2};
  const std::vector<double> single{7};
  EXPECT_DOUBLE_EQ(median(odd), 2);
  EXPECT_DOUBLE_EQ(median(even), 2.5);
  EXPECT_DOUBLE_EQ(median(single), 7);
}

TEST(Statistics, MinMaxAndSummary) {
  const std::vector<double> values{5, -2, 9, 0};
  const Summary summary = summarize(values);
  EXPECT_DOUBLE_EQ(summary.min, -2);
  EXPECT_DOUBLE_EQ(summary.max, 9);
  EXPECT_DOUBLE_EQ(summary.median, 2.5);
}

TEST(Statistics, PercentilesInterpolateBetweenClosestRanks) {
  const std::vector<double> values{50, 10, 40, 20, 30};
  EXPECT_DOUBLE_EQ(percentile(values, 0), 10);
  EXPECT_DOUBLE_EQ(percentile(values, 25), 20);
  EXPECT_DOUBLE_EQ(percentile(values, 50), 30);
  EXPECT_DOUBLE_EQ(percentile(values, 90), 46);  // rank 3.6: 40 + 0.6 * 10
  EXPECT_DOUBLE_EQ(percentile(values, 100), 50);

  std::vector<double> one_to_hundred;
  for (int i = 1; i <= 100; ++i) one_to_hundred.push_back(i);
  EXPECT_NEAR(percentile(one_to_hundred, 99), 99.01, 1e-9);  // rank 98.01
  EXPECT_NEAR(percentile(one_to_hundred, 50), 50.5, 1e-9);
}

TEST(Statistics, EmptySamplesAndBadPercentilesThrow) {
  const std::vector<double> empty;
  const std::vector<double> values{1, 2};
  EXPECT_THROW(median(empty), std::invalid_argument);
  EXPECT_THROW(min_of(empty), std::invalid_argument);
  EXPECT_THROW(max_of(empty), std::invalid_argument);
  EXPECT_THROW(percentile(values, 101), std::invalid_argument);
  EXPECT_THROW(percentile(values, -1), std::invalid_argument);
  EXPECT_THROW(percentile(values, std::nan("")), std::invalid_argument);
}

TEST(Statistics, MeanAndLatencyDistribution) {
  // 1..10: mean 5.5; p50 at rank 4.5 -> 5.5; p90 at rank 8.1 -> 9.1; p99 at rank 8.91 -> 9.91.
  std::vector<double> values{10, 9, 8, 7, 6, 5, 4, 3, 2, 1};
  const Distribution d = distribution(values);
  EXPECT_DOUBLE_EQ(d.mean, 5.5);
  EXPECT_NEAR(d.p50, 5.5, 1e-12);
  EXPECT_NEAR(d.p90, 9.1, 1e-12);
  EXPECT_NEAR(d.p99, 9.91, 1e-12);
  const std::vector<double> skewed{1, 1, 1, 97};
  EXPECT_DOUBLE_EQ(mean(skewed), 25);
  EXPECT_DOUBLE_EQ(distribution(skewed).p50, 1);
  EXPECT_THROW(mean(std::vector<double>{}), std::invalid_argument);
  EXPECT_THROW(distribution(std::vector<double>{}), std::invalid_argument);
}

TEST(Statistics, RatioIsNanWithoutAUsableDenominator) {
  EXPECT_DOUBLE_EQ(ratio(3, 2), 1.5);
  EXPECT_TRUE(std::isnan(ratio(1, 0)));
  EXPECT_TRUE(std::isnan(ratio(std::nan(""), 2)));
  EXPECT_TRUE(std::isnan(ratio(1, INFINITY)));
}

TEST(Statistics, RangesOverlapWhenTheyShareAPoint) {
  EXPECT_TRUE(ranges_overlap({2, 1, 3}, {4, 3, 5}));     // touching ends
  EXPECT_TRUE(ranges_overlap({5, 1, 10}, {4, 3, 5}));    // containment
  EXPECT_FALSE(ranges_overlap({1.5, 1, 2}, {2.7, 2.5, 3}));
  EXPECT_FALSE(ranges_overlap({2.7, 2.5, 3}, {1.5, 1, 2}));
}

TEST(Statistics, InterleavingIsRepetitionMajor) {
  std::vector<std::pair<std::size_t, std::size_t>> order;
  for_each_interleaved(3, 2, [&](std::size_t repetition, std::size_t contender) {
    order.emplace_back(repetition, contender);
  });
  const std::vector<std::pair<std::size_t, std::size_t>> expected{
      {0, 0}, {0, 1}, {1, 0}, {1, 1}, {2, 0}, {2, 1}};
  EXPECT_EQ(order, expected);
}

}  // namespace
}  // namespace troupe
