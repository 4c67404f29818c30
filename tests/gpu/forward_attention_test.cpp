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

std::vector<float> random_queries(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> q(n);
  for (float& x : q) x = dist(rng);
  return q;
}

// One call covering n_tokens tokens x n_heads heads, each query against the double reference.
void check_against_reference(int block_tokens, int head_dim, int32_t first_pos, int n_tokens,
                             int n_heads) {
  const int32_t n_pos = first_pos + n_tokens;
  Fixture f(block_tokens, head_dim, n_pos);
  const size_t row_stride = size_t(n_heads) * head_dim + 5;  // rows padded: stride is honoured
  const std::vector<float> q = random_queries(row_stride * n_tokens, uint32_t(n_pos));
  std::vector<float> out(q.size(), -7.0f);
  std::vector<float> scratch(attention_scratch_floats(f.shape, n_tokens * n_heads));
  const double scale = 1.0 / std::sqrt(double(head_dim));
  for (int layer = 0; layer < 2; ++layer)
    for (int kv_head = 0; kv_head < 2; ++kv_head) {
      attend(f.pool, layer, kv_head, f.table, first_pos, n_tokens, n_heads, q.data(), row_stride,
             float(scale), out.data(), scratch.data());
      for (int i = 0; i < n_tokens; ++i)
        for (int j = 0; j < n_heads; ++j) {
          const size_t at = size_t(i) * row_stride + size_t(j) * head_dim;
          const std::vector<float> query(q.begin() + ptrdiff_t(at),
                                         q.begin() + ptrdiff_t(at) + head_dim);
          const std::vector<double> expected =
              f.reference(layer, kv_head, first_pos + i + 1, query, scale);
          for (int c = 0; c < head_dim; ++c)
            ASSERT_NEAR(out[at + size_t(c)], expected[size_t(c)], 2e-5)
                << "block " << block_tokens << " dim " << head_dim << " first " << first_pos
                << " token " << i << " head " << j << " layer " << layer << " kv head "
                << kv_head << " element " << c;
        }
      // The padding between rows is not written.
      for (int i = 0; i < n_tokens; ++i)
        for (size_t c = size_t(n_heads) * head_dim; c < row_stride; ++c)
          ASSERT_EQ(out[size_t(i) * row_stride + c], -7.0f);
    }
}

TEST(Attention, OneQueryMatchesASoftmaxOverThePagedCache) {
  for (int block_tokens : {16, 5})
    for (int head_dim : {64, 12})
      for (int32_t n_pos : {1, 4, 5, 16, 17, 40})
        check_against_reference(block_tokens, head_dim, n_pos - 1, 1, 1);
}

TEST(Attention, TokensAndGroupedHeadsInOneCall) {
  check_against_reference(16, 64, 0, 37, 3);   // a prefill from position 0
  check_against_reference(16, 64, 21, 9, 3);   // a later chunk, starting mid-block
  check_against_reference(5, 12, 3, 14, 2);    // odd sizes everywhere
  check_against_reference(4, 16, 30, 1, 8);    // one decode token, a wide group
}

// Several 64-position windows, the last one partial, at head sizes cut into 64-column chunks
// and 8-column remainders.
TEST(Attention, DecodeAcrossWindows) {
  for (int head_dim : {16, 48, 64, 80})
    for (int32_t n_pos : {63, 65, 100, 128}) check_against_reference(16, head_dim, n_pos - 1, 1, 3);
  check_against_reference(16, 32, 70, 30, 2);  // a chunk whose tokens span two windows
}

// Each query's result depends on itself alone: computing it in a call with other tokens and
// heads gives the same bits as computing it alone.
TEST(Attention, AQueryIsIndependentOfItsCompanions) {
  Fixture f(16, 64, 90);
  const size_t row_stride = 3 * 64;
  const std::vector<float> q = random_queries(row_stride * 20, 3);
  std::vector<float> together(q.size()), alone(q.size());
  std::vector<float> scratch(attention_scratch_floats(f.shape, 60));
  // Tokens at positions 60..79: their windows start at 0 and 64.
  attend(f.pool, 1, 1, f.table, 60, 20, 3, q.data(), row_stride, 0.125f, together.data(),
         scratch.data());
  for (int i = 0; i < 20; ++i)
    for (int j = 0; j < 3; ++j) {
      const size_t at = size_t(i) * row_stride + size_t(j) * 64;
      attend(f.pool, 1, 1, f.table, 60 + i, 1, 1, q.data() + at, row_stride, 0.125f,
             alone.data() + at, scratch.data());
    }
  EXPECT_EQ(together, alone);
}

TEST(Attention, OnePositionReturnsItsValue) {
  Fixture f(16, 8, 1);
  std::vector<float> q(8, 0.5f), out(8), k(16), v(16);
  std::vector<float> scratch(attention_scratch_floats(f.shape, 1));
  attend(f.pool, 1, 1, f.table, 0, 1, 1, q.data(), 8, 0.3f, out.data(), scratch.data());
  f.pool.load(1, f.table, 0, k.data(), v.data());
  for (int i = 0; i < 8; ++i) EXPECT_EQ(out[size_t(i)], v[size_t(8 + i)]);
}

TEST(Attention, ReadsOnlyThePositionsItIsGiven) {
  Fixture f(4, 8, 12);
  std::vector<float> q(8, 0.25f), before(8), after(8), k(16), v(16, 1000.0f);
  std::vector<float> scratch(attention_scratch_floats(f.shape, 1));
  attend(f.pool, 0, 0, f.table, 8, 1, 1, q.data(), 8, 0.3f, before.data(), scratch.data());
  // A huge value at position 9 (after the query's position 8) must not change the result.
  for (float& x : k) x = 50.0f;
  f.pool.store(0, f.table, 9, k.data(), v.data());
  attend(f.pool, 0, 0, f.table, 8, 1, 1, q.data(), 8, 0.3f, after.data(), scratch.data());
  EXPECT_EQ(before, after);
}

}  // namespace
}  // namespace troupe
