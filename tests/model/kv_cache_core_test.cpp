#include "model/kv_cache_core.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <list>
#include <map>
#include <new>
#include <random>
#include <set>
#include <stdexcept>
#include <vector>

// Every heap allocation in this program is counted, so a test can assert that a stretch of
// calls allocated nothing.
namespace {
std::atomic<int64_t> g_allocations{0};

void* counted_malloc(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* counted_aligned(std::size_t size, std::align_val_t align) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  const auto alignment = static_cast<std::size_t>(align);
  const std::size_t rounded = (size + alignment - 1) / alignment * alignment;
  if (void* p = std::aligned_alloc(alignment, rounded == 0 ? alignment : rounded)) return p;
  throw std::bad_alloc();
}
}  // namespace

void* operator new(std::size_t size) { return counted_malloc(size); }
void* operator new[](std::size_t size) { return counted_malloc(size); }
void* operator new(std::size_t size, std::align_val_t align) { return counted_aligned(size, align); }
void* operator new[](std::size_t size, std::align_val_t align) {
  return counted_aligned(size, align);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace troupe {
namespace {

using Tokens = std::vector<int32_t>;

uint64_t constant_hash(uint64_t, std::span<const int32_t>) { return 42; }
uint64_t one_bit_hash(uint64_t parent, std::span<const int32_t> tokens) {
  return (parent + uint64_t(tokens[0])) & 1;
}

void expect_consistent(const KvCacheCore& core) {
  const auto violation = core.check();
  ASSERT_FALSE(violation.has_value()) << *violation;
}

std::vector<KvBlockId> table_of(const KvCacheCore& core, uint64_t seq) {
  auto table = core.block_table(seq);
  return {table.begin(), table.end()};
}

bool same_stats(const KvStats& a, const KvStats& b) {
  return a.block_size == b.block_size && a.total_blocks == b.total_blocks &&
         a.free_blocks == b.free_blocks && a.in_use_blocks == b.in_use_blocks &&
         a.cached_idle_blocks == b.cached_idle_blocks &&
         a.peak_in_use_blocks == b.peak_in_use_blocks && a.sequences == b.sequences &&
         a.lookup_tokens == b.lookup_tokens && a.hit_tokens == b.hit_tokens &&
         a.lookup_blocks == b.lookup_blocks && a.hit_blocks == b.hit_blocks &&
         a.evictions == b.evictions;
}

TEST(KvCacheCore, RejectsUnusableConfig) {
  EXPECT_THROW(KvCacheCore({.num_blocks = 0, .block_size = 16}), std::invalid_argument);
  EXPECT_THROW(KvCacheCore({.num_blocks = 4, .block_size = 0}), std::invalid_argument);
  EXPECT_THROW(KvCacheCore({.num_blocks = 1 << 20, .block_size = 1 << 12}),
               std::invalid_argument);
}

TEST(KvCacheCore, ReserveOnColdCacheTakesCeilBlocksAndHitsNothing) {
  KvCacheCore core({.num_blocks = 8, .block_size = 4});
  const Tokens prompt = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  const KvReserveResult result = core.reserve(7, prompt);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result.cached_tokens, 0);
  EXPECT_EQ(core.block_table(7).size(), 3u);
  EXPECT_EQ(core.num_tokens(7), 10);
  EXPECT_FALSE(core.num_tokens(8).has_value());
  const std::set<KvBlockId> distinct(core.block_table(7).begin(), core.block_table(7).end());
  EXPECT_EQ(distinct.size(), 3u);
  for (KvBlockId b : distinct) EXPECT_TRUE(b >= 0 && b < 8);

  const KvStats stats = core.stats();
  EXPECT_EQ(stats.total_blocks, 8);
  EXPECT_EQ(stats.in_use_blocks, 3);
  EXPECT_EQ(stats.free_blocks, 5);
  EXPECT_EQ(stats.cached_idle_blocks, 0);
  EXPECT_EQ(stats.sequences, 1);
  EXPECT_EQ(stats.lookup_tokens, 10u);
  EXPECT_EQ(stats.hit_tokens, 0u);
  EXPECT_EQ(stats.lookup_blocks, 2u);  // the block holding the last token never hits
  expect_consistent(core);
}

TEST(KvCacheCore, AppendFillsTheLastBlockBeforeTakingANewOne) {
  KvCacheCore core({.num_blocks = 4, .block_size = 4});
  ASSERT_TRUE(core.reserve(1, Tokens{1, 2, 3}).ok());
  KvAppendResult first = core.append_slot(1, 4);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first.position, 3);
  EXPECT_EQ(core.block_table(1).size(), 1u);
  KvAppendResult second = core.append_slot(1, 5);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second.position, 4);
  EXPECT_EQ(core.block_table(1).size(), 2u);
  EXPECT_EQ(core.stats().in_use_blocks, 2);

  ASSERT_TRUE(core.reserve(2, Tokens{}).ok());
  EXPECT_TRUE(core.block_table(2).empty());
  KvAppendResult onto_empty = core.append_slot(2, 9);
  ASSERT_TRUE(onto_empty.ok());
  EXPECT_EQ(onto_empty.position, 0);
  EXPECT_EQ(core.block_table(2).size(), 1u);
  expect_consistent(core);
}

