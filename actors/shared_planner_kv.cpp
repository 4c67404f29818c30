#include "actors/shared_planner_kv.hpp"

namespace troupe {

void SharedPlannerKv::iteration(FunctionRef<void()> f) {
  if (granularity_ != KvGranularity::Step) return f();
  cache_.transact([&](KvCacheCore& core) {
    CorePlannerKv direct(core);
    direct_ = &direct;
    try {
      f();
    } catch (...) {
      direct_ = nullptr;
      throw;
    }
    direct_ = nullptr;
  });
}

int64_t SharedPlannerKv::reserve(std::span<const KvReserve> requests,
                                 std::span<KvReserveResult> results) {
  if (direct_) return direct_->reserve(requests, results);
  return reserve_step(cache_, granularity_, requests, results);
}

int64_t SharedPlannerKv::append_slots(std::span<const KvAppend> appends,
                                      std::span<KvAppendResult> results) {
  if (direct_) return direct_->append_slots(appends, results);
  return append_step(cache_, granularity_, appends, results);
}

int64_t SharedPlannerKv::free(std::span<const uint64_t> seqs) {
  if (direct_) return direct_->free(seqs);
  return free_step(cache_, granularity_, seqs);
}

void SharedPlannerKv::block_tables(std::span<const uint64_t> seqs,
                                   std::span<std::vector<KvBlockId>> tables) const {
  if (direct_) return direct_->block_tables(seqs, tables);
  tables_step(cache_, granularity_, seqs, tables);
}

}  // namespace troupe
