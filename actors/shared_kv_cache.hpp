#pragma once
// SharedKvCache: the one KV cache every caller (request actors, the scheduler, workers, the
// metrics reader) shares, whatever --sync chose: KvCacheCore behind Locked<Core, Lock>
// (std, std-rw, parking, parking-rw, futex, spin) or ActorOwned<Core> (actor).
// Calls mirror KvCacheCore (model/kv_cache_core.hpp), with the same results and errors;
// batched calls are one lock hold or one message. Reads (peeks, capacity checks, stats,
// tables, check) take the shared lock of a reader-writer lock; every other call is a write.
// block_size() and num_blocks() are fixed at construction and read without synchronisation.
// Thread-safe: any thread may call anything. Calls through an actor may throw SharingError
// (owner stuck or gone); spans are only read during the call.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "actors/sharing.hpp"
#include "locks/function_ref.hpp"
#include "locks/sync_mode.hpp"
#include "model/kv_cache_core.hpp"

namespace caf {
class actor_system;
}

namespace troupe {

class SharedKvCache {
 public:
  virtual ~SharedKvCache() = default;

  // ---- writes, batched (one call per step) ----
  virtual int64_t reserve(std::span<const KvReserve> requests,
                          std::span<KvReserveResult> results) = 0;
  virtual int64_t append_slots(std::span<const KvAppend> appends,
                               std::span<KvAppendResult> results) = 0;
  virtual int64_t free(std::span<const uint64_t> seqs) = 0;

  // ---- one transaction ----
  // Runs f on the core in one hold of the exclusive lock, or as one message to the owner
  // (f then runs in the owner's thread while the caller waits, so it may use the caller's
  // locals but must not touch what belongs to the caller's thread, e.g. its actor): the work
  // of several calls for the price of one. f must not call this cache (it would deadlock)
  // nor keep the core past its return; what it throws reaches the caller.
  virtual void transact(FunctionRef<void(KvCacheCore&)> f) = 0;

  // ---- writes, one at a time ----
  virtual KvReserveResult reserve(uint64_t seq, std::span<const int32_t> prompt) = 0;
  virtual KvAppendResult append_slot(uint64_t seq, int32_t token) = 0;
  virtual KvError free(uint64_t seq) = 0;

  // ---- reads ----
  virtual int32_t peek_prefix(std::span<const int32_t> prompt) const = 0;
  // cached[i] = peek_prefix(prompts[i]), all in one call. Throws std::invalid_argument when
  // the spans differ in size.
  virtual void peek_prefixes(std::span<const std::span<const int32_t>> prompts,
                             std::span<int32_t> cached) const = 0;
  virtual bool can_reserve(int64_t n_tokens) const = 0;
  virtual int32_t available_blocks() const = 0;
  virtual KvStats stats() const = 0;
  virtual std::optional<int32_t> num_tokens(uint64_t seq) const = 0;
  // A copy: empty for an unknown sequence.
  virtual std::vector<KvBlockId> block_table(uint64_t seq) const = 0;
  // tables[i] = block_table(seqs[i]), all in one call (the vectors' storage is reused).
  // Throws std::invalid_argument when the spans differ in size.
  virtual void block_tables(std::span<const uint64_t> seqs,
                            std::span<std::vector<KvBlockId>> tables) const = 0;
  virtual std::optional<std::string> check() const = 0;

  int32_t block_size() const { return block_size_; }
  int32_t num_blocks() const { return num_blocks_; }
  SyncMode mode() const { return mode_; }
  // Contention of the lock, or the owner's mailbox depth and round trips.
  virtual SharingStats sharing_stats() const = 0;

 protected:
  SharedKvCache(SyncMode mode, const KvCacheConfig& config)
      : mode_(mode), block_size_(config.block_size), num_blocks_(config.num_blocks) {}

 private:
  SyncMode mode_;
  int32_t block_size_;
  int32_t num_blocks_;
};

// The cache for --sync `mode`. SyncMode::Actor needs `actors` (the system must outlive the
// cache) and throws std::invalid_argument without one; the other modes ignore it. Throws
// what KvCacheCore's constructor throws for a bad config.
std::unique_ptr<SharedKvCache> make_shared_kv_cache(SyncMode mode, const KvCacheConfig& config,
                                                    caf::actor_system* actors = nullptr,
                                                    const SharingOptions& options = {});

}  // namespace troupe
