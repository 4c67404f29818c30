#include "gpu/attention.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace troupe {
namespace {

struct Fixture {
  KvShape shape;
  KvPool pool;
  std::vector<int32_t> table;

  Fixture(int block_tokens, int head_dim, int n_pos)
      : shape{/*n_layer=*/2, /*n_head_kv=*/2, head_dim, block_tokens}, pool(shape, 16) {
    // Blocks scattered backwards through the pool, so table order matters.
    for (int b = 0; b * block_tokens < n_pos; ++b) table.push_back(15 - 2 * b);
    std::mt19937 rng(uint32_t(block_tokens * 1000 + n_pos));
    std::normal_distribution<float> dist(0.0f, 1.5f);
    std::vector<float> k(size_t(2 * head_dim)), v(size_t(2 * head_dim));
    for (int32_t pos = 0; pos < n_pos; ++pos)
      for (int layer = 0; layer < 2; ++layer) {
        for (float& x : k) x = dist(rng);
        for (float& x : v) x = dist(rng);
        pool.store(layer, table, pos, k.data(), v.data());
      }
  }

  // softmax(scale q.K) V in double over what the pool holds (the f16-rounded K and V).
  std::vector<double> reference(int layer, int kv_head, int n_pos, const std::vector<float>& q,
                                double scale) const {
    const int d = shape.head_dim;
    std::vector<float> k(size_t(2 * d)), v(size_t(2 * d));
    std::vector<double> scores, out(size_t(d), 0.0);
    std::vector<std::vector<float>> values;
    for (int32_t pos = 0; pos < n_pos; ++pos) {
      pool.load(layer, table, pos, k.data(), v.data());
      double s = 0;
      for (int i = 0; i < d; ++i) s += double(q[size_t(i)]) * k[size_t(kv_head * d + i)];
      scores.push_back(s * scale);
      values.emplace_back(v.begin() + kv_head * d, v.begin() + (kv_head + 1) * d);
    }
    const double max = *std::max_element(scores.begin(), scores.end());
    double denom = 0;
    for (double& s : scores) denom += (s = std::exp(s - max));
    for (size_t p = 0; p < scores.size(); ++p)
      for (int i = 0; i < d; ++i) out[size_t(i)] += scores[p] / denom * values[p][size_t(i)];
    return out;
  }
};

TEST(Attention, MatchesASoftmaxOverThePagedCache) {
  for (int block_tokens : {16, 5}) {
    for (int head_dim : {64, 12}) {
      for (int n_pos : {1, 4, 5, 16, 17, 40}) {
        Fixture f(block_tokens, head_dim, n_pos);
        std::mt19937 rng(7);
        std::normal_distribution<float> dist(0.0f, 1.0f);
        const size_t dims = static_cast<size_t>(head_dim);
        std::vector<float> q(dims), out(dims);
        for (float& x : q) x = dist(rng);
        std::vector<float> scratch(size_t(attention_scratch_floats(block_tokens)));
        const double scale = 1.0 / std::sqrt(double(head_dim));
        for (int layer = 0; layer < 2; ++layer)
          for (int kv_head = 0; kv_head < 2; ++kv_head) {
            attend(f.pool, layer, kv_head, f.table, n_pos, q.data(), float(scale), out.data(),
                   scratch.data());
            const std::vector<double> expected = f.reference(layer, kv_head, n_pos, q, scale);
            for (int i = 0; i < head_dim; ++i)
              ASSERT_NEAR(out[size_t(i)], expected[size_t(i)], 2e-5)
                  << "block " << block_tokens << " dim " << head_dim << " positions " << n_pos
                  << " layer " << layer << " head " << kv_head << " element " << i;
          }
      }
    }
  }
}

TEST(Attention, OnePositionReturnsItsValue) {
  Fixture f(16, 8, 1);
  std::vector<float> q(8, 0.5f), out(8), k(16), v(16);
  std::vector<float> scratch(size_t(attention_scratch_floats(16)));
  attend(f.pool, 1, 1, f.table, 1, q.data(), 0.3f, out.data(), scratch.data());
  f.pool.load(1, f.table, 0, k.data(), v.data());
  for (int i = 0; i < 8; ++i) EXPECT_EQ(out[size_t(i)], v[size_t(8 + i)]);
}

TEST(Attention, ReadsOnlyThePositionsItIsGiven) {
  Fixture f(4, 8, 12);
  std::vector<float> q(8, 0.25f), before(8), after(8), k(16), v(16, 1000.0f);
  std::vector<float> scratch(size_t(attention_scratch_floats(4)));
  attend(f.pool, 0, 0, f.table, 9, q.data(), 0.3f, before.data(), scratch.data());
  // A huge value at position 9 (outside [0, 9)) must not change the result.
  for (float& x : k) x = 50.0f;
  f.pool.store(0, f.table, 9, k.data(), v.data());
  attend(f.pool, 0, 0, f.table, 9, q.data(), 0.3f, after.data(), scratch.data());
  EXPECT_EQ(before, after);
}

}  // namespace
}  // namespace troupe
