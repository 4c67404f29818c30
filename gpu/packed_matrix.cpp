#include "gpu/packed_matrix.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "gpu/matmul.hpp"

namespace troupe {

namespace {

size_t group_bytes(GgmlType type, int64_t blocks) {
  const size_t scale_vectors = type == GgmlType::Q4_1 ? 2 : 1;
  const size_t bytes = static_cast<size_t>(blocks) * (PackedMatrix::tile_bytes(type) + 32 * scale_vectors);
  return (bytes + 63) / 64 * 64;
}

void check_packable(const WeightView& w) {
  const std::string name(traits_of(w.type).name);
  if (!packable(w.type))
    throw std::invalid_argument("pack: weight type " + name +
                                " has no packed layout (Q4_0, Q4_1 and Q8_0 do)");
  if (w.cols <= 0 || w.cols % 32 != 0)
    throw std::invalid_argument("pack: row length " + std::to_string(w.cols) +
                                " must be a positive multiple of 32 for " + name + " weights");
  if (w.rows < 0 || (w.rows > 0 && w.data == nullptr))
    throw std::invalid_argument("pack: needs rows >= 0 and data for them");
  if (ggml_row_bytes(w.type, w.cols) > w.row_bytes)
    throw std::invalid_argument("pack: " + std::to_string(w.cols) + " " + name +
                                " elements do not fit rows of " + std::to_string(w.row_bytes) +
                                " bytes");
}

// Field offsets inside one ggml block of the packed types.
struct BlockFields {
  size_t bytes;
  size_t quants;
  bool has_min;
};

BlockFields fields_of(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_0: return {sizeof(BlockQ4_0), offsetof(BlockQ4_0, qs), false};
    case GgmlType::Q4_1: return {sizeof(BlockQ4_1), offsetof(BlockQ4_1, qs), true};
    default: return {sizeof(BlockQ8_0), offsetof(BlockQ8_0, qs), false};
  }
}

void pack_group(const WeightView& w, int64_t g, uint8_t* dst) {
  const BlockFields f = fields_of(w.type);
  const int64_t nb = w.cols / 32;
  const size_t tile = PackedMatrix::tile_bytes(w.type);
  const int chunks = static_cast<int>(tile / 64);
  uint8_t* d_area = dst + static_cast<size_t>(nb) * tile;
  uint8_t* m_area = d_area + static_cast<size_t>(nb) * 32;
  for (int j = 0; j < kPackedGroupRows; ++j) {
    const int64_t r = g * kPackedGroupRows + j;
    if (r >= w.rows) break;  // padding rows stay zero
    const uint8_t* row = w.data + static_cast<size_t>(r) * w.row_bytes;
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = row + static_cast<size_t>(b) * f.bytes;
      uint8_t* t = dst + static_cast<size_t>(b) * tile;
      for (int k = 0; k < chunks; ++k)
        for (int i = 0; i < 4; ++i) {
          const uint8_t q = blk[f.quants + 4 * k + i];
          t[64 * k + 4 * j + i] = w.type == GgmlType::Q8_0 ? static_cast<uint8_t>(q ^ 0x80) : q;
        }
      std::memcpy(d_area + 32 * b + 2 * j, blk, 2);
      if (f.has_min) std::memcpy(m_area + 32 * b + 2 * j, blk + 2, 2);
    }
  }
}

}  // namespace

bool packable(GgmlType type) {
  return type == GgmlType::Q4_0 || type == GgmlType::Q4_1 || type == GgmlType::Q8_0;
}

void PackedMatrix::Free::operator()(uint8_t* p) const { std::free(p); }

PackedMatrix::PackedMatrix(const WeightView& w)
    : type_(w.type), rows_(w.rows), cols_(w.cols), group_stride_(0) {
  check_packable(w);
  group_stride_ = group_bytes(type_, blocks());
  const size_t total = std::max<size_t>(bytes(), 64);
  void* p = std::aligned_alloc(64, total);
  if (p == nullptr) throw std::bad_alloc();
  data_.reset(static_cast<uint8_t*>(p));
  std::memset(p, 0, total);
  for (int64_t g = 0; g < groups(); ++g) pack_group(w, g, data_.get() + static_cast<size_t>(g) * group_stride_);
}

PackedMatrix pack(const WeightView& w) { return PackedMatrix(w); }

void PackedWeights::attach(WeightView& w) {
  if (!packable(w.type)) return;
  w.packed = &matrices_.emplace_back(w);
}

size_t PackedWeights::bytes() const {
  size_t total = 0;
  for (const PackedMatrix& m : matrices_) total += m.bytes();
  return total;
}

}  // namespace troupe
