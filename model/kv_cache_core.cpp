#include "model/kv_cache_core.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>

namespace troupe {

namespace {

uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

// Two tokens per mixing round; an odd last token is mixed with its length so that
// {a} and {a, 0} differ.
uint64_t builtin_block_hash(uint64_t parent_hash, std::span<const int32_t> tokens) {
  uint64_t h = mix64(parent_hash + 0x9e3779b97f4a7c15ull);
  size_t i = 0;
  for (; i + 1 < tokens.size(); i += 2)
    h = mix64(h ^ (uint64_t(uint32_t(tokens[i])) | uint64_t(uint32_t(tokens[i + 1])) << 32));
  if (i < tokens.size()) h = mix64(h ^ uint32_t(tokens[i]) ^ (uint64_t(tokens.size()) << 32));
  return h;
}

std::string describe_block(int32_t block) { return "block " + std::to_string(block); }

}  // namespace

std::string_view describe(KvError error) {
  switch (error) {
    case KvError::None:
      return "no error";
    case KvError::OutOfBlocks:
      return "the KV cache has no free or evictable block left: raise the KV budget, lower the "
             "number of concurrent sequences, or retry when sequences finish";
    case KvError::UnknownSequence:
      return "no live sequence has this id in the KV cache: it was never reserved or was "
             "already freed";
    case KvError::DuplicateSequence:
      return "a live sequence already has this id in the KV cache: free it first or use a new id";
  }
  return "unknown KV cache error";
}

KvCacheCore::KvCacheCore(const KvCacheConfig& config)
    : block_size_(config.block_size),
      hasher_(config.hasher ? config.hasher : builtin_block_hash),
      prefix_cache_(config.prefix_cache),
      node_pool_(std::make_unique<std::pmr::unsynchronized_pool_resource>()),
      index_(node_pool_.get()),
      sequences_(node_pool_.get()) {
  if (config.num_blocks < 1)
    throw std::invalid_argument("KV cache: num_blocks must be at least 1, got " +
                                std::to_string(config.num_blocks));
  if (config.block_size < 1)
    throw std::invalid_argument("KV cache: block_size must be at least 1 token, got " +
                                std::to_string(config.block_size));
  if (int64_t(config.num_blocks) * config.block_size > std::numeric_limits<int32_t>::max())
    throw std::invalid_argument("KV cache: num_blocks * block_size (" +
                                std::to_string(int64_t(config.num_blocks) * config.block_size) +
                                " token positions) exceeds 2^31 - 1");
  blocks_.resize(config.num_blocks);
  block_tokens_.resize(size_t(config.num_blocks) * config.block_size);
  free_list_.reserve(config.num_blocks);
  for (KvBlockId b = config.num_blocks - 1; b >= 0; --b) free_list_.push_back(b);
  scratch_hits_.reserve(config.num_blocks);
  index_.reserve(config.num_blocks);
  sequences_.reserve(config.num_blocks);
  counters_.block_size = block_size_;
  counters_.total_blocks = config.num_blocks;
}

// ---- prefix index ----

int32_t KvCacheCore::prompt_blocks_that_may_hit(size_t prompt_tokens, int32_t block_size) {
  return prompt_tokens == 0 ? 0 : static_cast<int32_t>((prompt_tokens - 1) / block_size);
}

std::span<int32_t> KvCacheCore::tokens_of(KvBlockId block) {
  return {block_tokens_.data() + size_t(block) * block_size_, size_t(block_size_)};
}

std::span<const int32_t> KvCacheCore::tokens_of(KvBlockId block) const {
  return {block_tokens_.data() + size_t(block) * block_size_, size_t(block_size_)};
}

uint64_t KvCacheCore::hash_block(uint64_t parent_hash, std::span<const int32_t> tokens) const {
  return hasher_(parent_hash, tokens);
}

bool KvCacheCore::is_current(BlockRef ref) const {
  return ref.id == kNoBlock ||
         (blocks_[ref.id].hashed && blocks_[ref.id].generation == ref.generation);
}

KvBlockId KvCacheCore::find_registered(uint64_t hash, BlockRef parent,
                                       std::span<const int32_t> tokens) const {
  auto [first, last] = index_.equal_range(hash);
  for (auto it = first; it != last; ++it) {
    const KvBlockId candidate = it->second;
    if (blocks_[candidate].parent == parent && std::ranges::equal(tokens_of(candidate), tokens))
      return candidate;
  }
  return kNoBlock;
}

template <class OnHit>
KvCacheCore::PrefixMatch KvCacheCore::match_prefix(std::span<const int32_t> prompt,
                                                   OnHit on_hit) const {
  PrefixMatch match;
  const int32_t may_hit = prompt_blocks_that_may_hit(prompt.size(), block_size_);
  for (int32_t i = 0; i < may_hit; ++i) {
    auto tokens = prompt.subspan(size_t(i) * block_size_, size_t(block_size_));
    const uint64_t hash = hash_block(match.hash, tokens);
    const KvBlockId block = find_registered(hash, match.last, tokens);
    if (block == kNoBlock) break;
    on_hit(block);
    match.blocks = i + 1;
    match.hash = hash;
    match.last = {block, blocks_[block].generation};
  }
  return match;
}

void KvCacheCore::register_full_blocks(Sequence& sequence) {
  if (!prefix_cache_) return;  // nothing registered: nothing to hit, freed blocks go free
  const int32_t full = sequence.tokens / block_size_;
  for (; sequence.registered < full; ++sequence.registered) {
    if (!sequence.chain_live) continue;
    if (!is_current(sequence.chain)) {
      sequence.chain_live = false;
      continue;
    }
    const KvBlockId own = sequence.table[sequence.registered];
    auto tokens = tokens_of(own);
    const uint64_t hash = hash_block(sequence.chain_hash, tokens);
    KvBlockId canonical = find_registered(hash, sequence.chain, tokens);
    if (canonical == kNoBlock) {
      Block& block = blocks_[own];
      block.hashed = true;
      block.hash = hash;
      block.parent = sequence.chain;
      index_.emplace(hash, own);
      canonical = own;
    }
    sequence.chain = {canonical, blocks_[canonical].generation};
    sequence.chain_hash = hash;
  }
}

// ---- block states ----

void KvCacheCore::lru_push_back(KvBlockId b) {
  Block& block = blocks_[b];
  block.lru_prev = lru_tail_;
  block.lru_next = kNoBlock;
  if (lru_tail_ != kNoBlock)
    blocks_[lru_tail_].lru_next = b;
  else
    lru_head_ = b;
  lru_tail_ = b;
  ++lru_size_;
}

void KvCacheCore::lru_remove(KvBlockId b) {
  Block& block = blocks_[b];
  if (block.lru_prev != kNoBlock)
    blocks_[block.lru_prev].lru_next = block.lru_next;
  else
    lru_head_ = block.lru_next;
  if (block.lru_next != kNoBlock)
    blocks_[block.lru_next].lru_prev = block.lru_prev;
  else
    lru_tail_ = block.lru_prev;
  block.lru_prev = block.lru_next = kNoBlock;
  --lru_size_;
}

void KvCacheCore::evict(KvBlockId b) {
  Block& block = blocks_[b];
  lru_remove(b);
  auto [first, last] = index_.equal_range(block.hash);
  for (auto it = first; it != last; ++it) {
    if (it->second == b) {
      index_.erase(it);
      break;
    }
  }
  block.hashed = false;
  block.hash = 0;
  block.parent = {};
  ++block.generation;
  ++counters_.evictions;
}

KvBlockId KvCacheCore::take_block() {
  if (!free_list_.empty()) {
    const KvBlockId b = free_list_.back();
    free_list_.pop_back();
    return b;
  }
  const KvBlockId b = lru_head_;
  evict(b);
  return b;
}

void KvCacheCore::hold_new(KvBlockId b) {
  blocks_[b].refs = 1;
  ++in_use_;
}

void KvCacheCore::note_peak() {
  counters_.peak_in_use_blocks = std::max(counters_.peak_in_use_blocks, in_use_);
}

// ---- writes ----

KvReserveResult KvCacheCore::reserve(uint64_t seq, std::span<const int32_t> prompt) {
  if (sequences_.contains(seq)) return {KvError::DuplicateSequence, 0};
  const int64_t needed = (int64_t(prompt.size()) + block_size_ - 1) / block_size_;
  if (needed > num_blocks()) return {KvError::OutOfBlocks, 0};

  scratch_hits_.clear();
  const PrefixMatch match = match_prefix(prompt, [&](KvBlockId b) { scratch_hits_.push_back(b); });
  const int64_t idle_hits = std::ranges::count_if(
      scratch_hits_, [&](KvBlockId b) { return blocks_[b].refs == 0; });
  const int64_t fresh = needed - match.blocks;
  if (fresh > int64_t(free_list_.size()) + lru_size_ - idle_hits)
    return {KvError::OutOfBlocks, 0};

  // Everything that may throw happens before any block changes state.
  std::vector<KvBlockId> table;
  if (!spare_tables_.empty()) {
    table = std::move(spare_tables_.back());
    spare_tables_.pop_back();
  }
  table.reserve(size_t(needed));
  const auto it = sequences_.try_emplace(seq).first;

  for (KvBlockId b : scratch_hits_) {
    if (blocks_[b].refs == 0) {
      lru_remove(b);
      ++in_use_;
    }
    ++blocks_[b].refs;
    table.push_back(b);
  }
  for (int64_t i = match.blocks; i < needed; ++i) {
    const KvBlockId b = take_block();
    hold_new(b);
    auto source = prompt.subspan(size_t(i) * block_size_);
    const size_t count = std::min(source.size(), size_t(block_size_));
    std::copy_n(source.begin(), count, tokens_of(b).begin());
    table.push_back(b);
  }

  Sequence& sequence = it->second;
  sequence.table = std::move(table);
  sequence.tokens = static_cast<int32_t>(prompt.size());
  sequence.registered = match.blocks;
  sequence.chain_live = true;
  sequence.chain_hash = match.hash;
  sequence.chain = match.last;

  const int32_t cached_tokens = match.blocks * block_size_;
  counters_.lookup_tokens += prompt.size();
  counters_.hit_tokens += uint64_t(cached_tokens);
  counters_.lookup_blocks += uint64_t(prompt_blocks_that_may_hit(prompt.size(), block_size_));
  counters_.hit_blocks += uint64_t(match.blocks);
  note_peak();
  return {KvError::None, cached_tokens};
}

int64_t KvCacheCore::reserve(std::span<const KvReserve> requests,
                             std::span<KvReserveResult> results) {
  if (results.size() != requests.size())
    throw std::invalid_argument("KV cache reserve: " + std::to_string(results.size()) +
                                " result slots for " + std::to_string(requests.size()) +
                                " requests; pass one per request");
  int64_t succeeded = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    results[i] = reserve(requests[i].seq, requests[i].prompt);
    succeeded += results[i].ok();
  }
  return succeeded;
}