TEST(KvCacheCore, SequencesWithACommonPrefixShareItsFullBlocks) {
  KvCacheCore core({.num_blocks = 16, .block_size = 4});
  const Tokens prompt = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  ASSERT_TRUE(core.reserve(1, prompt).ok());
  ASSERT_TRUE(core.append_slot(1, 11).ok());  // publishes the two full prompt blocks
  EXPECT_EQ(core.peek_prefix(prompt), 8);

  const KvReserveResult second = core.reserve(2, prompt);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second.cached_tokens, 8);
  const auto a = table_of(core, 1);
  const auto b = table_of(core, 2);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b[0], a[0]);
  EXPECT_EQ(b[1], a[1]);
  EXPECT_NE(b[2], a[2]);

  KvStats stats = core.stats();
  EXPECT_EQ(stats.in_use_blocks, 4);
  EXPECT_EQ(stats.lookup_tokens, 20u);
  EXPECT_EQ(stats.hit_tokens, 8u);
  EXPECT_EQ(stats.lookup_blocks, 4u);
  EXPECT_EQ(stats.hit_blocks, 2u);
  EXPECT_DOUBLE_EQ(stats.token_hit_rate(), 0.4);
  expect_consistent(core);  // ref-counts of the shared blocks are 2

  ASSERT_EQ(core.free(1), KvError::None);
  stats = core.stats();
  EXPECT_EQ(stats.in_use_blocks, 3);  // the shared blocks stay held by sequence 2
  EXPECT_EQ(stats.cached_idle_blocks, 0);
  EXPECT_EQ(table_of(core, 2), b);
  expect_consistent(core);

  ASSERT_EQ(core.free(2), KvError::None);
  stats = core.stats();
  EXPECT_EQ(stats.in_use_blocks, 0);
  EXPECT_EQ(stats.cached_idle_blocks, 2);
  EXPECT_EQ(stats.free_blocks, 14);
  EXPECT_EQ(core.peek_prefix(prompt), 8);
  expect_consistent(core);

  const KvReserveResult third = core.reserve(3, prompt);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third.cached_tokens, 8);
  EXPECT_EQ(core.stats().cached_idle_blocks, 0);
  EXPECT_EQ(core.stats().in_use_blocks, 3);
  expect_consistent(core);
}

TEST(KvCacheCore, WithoutPrefixCacheNothingIsSharedOrKept) {
  KvCacheCore core({.num_blocks = 16, .block_size = 4, .prefix_cache = false});
  const Tokens prompt = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  ASSERT_TRUE(core.reserve(1, prompt).ok());
  ASSERT_TRUE(core.append_slot(1, 11).ok());  // would publish the two full blocks
  EXPECT_EQ(core.peek_prefix(prompt), 0);
  const KvReserveResult second = core.reserve(2, prompt);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second.cached_tokens, 0);
  const auto a = table_of(core, 1);
  for (KvBlockId b : table_of(core, 2))
    EXPECT_EQ(std::count(a.begin(), a.end(), b), 0) << "block " << b << " shared";
  EXPECT_EQ(core.stats().in_use_blocks, 6);
  expect_consistent(core);
  ASSERT_EQ(core.free(1), KvError::None);
  ASSERT_EQ(core.free(2), KvError::None);
  const KvStats stats = core.stats();
  EXPECT_EQ(stats.cached_idle_blocks, 0);
  EXPECT_EQ(stats.free_blocks, 16);
  EXPECT_EQ(stats.hit_tokens, 0u);
  EXPECT_EQ(core.reserve(3, prompt).cached_tokens, 0);
  expect_consistent(core);
}

TEST(KvCacheCore, OnlyAppendPublishesBlocksAndNeverTheLastPromptBlock) {
  KvCacheCore core({.num_blocks = 16, .block_size = 4});
  const Tokens prompt = {1, 2, 3, 4, 5, 6, 7, 8};
  ASSERT_TRUE(core.reserve(1, prompt).ok());
  EXPECT_EQ(core.peek_prefix(prompt), 0);  // reserved but not computed yet
  ASSERT_EQ(core.free(1), KvError::None);
  EXPECT_EQ(core.stats().cached_idle_blocks, 0);
  EXPECT_EQ(core.peek_prefix(prompt), 0);

  ASSERT_TRUE(core.reserve(2, prompt).ok());
  ASSERT_TRUE(core.append_slot(2, 9).ok());
  const KvReserveResult again = core.reserve(3, prompt);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.cached_tokens, 4);  // the block holding token 8 is computed again
  EXPECT_EQ(core.block_table(3)[0], core.block_table(2)[0]);
  EXPECT_NE(core.block_table(3)[1], core.block_table(2)[1]);
  EXPECT_EQ(core.peek_prefix(Tokens{1, 2, 3, 4, 5, 6, 7, 8, 0}), 8);
  EXPECT_EQ(core.peek_prefix(Tokens{1, 2, 3, 4, 5, 6, 7, 0, 0}), 4);
  EXPECT_EQ(core.peek_prefix(Tokens{0, 2, 3, 4, 5, 6, 7, 8, 0}), 0);
  expect_consistent(core);
}

