#include "bench/statistics.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

namespace troupe {
namespace {

std::vector<double> sorted_copy(std::span<const double> values, const char* what) {
  if (values.empty()) throw std::invalid_argument(std::string(what) + " of an empty sample");
  std::vector<double> sorted(values.begin(), values.end());
  std::sort(sorted.begin(), sorted.end());
  return sorted;
}

}  // namespace

double median(std::span<const double> values) { return percentile(values, 50); }

double min_of(std::span<const double> values) {
  if (values.empty()) throw std::invalid_argument("minimum of an empty sample");
  return *std::min_element(values.begin(), values.end());
}

double max_of(std::span<const double> values) {
  if (values.empty()) throw std::invalid_argument("maximum of an empty sample");
  return *std::max_element(values.begin(), values.end());
}

Summary summarize(std::span<const double> values) {
  return {median(values), min_of(values), max_of(values)};
}

double percentile(std::span<const double> values, double p) {
  if (!(p >= 0 && p <= 100)) throw std::invalid_argument("percentile outside [0, 100]");
  const std::vector<double> sorted = sorted_copy(values, "percentile");
  const double rank = p / 100 * static_cast<double>(sorted.size() - 1);
  const auto lower = static_cast<std::size_t>(std::floor(rank));
  const std::size_t upper = std::min(lower + 1, sorted.size() - 1);
  const double fraction = rank - static_cast<double>(lower);
  return sorted[lower] + (sorted[upper] - sorted[lower]) * fraction;
}

double mean(std::span<const double> values) {
  if (values.empty()) throw std::invalid_argument("mean of an empty sample");
  double sum = 0;
  for (double value : values) sum += value;
  return sum / static_cast<double>(values.size());
}

Distribution distribution(std::span<const double> values) {
  return {mean(values), percentile(values, 50), percentile(values, 90), percentile(values, 99)};
}

Distribution scaled_distribution(std::span<const double> values, double scale) {
  if (values.empty()) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    return {nan, nan, nan, nan};
  }
  std::vector<double> scaled;
  scaled.reserve(values.size());
  for (double value : values) scaled.push_back(value * scale);
  return distribution(scaled);
}

double ratio(double numerator, double denominator) {
  if (denominator == 0 || !std::isfinite(numerator) || !std::isfinite(denominator))
    return std::numeric_limits<double>::quiet_NaN();
  return numerator / denominator;
}

bool ranges_overlap(const Summary& a, const Summary& b) {
  return a.min <= b.max && b.min <= a.max;
}

void for_each_interleaved(std::size_t repetitions, std::size_t contenders,
                          const std::function<void(std::size_t, std::size_t)>& run) {
  for (std::size_t repetition = 0; repetition < repetitions; ++repetition)
    for (std::size_t contender = 0; contender < contenders; ++contender)
      run(repetition, contender);
}

}  // namespace troupe