KvAppendResult KvCacheCore::append_slot(uint64_t seq, int32_t token) {
  auto it = sequences_.find(seq);
  if (it == sequences_.end()) return {KvError::UnknownSequence, -1};
  Sequence& sequence = it->second;
  const int32_t offset = sequence.tokens % block_size_;
  const bool needs_block = offset == 0;
  if (needs_block && free_list_.empty() && lru_size_ == 0) return {KvError::OutOfBlocks, -1};

  register_full_blocks(sequence);
  if (needs_block) {
    const KvBlockId b = take_block();
    hold_new(b);
    sequence.table.push_back(b);
    note_peak();
  }
  tokens_of(sequence.table.back())[size_t(offset)] = token;
  return {KvError::None, sequence.tokens++};
}

int64_t KvCacheCore::append_slots(std::span<const KvAppend> appends,
                                  std::span<KvAppendResult> results) {
  if (results.size() != appends.size())
    throw std::invalid_argument("KV cache append_slots: " + std::to_string(results.size()) +
                                " result slots for " + std::to_string(appends.size()) +
                                " appends; pass one per append");
  int64_t succeeded = 0;
  for (size_t i = 0; i < appends.size(); ++i) {
    results[i] = append_slot(appends[i].seq, appends[i].token);
    succeeded += results[i].ok();
  }
  return succeeded;
}