TEST(KvCacheCore, EvictsTheLeastRecentlyReleasedCachedBlockFirst) {
  KvCacheCore core({.num_blocks = 6, .block_size = 2});
  const Tokens a = {1, 1, 0}, b = {2, 2, 0}, c = {3, 3, 0};
  uint64_t seq = 1;
  for (const Tokens* prompt : {&a, &b, &c}) {
    ASSERT_TRUE(core.reserve(seq, Tokens{(*prompt)[0], (*prompt)[1]}).ok());
    ASSERT_TRUE(core.append_slot(seq, 9).ok());
    ASSERT_EQ(core.free(seq), KvError::None);
    ++seq;
  }
  EXPECT_EQ(core.stats().cached_idle_blocks, 3);
  EXPECT_EQ(core.stats().free_blocks, 3);

  // A hit takes a's block out of the LRU list; releasing it makes it the newest: b, c, a.
  ASSERT_EQ(core.reserve(10, Tokens{1, 1, 5}).cached_tokens, 2);
  ASSERT_EQ(core.free(10), KvError::None);

  ASSERT_TRUE(core.reserve(11, Tokens(8, 7)).ok());  // 3 free blocks + 1 eviction
  EXPECT_EQ(core.stats().evictions, 1u);
  EXPECT_EQ(core.peek_prefix(b), 0);
  EXPECT_EQ(core.peek_prefix(c), 2);
  EXPECT_EQ(core.peek_prefix(a), 2);

  ASSERT_TRUE(core.reserve(12, Tokens{6, 6}).ok());
  EXPECT_EQ(core.stats().evictions, 2u);
  EXPECT_EQ(core.peek_prefix(c), 0);
  EXPECT_EQ(core.peek_prefix(a), 2);
  expect_consistent(core);
}

TEST(KvCacheCore, FreeReleasesAChainTailFirstSoItsHeadOutlivesIt) {
  KvCacheCore core({.num_blocks = 4, .block_size = 2});
  const Tokens prompt = {4, 4, 5, 5, 6};
  ASSERT_TRUE(core.reserve(1, prompt).ok());
  ASSERT_TRUE(core.append_slot(1, 0).ok());
  ASSERT_EQ(core.free(1), KvError::None);
  EXPECT_EQ(core.stats().cached_idle_blocks, 2);
  EXPECT_EQ(core.peek_prefix(prompt), 4);

  ASSERT_TRUE(core.reserve(2, Tokens(5, 8)).ok());  // 2 free blocks + 1 eviction
  EXPECT_EQ(core.stats().evictions, 1u);
  EXPECT_EQ(core.peek_prefix(prompt), 2);
  expect_consistent(core);
}

TEST(KvCacheCore, PeekDoesNotRefreshLruOrderOrCountLookups) {
  KvCacheCore core({.num_blocks = 3, .block_size = 2});
  for (uint64_t seq : {3, 4}) {
    ASSERT_TRUE(core.reserve(seq, Tokens{int32_t(seq), int32_t(seq)}).ok());
    ASSERT_TRUE(core.append_slot(seq, 0).ok());
    ASSERT_EQ(core.free(seq), KvError::None);
  }
  ASSERT_EQ(core.stats().cached_idle_blocks, 2);  // {3,3} released before {4,4}
  ASSERT_EQ(core.stats().free_blocks, 1);

  const KvStats before = core.stats();
  EXPECT_EQ(core.peek_prefix(Tokens{3, 3, 0}), 2);
  EXPECT_TRUE(same_stats(before, core.stats()));

  ASSERT_TRUE(core.reserve(8, Tokens{9, 9, 9}).ok());  // 1 free + evicts the oldest: {3,3}
  EXPECT_EQ(core.stats().evictions, 1u);
  EXPECT_EQ(core.peek_prefix(Tokens{3, 3, 0}), 0);
  EXPECT_EQ(core.peek_prefix(Tokens{4, 4, 0}), 2);
  expect_consistent(core);
}

TEST(KvCacheCore, BlockEvictedAndReusedNeverHitsForItsOldContent) {
  KvCacheCore core({.num_blocks = 2, .block_size = 2});
  ASSERT_TRUE(core.reserve(1, Tokens{1, 1, 2}).ok());
  ASSERT_TRUE(core.append_slot(1, 2).ok());
  const KvBlockId cached_block = core.block_table(1)[0];
  ASSERT_EQ(core.free(1), KvError::None);
  ASSERT_EQ(core.peek_prefix(Tokens{1, 1, 2}), 2);

  ASSERT_TRUE(core.reserve(2, Tokens{3, 3, 4, 4}).ok());
  EXPECT_EQ(core.stats().evictions, 1u);
  const auto table = table_of(core, 2);
  EXPECT_NE(std::find(table.begin(), table.end(), cached_block), table.end());
  EXPECT_EQ(core.append_slot(2, 5).error, KvError::OutOfBlocks);  // both blocks are held
  ASSERT_EQ(core.free(2), KvError::None);

  EXPECT_EQ(core.peek_prefix(Tokens{1, 1, 2}), 0);
  const KvReserveResult again = core.reserve(3, Tokens{1, 1, 2});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.cached_tokens, 0);
  expect_consistent(core);
}

