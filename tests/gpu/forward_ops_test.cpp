#include "gpu/ops.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gpu/ops_simd.hpp"

namespace troupe {
namespace {

std::vector<float> random_vector(int n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

TEST(Ops, RmsNormMatchesTheFormula) {
  for (int n : {8, 37, 576}) {  // whole vectors, a scalar tail, the SmolLM2 width
    const std::vector<float> x = random_vector(n, 1, 3.0f), w = random_vector(n, 2);
    const float eps = 1e-5f;
    std::vector<float> out(static_cast<size_t>(n));
    rmsnorm(x.data(), w.data(), eps, n, out.data());
    double sum = 0;
    for (float v : x) sum += double(v) * v;
    const double scale = 1.0 / std::sqrt(sum / n + eps);
    for (int i = 0; i < n; ++i)
      EXPECT_NEAR(out[size_t(i)], x[size_t(i)] * scale * w[size_t(i)], 2e-6) << n << " " << i;
  }
}

TEST(Ops, RmsNormWorksInPlace) {
  std::vector<float> x = {3.0f, 4.0f}, w = {1.0f, 2.0f};
  rmsnorm(x.data(), w.data(), 0.0f, 2, x.data());
  // rms = sqrt((9 + 16) / 2) = 3.5355...
  EXPECT_NEAR(x[0], 3.0 / std::sqrt(12.5), 1e-6);
  EXPECT_NEAR(x[1], 8.0 / std::sqrt(12.5), 1e-6);
}

TEST(Ops, RopeAnglesFollowThePositionAndBase) {
  float cos[3], sin[3];
  rope_angles(0, 6, 10000.0f, cos, sin);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(cos[i], 1.0f);
    EXPECT_EQ(sin[i], 0.0f);
  }
  // theta_i = pos * base^(-2i/d): base 10000, d 6: 7, 7 / 10000^(1/3), 7 / 10000^(2/3)
  rope_angles(7, 6, 10000.0f, cos, sin);
  const double theta[3] = {7.0, 7.0 / 21.544346900318832, 7.0 / 464.15888336127773};
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(cos[i], std::cos(theta[i]), 1e-6);
    EXPECT_NEAR(sin[i], std::sin(theta[i]), 1e-6);
  }
}

TEST(Ops, RopeRotatesAdjacentPairsOrHalves) {
  const float cos[2] = {0.6f, 0.0f}, sin[2] = {0.8f, 1.0f};
  // Two heads of 4; the second is the first times 10.
  std::vector<float> adjacent = {1, 2, 3, 4, 10, 20, 30, 40};
  rope(adjacent.data(), 2, 4, RopeLayout::Adjacent, cos, sin);
  // pairs (0,1) by angle 0, (2,3) by angle 1
  const std::vector<float> adjacent_expected = {1 * 0.6f - 2 * 0.8f, 1 * 0.8f + 2 * 0.6f,
                                                -4.0f, 3.0f};
  std::vector<float> halves = {1, 2, 3, 4, 10, 20, 30, 40};
  rope(halves.data(), 2, 4, RopeLayout::Halves, cos, sin);
  // pairs (0,2) by angle 0, (1,3) by angle 1
  const std::vector<float> halves_expected = {1 * 0.6f - 3 * 0.8f, -4.0f, 1 * 0.8f + 3 * 0.6f,
                                              2.0f};
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(adjacent[size_t(i)], adjacent_expected[size_t(i)], 1e-6) << i;
    EXPECT_NEAR(adjacent[size_t(i) + 4], 10 * adjacent_expected[size_t(i)], 1e-5) << i;
    EXPECT_NEAR(halves[size_t(i)], halves_expected[size_t(i)], 1e-6) << i;
    EXPECT_NEAR(halves[size_t(i) + 4], 10 * halves_expected[size_t(i)], 1e-5) << i;
  }
}

TEST(Ops, SwigluMatchesTheFormula) {
  std::vector<float> gate = random_vector(45, 3, 8.0f), up = random_vector(45, 4, 2.0f);
  gate[0] = -100.0f;  // silu saturates to 0 ...
  gate[1] = 100.0f;   // ... and to the identity
  std::vector<float> out(45);
  swiglu(gate.data(), up.data(), 45, out.data());
  for (size_t i = 0; i < 45; ++i) {
    const double g = gate[i];
    const double expected = g / (1.0 + std::exp(-g)) * up[i];
    EXPECT_NEAR(out[i], expected, 1e-6 * std::max(1.0, std::abs(expected))) << i;
  }
}

TEST(Ops, VectorExpIsAccurateOverTheFloatRange) {
  double worst = 0;
  for (float x = -86.0f; x < 88.0f; x += 0.0137f) {
    float in[8], out[8];
    for (int i = 0; i < 8; ++i) in[i] = x + 0.001f * float(i);
    _mm256_storeu_ps(out, simd::exp(_mm256_loadu_ps(in)));
    for (int i = 0; i < 8; ++i) {
      const double expected = std::exp(double(in[i]));
      worst = std::max(worst, std::abs(out[i] - expected) / expected);
    }
  }
  EXPECT_LT(worst, 3e-7);
  float out[8];
  _mm256_storeu_ps(out, simd::exp(_mm256_set1_ps(0.0f)));
  EXPECT_EQ(out[0], 1.0f);
  _mm256_storeu_ps(out, simd::exp(_mm256_set1_ps(-INFINITY)));
  EXPECT_LT(out[0], 1e-37f);
  EXPECT_GE(out[0], 0.0f);
}

TEST(Ops, HighestIndexTakesTheFirstOfTheHighestAndSkipsNaN) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  // Every length around the 8-float vectors, the maximum at each place, then a tie after it.
  for (int n = 1; n <= 19; ++n)
    for (int at = 0; at < n; ++at) {
      std::vector<float> x(static_cast<size_t>(n));
      for (int i = 0; i < n; ++i) x[size_t(i)] = float((i * 7) % 5) - 10.0f;
      x[size_t(at)] = 3.5f;
      EXPECT_EQ(highest_index(x.data(), n), at) << "n " << n;
      for (int tie = at + 1; tie < n; ++tie) {
        std::vector<float> tied = x;
        tied[size_t(tie)] = 3.5f;
        EXPECT_EQ(highest_index(tied.data(), n), at) << "n " << n << " tie at " << tie;
      }
    }
  std::vector<float> x = {1, nan, 2, nan, nan, nan, nan, nan, nan, -1, nan};
  EXPECT_EQ(highest_index(x.data(), int64_t(x.size())), 2);
  x[0] = nan;
  x[2] = nan;
  EXPECT_EQ(highest_index(x.data(), int64_t(x.size())), 9);
  x[9] = nan;
  EXPECT_EQ(highest_index(x.data(), int64_t(x.size())), -1);  // no number at all
  EXPECT_EQ(highest_index(x.data(), 0), -1);
  std::vector<float> low(12, -inf);
  EXPECT_EQ(highest_index(low.data(), 12), 0);
  low[10] = inf;
  EXPECT_EQ(highest_index(low.data(), 12), 10);
}

}  // namespace
}  // namespace troupe
