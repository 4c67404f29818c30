// Quantized weights repacked once at load so that one SIMD lane holds one row: the packed
// kernels behind matmul() then advance 16 rows x 4 columns per VNNI instruction, need no
// horizontal sums and feed every weight byte loaded to a tile of tokens.
// Layout (Q4_0, Q4_1, Q8_0; rows padded with zero rows to a multiple of kPackedGroupRows):
// - Group g (rows 16g..16g+15) starts at data() + g * group_stride() (64-byte aligned) and
//   holds, for each 32-column block b, a quant tile of 64-byte chunks, then the 16 rows' d of
//   every block (fp16, 32 bytes per block), then (Q4_1) their m likewise.
// - Chunk k of block b's tile: bytes 4j..4j+3 belong to row 16g+j. Q4_0 / Q4_1 (4 chunks): the
//   row's stored bytes qs[4k..4k+3], so low nibbles are columns 4k..4k+3 and high nibbles
//   columns 16+4k..16+4k+3, values 0..15. Q8_0 (8 chunks): columns 4k..4k+3 as q + 128.
// PackedMatrix is immutable after construction and safe to read from any number of threads;
// its memory (64-byte aligned) is its own, or a PackedWeights store's. pack() throws
// std::invalid_argument for a type without a packed layout or a view matmul() would refuse.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>

#include "gpu/huge_pages.hpp"
#include "model/ggml_types.hpp"

namespace troupe {

struct WeightView;

inline constexpr int64_t kPackedGroupRows = 16;

// True when pack() accepts weights of this type.
bool packable(GgmlType type);

class PackedMatrix {
 public:
  explicit PackedMatrix(const WeightView& w);

  GgmlType type() const { return type_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  int64_t groups() const { return (rows_ + kPackedGroupRows - 1) / kPackedGroupRows; }
  int64_t blocks() const { return cols_ / 32; }  // per row
  size_t group_stride() const { return group_stride_; }
  size_t bytes() const { return group_stride_ * static_cast<size_t>(groups()); }
  const uint8_t* group(int64_t g) const { return data_ + static_cast<size_t>(g) * group_stride_; }

  // Bytes of one block's quant tile (16 rows x 32 columns).
  static size_t tile_bytes(GgmlType type) { return type == GgmlType::Q8_0 ? 512 : 256; }

 private:
  friend class PackedWeights;
  // Packs into storage (storage_bytes(w) bytes, 64-byte aligned, not owned), or into memory
  // of its own when storage is null.
  PackedMatrix(const WeightView& w, uint8_t* storage);
  static size_t storage_bytes(const WeightView& w);

  struct Free {
    void operator()(uint8_t* p) const;
  };
  GgmlType type_;
  int64_t rows_;
  int64_t cols_;
  size_t group_stride_;
  std::unique_ptr<uint8_t, Free> owned_;
  uint8_t* data_ = nullptr;
};

PackedMatrix pack(const WeightView& w);

// Owns the packed copies of a model's weights. attach(w) packs w when packable(w.type) and
// points w.packed at the copy (valid for the store's life); other views are left unchanged.
// The copies lie back to back, in attach order, in HugePageRegions: a decode step streams
// every weight once, and small pages would cost a TLB miss every 4 KiB.
// Not thread-safe: fill it at load, before the views are shared.
class PackedWeights {
 public:
  PackedWeights() = default;
  PackedWeights(const PackedWeights&) = delete;
  PackedWeights& operator=(const PackedWeights&) = delete;

  void attach(WeightView& w);
  size_t bytes() const;

 private:
  struct Region {
    HugePageRegion memory;
    size_t used = 0;
  };
  uint8_t* allocate(size_t bytes);

  std::deque<Region> regions_;
  std::deque<PackedMatrix> matrices_;
};

}  // namespace troupe
