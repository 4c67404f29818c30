// KvPool: the K and V memory of every layer, in fixed-size blocks of block_tokens positions,
// stored as f16 (IEEE half, raw bits). A sequence reaches its positions through a block table
// (physical block ids): position p lives in block table[p / block_tokens], slot
// p % block_tokens. The pool hands out no blocks: whoever owns the tables (the KV-cache core)
// decides which sequence uses which block; sequences may share blocks they only read.
// Memory: one HugePageRegion (a step reads runs of a few KiB from blocks anywhere in the pool).
// Layout: block-major; inside a block, for each layer, K then V, each [kv_head][slot][head_dim],
// so one (layer, block, kv head) is block_tokens * head_dim contiguous halves.
// Thread safety: none inside. Distinct (block, slot) cells may be written concurrently;
// whoever writes a cell must not race with readers of it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "gpu/huge_pages.hpp"

namespace troupe {

struct KvShape {
  int n_layer = 0;
  int n_head_kv = 0;
  int head_dim = 0;
  int block_tokens = 16;
};

class KvPool {
 public:
  // Zero-filled memory. Throws std::invalid_argument for a non-positive dimension or
  // n_blocks < 1, and std::bad_alloc when the memory is not there.
  KvPool(const KvShape& shape, int64_t n_blocks);

  // How many blocks fit in `bytes` (at least 1 is not promised: may be 0).
  static int64_t blocks_for_bytes(const KvShape& shape, uint64_t bytes);
  // Bytes of one block: K and V of every layer for block_tokens positions.
  static uint64_t bytes_per_block(const KvShape& shape);

  const KvShape& shape() const { return shape_; }
  int block_tokens() const { return shape_.block_tokens; }
  int64_t n_blocks() const { return n_blocks_; }
  uint64_t bytes() const { return uint64_t(n_blocks_) * bytes_per_block(shape_); }

  // block_tokens * head_dim halves of one (layer, block, kv head); no bounds checks.
  uint16_t* k_rows(int layer, int32_t block, int kv_head) { return rows(layer, block, 0, kv_head); }
  uint16_t* v_rows(int layer, int32_t block, int kv_head) { return rows(layer, block, 1, kv_head); }
  const uint16_t* k_rows(int layer, int32_t block, int kv_head) const {
    return const_cast<KvPool*>(this)->rows(layer, block, 0, kv_head);
  }
  const uint16_t* v_rows(int layer, int32_t block, int kv_head) const {
    return const_cast<KvPool*>(this)->rows(layer, block, 1, kv_head);
  }

  // Stores K and V (n_head_kv * head_dim floats each, head-major) of position pos through
  // block_table, rounding to f16. The caller has checked that the table covers pos.
  void store(int layer, std::span<const int32_t> block_table, int32_t pos, const float* k,
             const float* v);
  // Reads back (as f32) what store() wrote; for tests and debugging.
  void load(int layer, std::span<const int32_t> block_table, int32_t pos, float* k,
            float* v) const;

 private:
  uint16_t* rows(int layer, int32_t block, int k_or_v, int kv_head);

  KvShape shape_;
  int64_t n_blocks_;
  size_t head_stride_;   // halves per (layer, k/v, kv head) in a block
  size_t block_stride_;  // halves per block
  HugePageRegion memory_;
};

}  // namespace troupe
