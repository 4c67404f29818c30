#pragma once
// Statistics over repeated measurements: median, min, max, percentiles, ratios and the
// "do the ranges overlap?" noise hint, plus the interleaved order in which contenders run.
// Pure functions over values; no state, safe to call from any thread.
// An empty sample is a programming error and throws std::invalid_argument.

#include <cstddef>
#include <functional>
#include <span>

namespace troupe {

// Median (mean of the two middle values for an even count), min and max of one sample.
struct Summary {
  double median = 0;
  double min = 0;
  double max = 0;
};

double median(std::span<const double> values);
double min_of(std::span<const double> values);
double max_of(std::span<const double> values);
Summary summarize(std::span<const double> values);

// The p-th percentile, p in [0, 100], interpolated linearly between closest ranks
// (rank = p / 100 * (n - 1)), so percentile(v, 50) == median(v).
double percentile(std::span<const double> values, double p);

// Arithmetic mean.
double mean(std::span<const double> values);

// Mean and the 50th, 90th and 99th percentiles of one sample (latency reports).
struct Distribution {
  double mean = 0;
  double p50 = 0;
  double p90 = 0;
  double p99 = 0;
};
Distribution distribution(std::span<const double> values);
// distribution() of every value times `scale` (1e3: seconds to ms); all NaN for no values.
Distribution scaled_distribution(std::span<const double> values, double scale);

// numerator / denominator; NaN when the denominator is zero or either side is not finite.
double ratio(double numerator, double denominator);

// True when the closed intervals [a.min, a.max] and [b.min, b.max] share a point: the
// difference between the medians may be noise.
bool ranges_overlap(const Summary& a, const Summary& b);

// Calls run(repetition, contender) for every pair, repetition-major (A B C A B C ...), so
// that slow drifts of the machine hit every contender alike.
void for_each_interleaved(std::size_t repetitions, std::size_t contenders,
                          const std::function<void(std::size_t repetition,
                                                   std::size_t contender)>& run);

}  // namespace troupe
