// HugePageRegion: size rounded to whole 2 MiB, start on a 2 MiB boundary, zeroed and
// writable memory, ownership moving with the object, and a clear failure for a size no
// mapping can have.
#include "gpu/huge_pages.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <new>
#include <utility>

namespace troupe {
namespace {

constexpr size_t kMiB = size_t(1) << 20;

TEST(HugePageRegion, RoundsToWholeHugePagesOnAHugePageBoundary) {
  for (size_t bytes : {size_t(1), 2 * kMiB - 1, 2 * kMiB, 2 * kMiB + 1, 7 * kMiB}) {
    HugePageRegion region(bytes);
    EXPECT_EQ(region.size() % HugePageRegion::kHugePage, 0u) << bytes;
    EXPECT_GE(region.size(), bytes);
    EXPECT_LT(region.size() - bytes, HugePageRegion::kHugePage) << bytes;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(region.data()) % HugePageRegion::kHugePage, 0u);
  }
}

TEST(HugePageRegion, ComesZeroedAndTakesWritesEverywhere) {
  HugePageRegion region(3 * kMiB);
  uint8_t* p = region.data();
  for (size_t at = 0; at < region.size(); at += 4096) EXPECT_EQ(p[at], 0) << at;
  for (size_t at = 0; at < region.size(); at += 4096) p[at] = uint8_t(at / 4096 + 1);
  p[region.size() - 1] = 0xAB;
  for (size_t at = 0; at < region.size(); at += 4096) EXPECT_EQ(p[at], uint8_t(at / 4096 + 1));
  EXPECT_EQ(p[region.size() - 1], 0xAB);
}

TEST(HugePageRegion, MovesItsMapping) {
  HugePageRegion first(kMiB);
  first.data()[5] = 42;
  HugePageRegion second = std::move(first);
  EXPECT_EQ(second.data()[5], 42);
  EXPECT_EQ(first.data(), nullptr);  // NOLINT(bugprone-use-after-move): the contract
  EXPECT_EQ(first.size(), 0u);
  HugePageRegion third;
  EXPECT_EQ(third.data(), nullptr);
  EXPECT_EQ(third.size(), 0u);
  third = std::move(second);
  EXPECT_EQ(third.data()[5], 42);
  EXPECT_EQ(second.data(), nullptr);  // NOLINT(bugprone-use-after-move)
}

TEST(HugePageRegion, ASizeNoMappingCanHaveThrowsBadAlloc) {
  EXPECT_THROW(HugePageRegion(SIZE_MAX), std::bad_alloc);
  EXPECT_THROW(HugePageRegion(SIZE_MAX / 2), std::bad_alloc);  // 8 EiB: mmap refuses
}

}  // namespace
}  // namespace troupe
