#include "actors/shared_planner_kv.hpp"

namespace troupe {

int64_t SharedPlannerKv::reserve(std::span<const KvReserve> requests,
                                 std::span<KvReserveResult> results) {
  return reserve_step(cache_, granularity_, requests, results);
}

int64_t SharedPlannerKv::append_slots(std::span<const KvAppend> appends,
                                      std::span<KvAppendResult> results) {
  return append_step(cache_, granularity_, appends, results);
}

int64_t SharedPlannerKv::free(std::span<const uint64_t> seqs) {
  return free_step(cache_, granularity_, seqs);
}

void SharedPlannerKv::block_tables(std::span<const uint64_t> seqs,
                                   std::span<std::vector<KvBlockId>> tables) const {
  tables_step(cache_, granularity_, seqs, tables);
}

}  // namespace troupe