// With every hash equal, only the token comparison and the parent's identity (block and
// generation) keep different content apart.
TEST(KvCacheCore, HashCollisionsNeverAliasDifferentContent) {
  KvCacheCore core({.num_blocks = 5, .block_size = 2, .hasher = constant_hash});
  ASSERT_TRUE(core.reserve(1, Tokens{1, 1, 0}).ok());
  ASSERT_TRUE(core.reserve(2, Tokens{1, 1, 2, 2, 0}).ok());
  ASSERT_TRUE(core.append_slot(1, 5).ok());  // publishes {1,1}
  ASSERT_TRUE(core.append_slot(2, 7).ok());  // {1,1} already published; publishes {2,2} under it
  const KvBlockId head = core.block_table(1)[0];
  EXPECT_EQ(core.peek_prefix(Tokens{1, 1, 2, 2, 0}), 4);
  EXPECT_EQ(core.peek_prefix(Tokens{2, 2, 2, 2, 0}), 0);
  EXPECT_EQ(core.peek_prefix(Tokens{1, 1, 1, 1, 0}), 2);
  ASSERT_EQ(core.free(1), KvError::None);
  ASSERT_EQ(core.free(2), KvError::None);  // LRU: {1,1}, then {2,2}
  ASSERT_EQ(core.stats().free_blocks, 3);

  ASSERT_TRUE(core.reserve(3, Tokens(6, 8)).ok());  // takes the three free blocks
  ASSERT_TRUE(core.reserve(4, Tokens{3, 3}).ok());  // evicts {1,1}: its block now holds {3,3}
  ASSERT_EQ(core.block_table(4)[0], head);
  ASSERT_EQ(core.free(3), KvError::None);
  ASSERT_TRUE(core.append_slot(4, 4).ok());  // publishes {3,3} in the reused block

  // {2,2} is still cached with the old {1,1} block as parent; under {3,3} it must not hit.
  EXPECT_EQ(core.peek_prefix(Tokens{3, 3, 2, 2, 0}), 2);
  EXPECT_EQ(core.peek_prefix(Tokens{1, 1, 2, 2, 0}), 0);
  const KvReserveResult result = core.reserve(5, Tokens{3, 3, 2, 2, 0});
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result.cached_tokens, 2);
  expect_consistent(core);
}

TEST(KvCacheCore, ExhaustionIsReportedAndChangesNothing) {
  KvCacheCore core({.num_blocks = 4, .block_size = 4});
  ASSERT_TRUE(core.reserve(1, Tokens(12, 1)).ok());
  const KvStats before = core.stats();
  const auto table_before = table_of(core, 1);

  const KvReserveResult refused = core.reserve(2, Tokens(8, 2));
  EXPECT_EQ(refused.error, KvError::OutOfBlocks);
  EXPECT_FALSE(refused.ok());
  EXPECT_EQ(refused.cached_tokens, 0);
  EXPECT_FALSE(core.contains(2));
  EXPECT_TRUE(same_stats(before, core.stats()));
  EXPECT_FALSE(core.can_reserve(8));
  EXPECT_TRUE(core.can_reserve(4));
  EXPECT_EQ(core.available_blocks(), 1);
  EXPECT_EQ(core.reserve(3, Tokens(100, 3)).error, KvError::OutOfBlocks);  // more than the pool
  expect_consistent(core);

  for (int32_t t = 0; t < 4; ++t) ASSERT_TRUE(core.append_slot(1, t).ok());
  EXPECT_EQ(core.num_tokens(1), 16);
  const KvStats full = core.stats();
  const auto table_full = table_of(core, 1);
  const KvAppendResult no_room = core.append_slot(1, 9);
  EXPECT_EQ(no_room.error, KvError::OutOfBlocks);
  EXPECT_EQ(no_room.position, -1);
  EXPECT_EQ(core.num_tokens(1), 16);
  EXPECT_EQ(table_of(core, 1), table_full);
  EXPECT_TRUE(same_stats(full, core.stats()));
  EXPECT_EQ(table_full.size(), 4u);
  EXPECT_EQ(std::vector<KvBlockId>(table_full.begin(), table_full.begin() + 3), table_before);
  expect_consistent(core);

  EXPECT_FALSE(describe(KvError::OutOfBlocks).empty());
  EXPECT_NE(describe(KvError::OutOfBlocks), describe(KvError::UnknownSequence));
}

TEST(KvCacheCore, IdleBlocksAPromptHitsAreNotCountedAsEvictableForIt) {
  KvCacheCore core({.num_blocks = 4, .block_size = 2});
  ASSERT_TRUE(core.reserve(9, Tokens{9}).ok());  // holds one block throughout
  ASSERT_TRUE(core.reserve(1, Tokens{1, 1, 2}).ok());
  ASSERT_TRUE(core.append_slot(1, 2).ok());
  ASSERT_EQ(core.free(1), KvError::None);  // {1,1} idle, 2 blocks free
  const KvStats before = core.stats();

  // 4 blocks: 1 hit + 3 fresh, but only 2 free and the one idle block is the hit itself.
  EXPECT_EQ(core.reserve(2, Tokens{1, 1, 3, 3, 5, 5, 7}).error, KvError::OutOfBlocks);
  EXPECT_TRUE(same_stats(before, core.stats()));
  EXPECT_EQ(core.peek_prefix(Tokens{1, 1, 0}), 2);

  const KvReserveResult fits = core.reserve(3, Tokens{1, 1, 3, 3, 5});
  ASSERT_TRUE(fits.ok());
  EXPECT_EQ(fits.cached_tokens, 2);
  EXPECT_EQ(core.stats().evictions, 0u);
  expect_consistent(core);
}

