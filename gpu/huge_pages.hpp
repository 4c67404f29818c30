// HugePageRegion: anonymous memory that starts on a 2 MiB boundary and is asked to be backed
// by 2 MiB pages (madvise(MADV_HUGEPAGE), a hint: where the kernel declines, 4 KiB pages
// work the same, only slower). For memory that steps read all over: packed weights (streamed
// once per step) and the KV pool (runs of a few KiB from blocks anywhere in it). With 4 KiB
// pages, each run costs a TLB miss.
// - The memory comes zeroed and is backed only when first touched (in 2 MiB steps where the
//   kernel grants huge pages).
// - Owns the mapping (move-only; a moved-from region is empty, like a default-constructed
//   one); unmapped on destruction. Throws std::bad_alloc when the
//   mapping fails.
// - Thread safety: none inside; it is plain memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

namespace troupe {

class HugePageRegion {
 public:
  static constexpr size_t kHugePage = size_t(2) << 20;

  HugePageRegion() = default;
  explicit HugePageRegion(size_t bytes);  // size() is bytes rounded up to a whole 2 MiB
  HugePageRegion(HugePageRegion&& other) noexcept { *this = std::move(other); }
  HugePageRegion& operator=(HugePageRegion&& other) noexcept {  // other is left empty
    mapping_ = std::move(other.mapping_);
    begin_ = std::exchange(other.begin_, nullptr);
    size_ = std::exchange(other.size_, 0);
    return *this;
  }

  uint8_t* data() const { return begin_; }
  size_t size() const { return size_; }

 private:
  struct Unmap {
    size_t bytes;
    void operator()(uint8_t* p) const;
  };
  std::unique_ptr<uint8_t, Unmap> mapping_{nullptr, Unmap{0}};
  uint8_t* begin_ = nullptr;  // the first 2 MiB boundary in the mapping
  size_t size_ = 0;
};

}  // namespace troupe
