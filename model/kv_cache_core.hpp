// KvCacheCore: the paged KV cache's block manager. A pool of num_blocks blocks of block_size
// token positions; one block table per sequence; automatic prefix caching over full blocks
// (a hash chain as in vLLM: hash(parent hash, block tokens)) with reference counts and LRU
// eviction of cached blocks that no sequence holds.
// Units: block ids index the backend's KvPool (gpu/kv_pool); position p of a sequence lives in
// block_table(seq)[p / block_size], slot p % block_size. Tokens are vocabulary ids.
// Thread safety: none inside; a sharing wrapper (Locked / ActorOwned) serialises calls.
// const members are read-only (no ref-count, LRU or statistics change: a shared lock
// suffices); every non-const member is a write.
// Prefix caching contract:
// - The core keeps each block's token ids, passed to reserve and append_slot.
// - A full block joins the prefix index when its sequence's next slot is appended: an append
//   states that every token already in the table has its KV written. reserve and free
//   register nothing, so a cancelled prefill never publishes unwritten KV.
// - A hit needs equal hashes, equal tokens and the very same parent block (id and
//   generation), so a hash collision never aliases different content.
// - The block holding a prompt's last token is never taken from the cache: the caller
//   computes at least that token (for its logits) and only writes blocks it holds alone.
//   Shared blocks are read-only.
// - free releases blocks last to first, so a chain's tail is evicted before its head.
// Errors: results carry a KvError; a call that fails changes nothing. A batched call whose
// result span has the wrong size throws std::invalid_argument.
// Memory: block tables and the indexes recycle their storage, so the steady state
// (reserve / append / free of similar sequences) allocates nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <memory_resource>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace troupe {

using KvBlockId = int32_t;

enum class KvError : uint8_t { None, OutOfBlocks, UnknownSequence, DuplicateSequence };

// A sentence a user can act on, e.g. for OutOfBlocks: raise the KV budget or lower the load.
std::string_view describe(KvError error);

// Hash of a full block given its parent's hash (0 for the first block of a sequence).
using KvBlockHasher = uint64_t (*)(uint64_t parent_hash, std::span<const int32_t> tokens);

struct KvCacheConfig {
  int32_t num_blocks = 0;
  int32_t block_size = 16;          // tokens per block
  KvBlockHasher hasher = nullptr;   // nullptr: the built-in 64-bit hash
  bool prefix_cache = true;         // false: no block is ever shared or kept for a later hit
};

struct KvReserveResult {
  KvError error = KvError::None;
  int32_t cached_tokens = 0;  // leading prompt tokens whose KV is already there: skip them
  bool ok() const { return error == KvError::None; }
};

struct KvReserve {
  uint64_t seq = 0;
  std::span<const int32_t> prompt;
};

struct KvAppend {
  uint64_t seq = 0;
  int32_t token = 0;
};

struct KvAppendResult {
  KvError error = KvError::None;
  int32_t position = -1;  // the new token's position in its sequence (-1 on error)
  bool ok() const { return error == KvError::None; }
};

// A snapshot. free + in_use + cached_idle = total. Lookups count reserved prompt tokens
// (and the full blocks among them that may hit); hits count what the cache supplied.
struct KvStats {
  int32_t block_size = 0;
  int32_t total_blocks = 0;
  int32_t free_blocks = 0;         // on the free list: no content worth keeping
  int32_t in_use_blocks = 0;       // held by at least one sequence
  int32_t cached_idle_blocks = 0;  // held by none, kept for prefix hits, evictable (LRU)
  int32_t peak_in_use_blocks = 0;
  int64_t sequences = 0;
  uint64_t lookup_tokens = 0;
  uint64_t hit_tokens = 0;
  uint64_t lookup_blocks = 0;
  uint64_t hit_blocks = 0;
  uint64_t evictions = 0;
  double token_hit_rate() const {
    return lookup_tokens == 0 ? 0.0 : double(hit_tokens) / double(lookup_tokens);
  }
};

class KvCacheCore {
 public:
  // Throws std::invalid_argument when num_blocks or block_size is below 1 or when
  // num_blocks * block_size does not fit in int32_t.
  explicit KvCacheCore(const KvCacheConfig& config);
  // Movable by construction only; a moved-from core may only be destroyed.
  KvCacheCore(const KvCacheCore&) = delete;
  KvCacheCore& operator=(const KvCacheCore&) = delete;
  KvCacheCore(KvCacheCore&&) = default;
  KvCacheCore& operator=(KvCacheCore&&) = delete;

  // ---- writes ----
  // Allocates blocks for a new sequence's prompt, sharing cached full blocks of its prefix.
  // DuplicateSequence if seq is live; OutOfBlocks if free plus evictable blocks fall short.
  KvReserveResult reserve(uint64_t seq, std::span<const int32_t> prompt);
  // One reserve per request, in order; returns how many succeeded.
  int64_t reserve(std::span<const KvReserve> requests, std::span<KvReserveResult> results);

