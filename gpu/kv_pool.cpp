#include "gpu/kv_pool.hpp"

#include <immintrin.h>

#include <new>
#include <stdexcept>
#include <string>

namespace troupe {

namespace {

void check_shape(const KvShape& s) {
  if (s.n_layer < 1 || s.n_head_kv < 1 || s.head_dim < 1 || s.block_tokens < 1)
    throw std::invalid_argument(
        "KV pool shape must be positive (layers " + std::to_string(s.n_layer) + ", kv heads " +
        std::to_string(s.n_head_kv) + ", head dim " + std::to_string(s.head_dim) +
        ", block tokens " + std::to_string(s.block_tokens) + ")");
}

}  // namespace

uint64_t KvPool::bytes_per_block(const KvShape& s) {
  return uint64_t(s.n_layer) * 2 * uint64_t(s.n_head_kv) * uint64_t(s.block_tokens) *
         uint64_t(s.head_dim) * sizeof(uint16_t);
}

int64_t KvPool::blocks_for_bytes(const KvShape& shape, uint64_t bytes) {
  check_shape(shape);
  return int64_t(bytes / bytes_per_block(shape));
}

KvPool::KvPool(const KvShape& shape, int64_t n_blocks) : shape_(shape), n_blocks_(n_blocks) {
  check_shape(shape);
  if (n_blocks < 1)
    throw std::invalid_argument("KV pool needs at least one block (got " +
                                std::to_string(n_blocks) + ")");
  head_stride_ = size_t(shape.block_tokens) * size_t(shape.head_dim);
  block_stride_ = head_stride_ * size_t(shape.n_head_kv) * 2 * size_t(shape.n_layer);
  const uint64_t total = bytes();
  if (total / uint64_t(n_blocks) != bytes_per_block(shape)) throw std::bad_alloc();
  memory_ = HugePageRegion(total);  // zeroed, touched only when first written
}

uint16_t* KvPool::rows(int layer, int32_t block, int k_or_v, int kv_head) {
  return reinterpret_cast<uint16_t*>(memory_.data()) + size_t(block) * block_stride_ +
         ((size_t(layer) * 2 + size_t(k_or_v)) * size_t(shape_.n_head_kv) + size_t(kv_head)) *
             head_stride_;
}

namespace {

void to_half(const float* src, uint16_t* dst, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}

void from_half(const uint16_t* src, float* dst, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; ++i) dst[i] = _cvtsh_ss(src[i]);
}

}  // namespace

void KvPool::store(int layer, std::span<const int32_t> block_table, int32_t pos, const float* k,
                   const float* v) {
  const int32_t block = block_table[size_t(pos / shape_.block_tokens)];
  const size_t slot = size_t(pos % shape_.block_tokens) * size_t(shape_.head_dim);
  for (int h = 0; h < shape_.n_head_kv; ++h) {
    to_half(k + size_t(h) * shape_.head_dim, k_rows(layer, block, h) + slot, shape_.head_dim);
    to_half(v + size_t(h) * shape_.head_dim, v_rows(layer, block, h) + slot, shape_.head_dim);
  }
}

void KvPool::load(int layer, std::span<const int32_t> block_table, int32_t pos, float* k,
                  float* v) const {
  const int32_t block = block_table[size_t(pos / shape_.block_tokens)];
  const size_t slot = size_t(pos % shape_.block_tokens) * size_t(shape_.head_dim);
  for (int h = 0; h < shape_.n_head_kv; ++h) {
    from_half(k_rows(layer, block, h) + slot, k + size_t(h) * shape_.head_dim, shape_.head_dim);
    from_half(v_rows(layer, block, h) + slot, v + size_t(h) * shape_.head_dim, shape_.head_dim);
  }
}

}  // namespace troupe