KvError KvCacheCore::free(uint64_t seq) {
  auto it = sequences_.find(seq);
  if (it == sequences_.end()) return KvError::UnknownSequence;
  spare_tables_.emplace_back();  // may throw: before any block changes state
  std::vector<KvBlockId>& table = it->second.table;
  for (auto b = table.rbegin(); b != table.rend(); ++b) {
    Block& block = blocks_[*b];
    if (--block.refs > 0) continue;
    --in_use_;
    if (block.hashed)
      lru_push_back(*b);
    else
      free_list_.push_back(*b);
  }
  table.clear();
  spare_tables_.back().swap(table);
  sequences_.erase(it);
  return KvError::None;
}

int64_t KvCacheCore::free(std::span<const uint64_t> seqs) {
  int64_t freed = 0;
  for (uint64_t seq : seqs) freed += free(seq) == KvError::None;
  return freed;
}

// ---- reads ----

int32_t KvCacheCore::peek_prefix(std::span<const int32_t> prompt) const {
  return match_prefix(prompt, [](KvBlockId) {}).blocks * block_size_;
}

bool KvCacheCore::can_reserve(int64_t n_tokens) const {
  if (n_tokens < 0) return false;
  return (n_tokens + block_size_ - 1) / block_size_ <= available_blocks();
}

int32_t KvCacheCore::available_blocks() const {
  return static_cast<int32_t>(free_list_.size()) + lru_size_;
}