TEST(KvCacheCore, UnknownAndDuplicateSequencesAreReported) {
  KvCacheCore core({.num_blocks = 4, .block_size = 4});
  ASSERT_TRUE(core.reserve(1, Tokens{1, 2}).ok());
  const KvStats before = core.stats();
  EXPECT_EQ(core.reserve(1, Tokens{5, 6, 7}).error, KvError::DuplicateSequence);
  EXPECT_EQ(core.num_tokens(1), 2);
  EXPECT_EQ(core.append_slot(9, 1).error, KvError::UnknownSequence);
  EXPECT_EQ(core.free(9), KvError::UnknownSequence);
  EXPECT_TRUE(same_stats(before, core.stats()));
  ASSERT_EQ(core.free(1), KvError::None);
  EXPECT_EQ(core.free(1), KvError::UnknownSequence);
  EXPECT_TRUE(core.block_table(1).empty());
  ASSERT_TRUE(core.reserve(1, Tokens{3}).ok());  // a freed id may be used again
  expect_consistent(core);
}

TEST(KvCacheCore, BatchedCallsTreatEachEntryInOrder) {
  KvCacheCore core({.num_blocks = 4, .block_size = 2});
  const Tokens p1 = {1}, p2 = {2, 2, 2}, p3 = {3};
  const std::array<KvReserve, 4> requests = {
      {{1, p1}, {2, p2}, {1, p3}, {3, p3}}};
  std::array<KvReserveResult, 4> reserved;
  EXPECT_EQ(core.reserve(requests, reserved), 3);
  EXPECT_TRUE(reserved[0].ok());
  EXPECT_TRUE(reserved[1].ok());
  EXPECT_EQ(reserved[2].error, KvError::DuplicateSequence);
  EXPECT_TRUE(reserved[3].ok());
  EXPECT_EQ(core.available_blocks(), 0);

  const std::array<KvAppend, 5> appends = {{{1, 10}, {1, 11}, {7, 0}, {3, 12}, {2, 13}}};
  std::array<KvAppendResult, 5> appended;
  EXPECT_EQ(core.append_slots(appends, appended), 3);
  EXPECT_EQ(appended[0].position, 1);                        // fills seq 1's block
  EXPECT_EQ(appended[1].error, KvError::OutOfBlocks);        // would need a fifth block
  EXPECT_EQ(appended[2].error, KvError::UnknownSequence);
  EXPECT_EQ(appended[3].position, 1);
  EXPECT_EQ(appended[4].position, 3);
  EXPECT_EQ(core.num_tokens(1), 2);
  EXPECT_EQ(core.num_tokens(2), 4);

  std::array<KvAppendResult, 1> too_few_appended;
  std::array<KvReserveResult, 1> too_few_reserved;
  EXPECT_THROW(core.append_slots(appends, too_few_appended), std::invalid_argument);
  EXPECT_THROW(core.reserve(requests, too_few_reserved), std::invalid_argument);
  EXPECT_EQ(core.num_tokens(1), 2);

  const std::array<uint64_t, 4> ids = {1, 8, 3, 1};
  EXPECT_EQ(core.free(ids), 2);
  EXPECT_FALSE(core.contains(1));
  EXPECT_FALSE(core.contains(3));
  EXPECT_TRUE(core.contains(2));
  EXPECT_EQ(core.stats().in_use_blocks, 2);
  expect_consistent(core);
}

TEST(KvCacheCore, AMovedCoreKeepsItsStateAndWorks) {
  KvCacheCore original({.num_blocks = 8, .block_size = 2});
  ASSERT_TRUE(original.reserve(1, Tokens{1, 1, 2}).ok());
  ASSERT_TRUE(original.append_slot(1, 3).ok());
  const auto table = table_of(original, 1);
  KvCacheCore moved(std::move(original));
  EXPECT_EQ(table_of(moved, 1), table);
  ASSERT_EQ(moved.free(1), KvError::None);
  const KvReserveResult again = moved.reserve(2, Tokens{1, 1, 2});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.cached_tokens, 2);
  expect_consistent(moved);
}

TEST(KvCacheCore, SteadyStateAllocatesNothing) {
  KvCacheCore core({.num_blocks = 64, .block_size = 4});
  const Tokens system = {5, 6, 7, 8, 9, 10, 11, 12};
  std::array<Tokens, 4> prompts;
  for (size_t i = 0; i < prompts.size(); ++i) {
    prompts[i] = system;
    for (size_t j = 0; j <= i + 2; ++j) prompts[i].push_back(int32_t(100 + i * 10 + j));
  }
  std::array<KvReserve, 4> requests;
  std::array<KvReserveResult, 4> reserved;
  std::array<KvAppend, 4> appends;
  std::array<KvAppendResult, 4> appended;
  std::array<uint64_t, 4> ids;
  int64_t failures = 0;
  auto cycle = [&](uint64_t first_id) {
    for (size_t i = 0; i < 4; ++i) {
      requests[i] = {first_id + i, prompts[i]};
      ids[i] = first_id + i;
    }
    failures += 4 - core.reserve(requests, reserved);
    for (int32_t step = 0; step < 9; ++step) {
      for (size_t i = 0; i < 4; ++i) appends[i] = {first_id + i, 1000 + step};
      failures += 4 - core.append_slots(appends, appended);
    }
    failures += 4 - core.free(ids);
  };
  cycle(0);
  cycle(100);
  const int64_t before = g_allocations.load();
  cycle(200);
  cycle(300);
  (void)core.stats();
  (void)core.peek_prefix(prompts[0]);
  const int64_t allocated = g_allocations.load() - before;
  EXPECT_EQ(allocated, 0);
  EXPECT_EQ(failures, 0);
  EXPECT_GT(core.stats().hit_tokens, 0u);
  expect_consistent(core);
}

