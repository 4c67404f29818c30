#pragma once
// --kv-granularity: how a caller hands one step's KV work to the SharedKvCache.
//   step   one batched call per kind of work per step (the design: one lock hold or one
//          message for the whole batch); the runtimes' planner iterations go further, one
//          transaction each (SharedPlannerKv::iteration)
//   token  one call per entry (the naive design, kept to show what batching is worth)
// The *_step functions apply a step's work either way, with the same results as the batched
// core call. Stateless; thread-safe as SharedKvCache is.

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "actors/shared_kv_cache.hpp"

namespace troupe {

enum class KvGranularity { Step, Token };

std::string_view to_string(KvGranularity granularity);
// Throws std::invalid_argument naming the accepted values.
KvGranularity parse_kv_granularity(std::string_view name);
// A comma-separated list, e.g. "step,token"; throws OptionsError naming --option.
std::vector<KvGranularity> parse_kv_granularity_list(std::string_view option,
                                                     std::string_view text);

int64_t reserve_step(SharedKvCache& cache, KvGranularity granularity,
                     std::span<const KvReserve> requests, std::span<KvReserveResult> results);
int64_t append_step(SharedKvCache& cache, KvGranularity granularity,
                    std::span<const KvAppend> appends, std::span<KvAppendResult> results);
int64_t free_step(SharedKvCache& cache, KvGranularity granularity,
                  std::span<const uint64_t> seqs);
void tables_step(const SharedKvCache& cache, KvGranularity granularity,
                 std::span<const uint64_t> seqs, std::span<std::vector<KvBlockId>> tables);
void peek_step(const SharedKvCache& cache, KvGranularity granularity,
               std::span<const std::span<const int32_t>> prompts, std::span<int32_t> cached);

}  // namespace troupe