KvStats KvCacheCore::stats() const {
  KvStats s = counters_;
  s.free_blocks = static_cast<int32_t>(free_list_.size());
  s.in_use_blocks = in_use_;
  s.cached_idle_blocks = lru_size_;
  s.sequences = static_cast<int64_t>(sequences_.size());
  return s;
}

std::optional<int32_t> KvCacheCore::num_tokens(uint64_t seq) const {
  auto it = sequences_.find(seq);
  if (it == sequences_.end()) return std::nullopt;
  return it->second.tokens;
}

std::span<const KvBlockId> KvCacheCore::block_table(uint64_t seq) const {
  auto it = sequences_.find(seq);
  if (it == sequences_.end()) return {};
  return it->second.table;
}

std::optional<std::string> KvCacheCore::check() const {
  const int32_t total = num_blocks();
  enum Place : uint8_t { Nowhere, FreeList, Lru };
  std::vector<Place> place(size_t(total), Nowhere);

  for (KvBlockId b : free_list_) {
    if (b < 0 || b >= total) return "free list holds out-of-range " + describe_block(b);
    if (place[b] != Nowhere) return describe_block(b) + " is on the free list twice";
    place[b] = FreeList;
  }
  int32_t lru_seen = 0;
  KvBlockId previous = kNoBlock;
  for (KvBlockId b = lru_head_; b != kNoBlock; b = blocks_[b].lru_next) {
    if (b < 0 || b >= total) return "LRU list holds out-of-range " + describe_block(b);
    if (place[b] == FreeList) return describe_block(b) + " is both free and cached idle";
    if (place[b] == Lru) return "LRU list loops at " + describe_block(b);
    if (blocks_[b].lru_prev != previous) return "LRU back link broken at " + describe_block(b);
    place[b] = Lru;
    previous = b;
    ++lru_seen;
  }
  if (previous != lru_tail_) return "LRU tail is not the last block of the list";
  if (lru_seen != lru_size_)
    return "LRU list has " + std::to_string(lru_seen) + " blocks, its size says " +
           std::to_string(lru_size_);

  std::vector<int32_t> holders(size_t(total), 0);
  for (const auto& [seq, sequence] : sequences_) {
    const std::string name = "sequence " + std::to_string(seq);
    const int64_t expected = (int64_t(sequence.tokens) + block_size_ - 1) / block_size_;
    if (int64_t(sequence.table.size()) != expected)
      return name + " has " + std::to_string(sequence.table.size()) + " blocks for " +
             std::to_string(sequence.tokens) + " tokens";
    if (sequence.registered > sequence.tokens / block_size_)
      return name + " registered more blocks than it has full";
    for (KvBlockId b : sequence.table) {
      if (b < 0 || b >= total) return name + " holds out-of-range " + describe_block(b);
      ++holders[b];
    }
  }

  int32_t in_use = 0;
  int32_t hashed = 0;
  for (KvBlockId b = 0; b < total; ++b) {
    const Block& block = blocks_[b];
    if (block.refs != holders[b])
      return describe_block(b) + " has ref-count " + std::to_string(block.refs) + " but " +
             std::to_string(holders[b]) + " tables hold it";
    hashed += block.hashed;
    if (block.refs > 0) {
      ++in_use;
      if (place[b] != Nowhere) return describe_block(b) + " is in use and also free or idle";
    } else if (block.hashed && place[b] != Lru) {
      return describe_block(b) + " is cached at ref 0 but not in the LRU list";
    } else if (!block.hashed && place[b] != FreeList) {
      return describe_block(b) + " is unreferenced and uncached but not on the free list";
    }
  }
  if (in_use != in_use_)
    return std::to_string(in_use) + " blocks are in use, the counter says " +
           std::to_string(in_use_);
  if (int32_t(free_list_.size()) + lru_size_ + in_use_ != total)
    return "free + cached idle + in use != total blocks";
  if (counters_.peak_in_use_blocks < in_use_) return "peak usage is below current usage";

  if (int64_t(index_.size()) != hashed)
    return "prefix index has " + std::to_string(index_.size()) + " entries for " +
           std::to_string(hashed) + " cached blocks";
  std::vector<uint8_t> indexed(size_t(total), 0);
  for (const auto& [hash, b] : index_) {
    if (b < 0 || b >= total) return "prefix index holds out-of-range " + describe_block(b);
    if (!blocks_[b].hashed || blocks_[b].hash != hash)
      return "prefix index entry for " + describe_block(b) + " does not match the block";
    if (indexed[b]++) return describe_block(b) + " is in the prefix index twice";
  }
  return std::nullopt;
}

}  // namespace troupe