// ---- randomized operations against a reference model ----

// The specification written plainly: blocks are objects that are never reused (an evicted
// block dies; an allocation makes a new one), the prefix index maps (parent object, tokens)
// to an object, LRU is a list. It knows nothing of hashes, generations or block ids.
class ReferenceCache {
 public:
  ReferenceCache(int num_blocks, int block_size) : free_(num_blocks), block_size_(block_size) {}

  KvReserveResult reserve(uint64_t seq, const Tokens& prompt) {
    if (seqs_.count(seq)) return {KvError::DuplicateSequence, 0};
    std::vector<int64_t> hits = lookup(prompt);
    const size_t needed = (prompt.size() + block_size_ - 1) / block_size_;
    size_t idle_hits = 0;
    for (int64_t h : hits) idle_hits += blocks_[h].refs == 0;
    if (needed - hits.size() + idle_hits > size_t(free_) + lru_.size())
      return {KvError::OutOfBlocks, 0};
    Seq s;
    for (int64_t h : hits) {
      if (blocks_[h].refs++ == 0) lru_.remove(h);
      s.table.push_back(h);
    }
    while (s.table.size() < needed) s.table.push_back(allocate());
    s.tokens = prompt;
    s.registered = hits.size();
    s.chain = hits.empty() ? -1 : hits.back();
    seqs_[seq] = s;
    lookup_tokens_ += prompt.size();
    hit_tokens_ += hits.size() * block_size_;
    lookup_blocks_ += may_hit(prompt.size());
    hit_blocks_ += hits.size();
    note_peak();
    return {KvError::None, int32_t(hits.size() * block_size_)};
  }

  KvAppendResult append(uint64_t seq, int32_t token) {
    auto it = seqs_.find(seq);
    if (it == seqs_.end()) return {KvError::UnknownSequence, -1};
    Seq& s = it->second;
    const bool needs_block = s.tokens.size() % block_size_ == 0;
    if (needs_block && free_ == 0 && lru_.empty()) return {KvError::OutOfBlocks, -1};
    for (; s.registered < s.tokens.size() / block_size_; ++s.registered) {
      if (!s.live) continue;
      if (s.chain != -1 && !(blocks_.count(s.chain) && blocks_[s.chain].registered)) {
        s.live = false;
        continue;
      }
      const Key key{s.chain, slice(s.tokens, s.registered)};
      auto found = index_.find(key);
      if (found != index_.end()) {
        s.chain = found->second;
      } else {
        const int64_t own = s.table[s.registered];
        index_[key] = own;
        key_of_[own] = key;
        blocks_[own].registered = true;
        s.chain = own;
      }
    }
    if (needs_block) s.table.push_back(allocate());
    s.tokens.push_back(token);
    note_peak();
    return {KvError::None, int32_t(s.tokens.size() - 1)};
  }

  KvError free(uint64_t seq) {
    auto it = seqs_.find(seq);
    if (it == seqs_.end()) return KvError::UnknownSequence;
    const std::vector<int64_t>& table = it->second.table;
    for (auto h = table.rbegin(); h != table.rend(); ++h) {
      if (--blocks_[*h].refs > 0) continue;
      if (blocks_[*h].registered) {
        lru_.push_back(*h);
      } else {
        blocks_.erase(*h);
        ++free_;
      }
    }
    seqs_.erase(it);
    return KvError::None;
  }

  int32_t peek(const Tokens& prompt) const { return int32_t(lookup(prompt).size() * block_size_); }

  KvStats stats() const {
    KvStats s;
    s.block_size = block_size_;
    s.free_blocks = free_;
    s.cached_idle_blocks = int32_t(lru_.size());
    s.in_use_blocks = in_use();
    s.total_blocks = s.free_blocks + s.cached_idle_blocks + s.in_use_blocks;
    s.peak_in_use_blocks = peak_;
    s.sequences = int64_t(seqs_.size());
    s.lookup_tokens = lookup_tokens_;
    s.hit_tokens = hit_tokens_;
    s.lookup_blocks = lookup_blocks_;
    s.hit_blocks = hit_blocks_;
    s.evictions = evictions_;
    return s;
  }

  std::vector<uint64_t> live_sequences() const {
    std::vector<uint64_t> ids;
    for (const auto& [id, s] : seqs_) ids.push_back(id);
    return ids;
  }
  const std::vector<int64_t>& table(uint64_t seq) const { return seqs_.at(seq).table; }
  int32_t tokens(uint64_t seq) const { return int32_t(seqs_.at(seq).tokens.size()); }

 private:
  using Key = std::pair<int64_t, Tokens>;
  struct Block {
    int refs = 1;
    bool registered = false;
  };
  struct Seq {
    std::vector<int64_t> table;
    Tokens tokens;
    size_t registered = 0;
    int64_t chain = -1;
    bool live = true;
  };

