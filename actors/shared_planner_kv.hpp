#pragma once
// SharedPlannerKv: the batch planner's PlannerKv (model/batch_planner.hpp) over the shared KV
// cache, so the planner's KV work goes through the sync layer --sync chose.
// - iteration(f) runs f, the runtime's planner work of one iteration (complete and plan).
//   With KvGranularity::Step it runs inside one SharedKvCache::transact (one lock hold, or
//   one message to the owning actor), the planner's KV calls going straight to the core;
//   with Token it simply calls f.
// - Outside iteration(), with Step each planner call is one SharedKvCache call (one lock
//   hold or one message for the whole batch); with Token it is one call per entry
//   (--kv-granularity token, the naive design). available_blocks, block_size and num_blocks
//   are one call (or none) either way.
// Thread safety: as the planner that uses it (one thread at a time); the cache itself may be
// used by other threads meanwhile. Borrows the cache, which must outlive it.

#include "actors/shared_kv_cache.hpp"
#include "actors/sharing_granularity.hpp"
#include "model/batch_planner.hpp"

namespace troupe {

class SharedPlannerKv final : public PlannerKv {
 public:
  SharedPlannerKv(SharedKvCache& cache, KvGranularity granularity)
      : cache_(cache), granularity_(granularity) {}

  int32_t block_size() const override { return cache_.block_size(); }
  int32_t num_blocks() const override { return cache_.num_blocks(); }
  int32_t available_blocks() const override {
    return direct_ ? direct_->available_blocks() : cache_.available_blocks();
  }
  int64_t reserve(std::span<const KvReserve> requests,
                  std::span<KvReserveResult> results) override;
  int64_t append_slots(std::span<const KvAppend> appends,
                       std::span<KvAppendResult> results) override;
  int64_t free(std::span<const uint64_t> seqs) override;
  void block_tables(std::span<const uint64_t> seqs,
                    std::span<std::vector<KvBlockId>> tables) const override;

  // f must only call the planner (and what it calls): with Step it may run on another
  // thread (the owning actor's) while this one waits. Throws what f or the cache throws.
  void iteration(FunctionRef<void()> f);

  SharedKvCache& cache() const { return cache_; }
  KvGranularity granularity() const { return granularity_; }

 private:
  SharedKvCache& cache_;
  KvGranularity granularity_;
  PlannerKv* direct_ = nullptr;  // the core's, inside iteration() with Step
};

}  // namespace troupe
