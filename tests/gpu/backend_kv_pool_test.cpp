#include "gpu/kv_pool.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <stdexcept>
#include <vector>

namespace troupe {
namespace {

constexpr KvShape kShape{/*n_layer=*/2, /*n_head_kv=*/2, /*head_dim=*/4, /*block_tokens=*/16};
constexpr int kRow = kShape.n_head_kv * kShape.head_dim;

std::vector<float> ramp(float start, float step) {
  std::vector<float> v(kRow);
  for (int i = 0; i < kRow; ++i) v[size_t(i)] = start + step * float(i);
  return v;
}

TEST(KvPool, SizesFollowTheShape) {
  // 2 layers x (K, V) x 2 heads x 16 slots x 4 dims x 2 bytes
  EXPECT_EQ(KvPool::bytes_per_block(kShape), 1024u);
  EXPECT_EQ(KvPool::blocks_for_bytes(kShape, 10 * 1024 + 1023), 10);
  EXPECT_EQ(KvPool::blocks_for_bytes(kShape, 1023), 0);
  KvPool pool(kShape, 3);
  EXPECT_EQ(pool.n_blocks(), 3);
  EXPECT_EQ(pool.bytes(), 3u * 1024u);
  EXPECT_EQ(pool.block_tokens(), 16);
}

TEST(KvPool, RejectsUnusableShapes) {
  EXPECT_THROW(KvPool(kShape, 0), std::invalid_argument);
  KvShape no_layers = kShape;
  no_layers.n_layer = 0;
  EXPECT_THROW(KvPool(no_layers, 4), std::invalid_argument);
  KvShape no_block = kShape;
  no_block.block_tokens = 0;
  EXPECT_THROW(KvPool::blocks_for_bytes(no_block, 1 << 20), std::invalid_argument);
}

TEST(KvPool, StartsZeroed) {
  KvPool pool(kShape, 2);
  for (int layer = 0; layer < 2; ++layer)
    for (int32_t block = 0; block < 2; ++block)
      for (int h = 0; h < 2; ++h)
        for (int i = 0; i < 16 * 4; ++i) {
          ASSERT_EQ(pool.k_rows(layer, block, h)[i], 0);
          ASSERT_EQ(pool.v_rows(layer, block, h)[i], 0);
        }
}

TEST(KvPool, StoresThroughTheBlockTable) {
  KvPool pool(kShape, 6);
  const std::vector<int32_t> table = {5, 2};
  // Multiples of 1/4 below 64 are exact in f16.
  const std::vector<float> k = ramp(1.0f, 0.25f), v = ramp(-3.0f, 0.5f);
  pool.store(/*layer=*/1, table, /*pos=*/17, k.data(), v.data());  // block 2, slot 1

  // f16 bits of 1.0, 1.25, 1.5, 1.75 (head 0) and -3.0, -2.5, -2.0, -1.5 (V head 0).
  const uint16_t* k0 = pool.k_rows(1, 2, 0) + 1 * 4;
  EXPECT_EQ(k0[0], 0x3C00);
  EXPECT_EQ(k0[1], 0x3D00);
  EXPECT_EQ(k0[2], 0x3E00);
  EXPECT_EQ(k0[3], 0x3F00);
  const uint16_t* v0 = pool.v_rows(1, 2, 0) + 1 * 4;
  EXPECT_EQ(v0[0], 0xC200);
  EXPECT_EQ(v0[1], 0xC100);
  EXPECT_EQ(v0[2], 0xC000);
  EXPECT_EQ(v0[3], 0xBE00);
  // Head 1 holds elements 4..7: K 2.0 is 0x4000.
  EXPECT_EQ(pool.k_rows(1, 2, 1)[1 * 4], 0x4000);

  // Nothing else was written: the other layer, the other block, the neighbouring slots.
  for (int i = 0; i < 16 * 4; ++i) {
    EXPECT_EQ(pool.k_rows(0, 2, 0)[i], 0);
    EXPECT_EQ(pool.k_rows(1, 5, 0)[i], 0);
  }
  EXPECT_EQ(pool.k_rows(1, 2, 0)[0], 0);
  EXPECT_EQ(pool.k_rows(1, 2, 0)[2 * 4], 0);

  std::vector<float> k_back(kRow), v_back(kRow);
  pool.load(1, table, 17, k_back.data(), v_back.data());
  EXPECT_EQ(k_back, k);
  EXPECT_EQ(v_back, v);
}

TEST(KvPool, RoundsToNearestHalf) {
  KvPool pool(kShape, 1);
  const std::vector<int32_t> table = {0};
  std::vector<float> k(kRow, 1.0f / 3.0f), v(kRow, 70000.0f);
  pool.store(0, table, 3, k.data(), v.data());
  std::vector<float> k_back(kRow), v_back(kRow);
  pool.load(0, table, 3, k_back.data(), v_back.data());
  EXPECT_EQ(k_back[0], 0.333251953125f);  // f16 0x3555, the nearest half to 1/3
  EXPECT_EQ(v_back[0], std::numeric_limits<float>::infinity());  // beyond the f16 range
}

TEST(KvPool, SequencesWithDisjointTablesDoNotMeet) {
  KvPool pool(kShape, 4);
  const std::vector<int32_t> a = {0, 3}, b = {1, 2};
  for (int32_t pos = 0; pos < 32; ++pos) {
    const std::vector<float> ka = ramp(float(pos), 0.25f), kb = ramp(-float(pos), 0.25f);
    pool.store(0, a, pos, ka.data(), ka.data());
    pool.store(0, b, pos, kb.data(), kb.data());
  }
  for (int32_t pos = 0; pos < 32; ++pos) {
    std::vector<float> k(kRow), v(kRow);
    pool.load(0, a, pos, k.data(), v.data());
    EXPECT_EQ(k, ramp(float(pos), 0.25f)) << pos;
    pool.load(0, b, pos, k.data(), v.data());
    EXPECT_EQ(k, ramp(-float(pos), 0.25f)) << pos;
  }
}

}  // namespace
}  // namespace troupe