  size_t may_hit(size_t n) const { return n == 0 ? 0 : (n - 1) / block_size_; }
  Tokens slice(const Tokens& tokens, size_t block) const {
    return Tokens(tokens.begin() + block * block_size_, tokens.begin() + (block + 1) * block_size_);
  }
  std::vector<int64_t> lookup(const Tokens& prompt) const {
    std::vector<int64_t> hits;
    int64_t parent = -1;
    for (size_t i = 0; i < may_hit(prompt.size()); ++i) {
      auto found = index_.find(Key{parent, slice(prompt, i)});
      if (found == index_.end()) break;
      hits.push_back(found->second);
      parent = found->second;
    }
    return hits;
  }
  int64_t allocate() {
    if (free_ > 0) {
      --free_;
    } else {
      const int64_t victim = lru_.front();
      lru_.pop_front();
      index_.erase(key_of_.at(victim));
      key_of_.erase(victim);
      blocks_.erase(victim);
      ++evictions_;
    }
    blocks_[next_handle_] = Block{};
    return next_handle_++;
  }
  int32_t in_use() const {
    int32_t n = 0;
    for (const auto& [h, b] : blocks_) n += b.refs > 0;
    return n;
  }
  void note_peak() { peak_ = std::max(peak_, in_use()); }

  int free_;
  int block_size_;
  int64_t next_handle_ = 0;
  std::map<int64_t, Block> blocks_;  // live objects: in use or cached idle
  std::map<Key, int64_t> index_;
  std::map<int64_t, Key> key_of_;
  std::list<int64_t> lru_;  // front: least recently released
  std::map<uint64_t, Seq> seqs_;
  int32_t peak_ = 0;
  uint64_t lookup_tokens_ = 0, hit_tokens_ = 0, lookup_blocks_ = 0, hit_blocks_ = 0;
  uint64_t evictions_ = 0;
};

struct RandomCase {
  uint32_t seed;
  int32_t num_blocks;
  int32_t block_size;
  KvBlockHasher hasher;
};

void PrintTo(const RandomCase& c, std::ostream* out) {
  *out << "seed " << c.seed << ", " << c.num_blocks << " blocks of " << c.block_size
       << (c.hasher == constant_hash  ? ", constant hash"
           : c.hasher == one_bit_hash ? ", one-bit hash"
                                      : ", built-in hash");
}

class KvCacheCoreRandomized : public ::testing::TestWithParam<RandomCase> {};

// Block ids of the core and objects of the reference must pair up one to one across every
// live table: sharing in one is sharing in the other.
void expect_same_sharing(const KvCacheCore& core, const ReferenceCache& reference) {
  std::map<KvBlockId, int64_t> to_reference;
  std::map<int64_t, KvBlockId> to_core;
  for (uint64_t seq : reference.live_sequences()) {
    ASSERT_TRUE(core.contains(seq)) << "sequence " << seq;
    ASSERT_EQ(core.num_tokens(seq), reference.tokens(seq)) << "sequence " << seq;
    const auto table = core.block_table(seq);
    const auto& expected = reference.table(seq);
    ASSERT_EQ(table.size(), expected.size()) << "sequence " << seq;
    for (size_t i = 0; i < table.size(); ++i) {
      auto [a, new_a] = to_reference.emplace(table[i], expected[i]);
      auto [b, new_b] = to_core.emplace(expected[i], table[i]);
      ASSERT_EQ(a->second, expected[i]) << "sequence " << seq << " block " << i;
      ASSERT_EQ(b->second, table[i]) << "sequence " << seq << " block " << i;
    }
  }
}

void expect_stats_equal(const KvStats& got, const KvStats& want) {
  EXPECT_EQ(got.free_blocks, want.free_blocks);
  EXPECT_EQ(got.in_use_blocks, want.in_use_blocks);
  EXPECT_EQ(got.cached_idle_blocks, want.cached_idle_blocks);
  EXPECT_EQ(got.total_blocks, want.total_blocks);
  EXPECT_EQ(got.peak_in_use_blocks, want.peak_in_use_blocks);
  EXPECT_EQ(got.sequences, want.sequences);
  EXPECT_EQ(got.lookup_tokens, want.lookup_tokens);
  EXPECT_EQ(got.hit_tokens, want.hit_tokens);
  EXPECT_EQ(got.lookup_blocks, want.lookup_blocks);
  EXPECT_EQ(got.hit_blocks, want.hit_blocks);
  EXPECT_EQ(got.evictions, want.evictions);
}

