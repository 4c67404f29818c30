#include "gpu/packed_matrix.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
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

// Q8_0 quants are stored as q + 128 (each of the 4 bytes of a word flipped in its top bit).
template <bool kOffset128>
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
      for (int k = 0; k < chunks; ++k) {
        uint32_t word;
        std::memcpy(&word, blk + f.quants + 4 * k, 4);
        if constexpr (kOffset128) word ^= 0x80808080u;
        std::memcpy(t + 64 * k + 4 * j, &word, 4);
      }
      std::memcpy(d_area + 32 * b + 2 * j, blk, 2);
      if (f.has_min) std::memcpy(m_area + 32 * b + 2 * j, blk + 2, 2);
    }
  }
}

// Packed copies share regions of this size (a larger copy gets a region of its own).
constexpr size_t kRegionBytes = 16 * HugePageRegion::kHugePage;

}  // namespace

bool packable(GgmlType type) {
  return type == GgmlType::Q4_0 || type == GgmlType::Q4_1 || type == GgmlType::Q8_0;
}

void PackedMatrix::Free::operator()(uint8_t* p) const { std::free(p); }

size_t PackedMatrix::storage_bytes(const WeightView& w) {
  check_packable(w);
  const size_t groups = static_cast<size_t>((w.rows + kPackedGroupRows - 1) / kPackedGroupRows);
  return std::max<size_t>(groups * group_bytes(w.type, w.cols / 32), 64);
}

PackedMatrix::PackedMatrix(const WeightView& w) : PackedMatrix(w, nullptr) {}

PackedMatrix::PackedMatrix(const WeightView& w, uint8_t* storage)
    : type_(w.type), rows_(w.rows), cols_(w.cols), group_stride_(0) {
  const size_t total = storage_bytes(w);
  group_stride_ = group_bytes(type_, blocks());
  if (storage == nullptr) {
    storage = static_cast<uint8_t*>(std::aligned_alloc(64, total));
    if (storage == nullptr) throw std::bad_alloc();
    owned_.reset(storage);
  }
  data_ = storage;
  std::memset(data_, 0, total);
  for (int64_t g = 0; g < groups(); ++g) {
    uint8_t* dst = data_ + static_cast<size_t>(g) * group_stride_;
    if (type_ == GgmlType::Q8_0)
      pack_group<true>(w, g, dst);
    else
      pack_group<false>(w, g, dst);
  }
}

PackedMatrix pack(const WeightView& w) { return PackedMatrix(w); }

uint8_t* PackedWeights::allocate(size_t bytes) {
  bytes = (bytes + 63) / 64 * 64;
  if (regions_.empty() || regions_.back().memory.size() - regions_.back().used < bytes)
    regions_.push_back({HugePageRegion(std::max(bytes, kRegionBytes)), 0});
  Region& region = regions_.back();
  uint8_t* p = region.memory.data() + region.used;
  region.used += bytes;
  return p;
}

void PackedWeights::attach(WeightView& w) {
  if (!packable(w.type)) return;
  w.packed = &matrices_.emplace_back(PackedMatrix(w, allocate(PackedMatrix::storage_bytes(w))));
}

size_t PackedWeights::bytes() const {
  size_t total = 0;
  for (const PackedMatrix& m : matrices_) total += m.bytes();
  return total;
}

}  // namespace troupe