  // One more position for seq holding token; a new block when the last one is full.
  // UnknownSequence, or OutOfBlocks when a block is needed and none is free or evictable.
  KvAppendResult append_slot(uint64_t seq, int32_t token);
  // One append per entry, in order (a sequence may appear more than once); returns how many
  // succeeded. A failed entry changes nothing; later entries are still tried.
  int64_t append_slots(std::span<const KvAppend> appends, std::span<KvAppendResult> results);

  // Releases seq's blocks: registered ones stay cached (idle), the others become free.
  KvError free(uint64_t seq);
  // Releases each live sequence in seqs; unknown ids are skipped. Returns how many were freed.
  int64_t free(std::span<const uint64_t> seqs);

  // ---- reads ----
  // Tokens reserve(prompt) would find cached now (same cap as reserve).
  int32_t peek_prefix(std::span<const int32_t> prompt) const;
  // Whether a prompt of n_tokens fits even with no prefix hit.
  bool can_reserve(int64_t n_tokens) const;
  // Blocks an allocation can take: free plus cached idle.
  int32_t available_blocks() const;
  KvStats stats() const;

  int32_t block_size() const { return block_size_; }
  int32_t num_blocks() const { return static_cast<int32_t>(blocks_.size()); }
  bool contains(uint64_t seq) const { return sequences_.contains(seq); }
  // nullopt for an unknown sequence.
  std::optional<int32_t> num_tokens(uint64_t seq) const;
  // Empty for an unknown sequence. Valid until the next write call.
  std::span<const KvBlockId> block_table(uint64_t seq) const;

  // nullopt when every invariant holds, else a description of the first violation.
  // O(blocks + table entries); allocates. For tests and debugging.
  std::optional<std::string> check() const;

 private:
  static constexpr KvBlockId kNoBlock = -1;

  struct BlockRef {
    KvBlockId id = kNoBlock;
    uint32_t generation = 0;
    bool operator==(const BlockRef&) const = default;
  };
  struct Block {
    int32_t refs = 0;
    bool hashed = false;      // in the prefix index
    uint32_t generation = 0;  // bumped when evicted, so stale parent links never match
    uint64_t hash = 0;
    BlockRef parent;          // the canonical block before it in its chain (when hashed)
    KvBlockId lru_prev = kNoBlock;
    KvBlockId lru_next = kNoBlock;
  };
  struct Sequence {
    std::vector<KvBlockId> table;
    int32_t tokens = 0;
    int32_t registered = 0;   // leading full blocks already offered to the prefix index
    bool chain_live = true;   // false once a parent was evicted: nothing more to register
    uint64_t chain_hash = 0;  // hash of the canonical block of table[registered - 1]
    BlockRef chain;           // that canonical block (kNoBlock before the first)
  };
  struct PrefixMatch {
    int32_t blocks = 0;
    uint64_t hash = 0;
    BlockRef last;
  };

  template <class OnHit>
  PrefixMatch match_prefix(std::span<const int32_t> prompt, OnHit on_hit) const;
  KvBlockId find_registered(uint64_t hash, BlockRef parent,
                            std::span<const int32_t> tokens) const;
  bool is_current(BlockRef ref) const;
  std::span<int32_t> tokens_of(KvBlockId block);
  std::span<const int32_t> tokens_of(KvBlockId block) const;
  uint64_t hash_block(uint64_t parent_hash, std::span<const int32_t> tokens) const;
  static int32_t prompt_blocks_that_may_hit(size_t prompt_tokens, int32_t block_size);

  void register_full_blocks(Sequence& sequence);
  KvBlockId take_block();
  void hold_new(KvBlockId block);
  void evict(KvBlockId block);
  void lru_push_back(KvBlockId block);
  void lru_remove(KvBlockId block);
  void note_peak();

  int32_t block_size_;
  KvBlockHasher hasher_;
  bool prefix_cache_ = true;
  std::vector<Block> blocks_;
  std::vector<int32_t> block_tokens_;  // num_blocks * block_size token ids
  std::vector<KvBlockId> free_list_;
  KvBlockId lru_head_ = kNoBlock;  // least recently released
  KvBlockId lru_tail_ = kNoBlock;
  int32_t lru_size_ = 0;
  int32_t in_use_ = 0;
  KvStats counters_;  // cumulative fields only; the rest is computed by stats()

  std::unique_ptr<std::pmr::unsynchronized_pool_resource> node_pool_;
  std::pmr::unordered_multimap<uint64_t, KvBlockId> index_;
  std::pmr::unordered_map<uint64_t, Sequence> sequences_;
  std::vector<std::vector<KvBlockId>> spare_tables_;
  std::vector<KvBlockId> scratch_hits_;
};

}  // namespace troupe