TEST_P(KvCacheCoreRandomized, MatchesTheReferenceModel) {
  const RandomCase param = GetParam();
  KvCacheCore core({param.num_blocks, param.block_size, param.hasher});
  ReferenceCache reference(param.num_blocks, param.block_size);
  std::mt19937 rng(param.seed);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };

  // A few shared beginnings over a tiny alphabet, so prefixes repeat and hashes collide.
  std::vector<Tokens> bases(4);
  for (Tokens& base : bases) {
    base.resize(size_t(uniform(0, 4 * param.block_size)));
    for (int32_t& t : base) t = uniform(0, 2);
  }
  auto random_prompt = [&] {
    Tokens prompt = bases[size_t(uniform(0, 3))];
    prompt.resize(size_t(uniform(0, int(prompt.size()))));
    for (int n = uniform(0, 2 * param.block_size); n > 0; --n) prompt.push_back(uniform(0, 2));
    return prompt;
  };
  uint64_t next_seq = 1;
  auto some_live = [&]() -> uint64_t {
    const auto live = reference.live_sequences();
    if (live.empty() || uniform(0, 19) == 0) return next_seq + 1000;  // unknown
    return live[size_t(uniform(0, int(live.size()) - 1))];
  };

  int64_t out_of_blocks = 0;
  int64_t hits = 0;
  constexpr int kOperations = 4000;
  for (int op = 0; op < kOperations; ++op) {
    const int kind = uniform(0, 99);
    if (kind < 22) {
      const uint64_t seq = uniform(0, 9) == 0 ? some_live() : next_seq++;
      const Tokens prompt = random_prompt();
      const KvReserveResult want = reference.reserve(seq, prompt);
      const KvReserveResult got = core.reserve(seq, prompt);
      ASSERT_EQ(got.error, want.error) << "op " << op;
      ASSERT_EQ(got.cached_tokens, want.cached_tokens) << "op " << op;
      out_of_blocks += want.error == KvError::OutOfBlocks;
      hits += want.cached_tokens > 0;
    } else if (kind < 27) {
      std::array<Tokens, 3> prompts;
      std::array<KvReserve, 3> requests;
      std::array<KvReserveResult, 3> results;
      int64_t want_ok = 0;
      std::array<KvReserveResult, 3> want;
      for (size_t i = 0; i < 3; ++i) {
        prompts[i] = random_prompt();
        requests[i] = {i == 2 ? requests[0].seq : next_seq++, prompts[i]};
        want[i] = reference.reserve(requests[i].seq, prompts[i]);
        want_ok += want[i].ok();
      }
      ASSERT_EQ(core.reserve(requests, results), want_ok) << "op " << op;
      for (size_t i = 0; i < 3; ++i) {
        ASSERT_EQ(results[i].error, want[i].error) << "op " << op;
        ASSERT_EQ(results[i].cached_tokens, want[i].cached_tokens) << "op " << op;
      }
    } else if (kind < 55) {
      const uint64_t seq = some_live();
      const int32_t token = uniform(0, 2);
      const KvAppendResult want = reference.append(seq, token);
      const KvAppendResult got = core.append_slot(seq, token);
      ASSERT_EQ(got.error, want.error) << "op " << op;
      ASSERT_EQ(got.position, want.position) << "op " << op;
    } else if (kind < 70) {
      std::vector<KvAppend> appends(size_t(uniform(1, 6)));
      std::vector<KvAppendResult> results(appends.size());
      std::vector<KvAppendResult> want;
      int64_t want_ok = 0;
      for (KvAppend& append : appends) {
        append = {some_live(), uniform(0, 2)};
        want.push_back(reference.append(append.seq, append.token));
        want_ok += want.back().ok();
      }
      ASSERT_EQ(core.append_slots(appends, results), want_ok) << "op " << op;
      for (size_t i = 0; i < appends.size(); ++i) {
        ASSERT_EQ(results[i].error, want[i].error) << "op " << op;
        ASSERT_EQ(results[i].position, want[i].position) << "op " << op;
      }
    } else if (kind < 82) {
      const uint64_t seq = some_live();
      ASSERT_EQ(core.free(seq), reference.free(seq)) << "op " << op;
    } else if (kind < 87) {
      std::vector<uint64_t> seqs(size_t(uniform(1, 4)));
      int64_t want = 0;
      for (uint64_t& seq : seqs) seq = some_live();
      for (uint64_t seq : seqs) want += reference.free(seq) == KvError::None;
      ASSERT_EQ(core.free(seqs), want) << "op " << op;
    } else {
      const Tokens prompt = random_prompt();
      ASSERT_EQ(core.peek_prefix(prompt), reference.peek(prompt)) << "op " << op;
      const int64_t n = uniform(0, param.num_blocks * param.block_size + 4);
      const KvStats s = reference.stats();
      const int64_t blocks = (n + param.block_size - 1) / param.block_size;
      ASSERT_EQ(core.can_reserve(n), blocks <= s.free_blocks + s.cached_idle_blocks);
    }

    const auto violation = core.check();
    ASSERT_FALSE(violation.has_value()) << "op " << op << ": " << *violation;
    ASSERT_NO_FATAL_FAILURE(expect_same_sharing(core, reference)) << "op " << op;
    const KvStats got = core.stats();
    ASSERT_EQ(got.free_blocks + got.cached_idle_blocks + got.in_use_blocks, param.num_blocks);
    ASSERT_NO_FATAL_FAILURE(expect_stats_equal(got, reference.stats())) << "op " << op;
    if (HasFailure()) FAIL() << "stats differ after op " << op;
  }
  // The workload must really exercise exhaustion, eviction and sharing.
  EXPECT_GT(out_of_blocks, 50);
  EXPECT_GT(hits, 50);
  EXPECT_GT(core.stats().evictions, 200u);
}

INSTANTIATE_TEST_SUITE_P(
    Seeds, KvCacheCoreRandomized,
    ::testing::Values(RandomCase{1, 24, 2, nullptr}, RandomCase{2, 24, 3, nullptr},
                      RandomCase{3, 40, 4, nullptr}, RandomCase{4, 24, 2, constant_hash},
                      RandomCase{5, 32, 3, one_bit_hash}, RandomCase{6, 12, 1, nullptr}),
    [](const ::testing::TestParamInfo<RandomCase>& info) {
      return "seed" + std::to_string(info.param.seed);
    });

}  // namespace
}  // namespace troupe
