#include "actors/sharing_granularity.hpp"

#include <stdexcept>
#include <string>

#include "actors/options.hpp"

namespace troupe {
namespace {

void require_same_size(const char* call, std::size_t inputs, std::size_t results) {
  if (inputs != results)
    throw std::invalid_argument(std::string(call) + ": " + std::to_string(inputs) +
                                " entries but room for " + std::to_string(results) + " results");
}

}  // namespace

std::string_view to_string(KvGranularity granularity) {
  return granularity == KvGranularity::Step ? "step" : "token";
}

KvGranularity parse_kv_granularity(std::string_view name) {
  if (name == "step") return KvGranularity::Step;
  if (name == "token") return KvGranularity::Token;
  throw std::invalid_argument("unknown KV granularity (use step or token)");
}

std::vector<KvGranularity> parse_kv_granularity_list(std::string_view option,
                                                     std::string_view text) {
  return parse_list<KvGranularity>(option, text, parse_kv_granularity);
}

int64_t reserve_step(SharedKvCache& cache, KvGranularity granularity,
                     std::span<const KvReserve> requests, std::span<KvReserveResult> results) {
  if (granularity == KvGranularity::Step) return cache.reserve(requests, results);
  require_same_size("reserve", requests.size(), results.size());
  int64_t succeeded = 0;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    results[i] = cache.reserve(requests[i].seq, requests[i].prompt);
    succeeded += results[i].ok();
  }
  return succeeded;
}

int64_t append_step(SharedKvCache& cache, KvGranularity granularity,
                    std::span<const KvAppend> appends, std::span<KvAppendResult> results) {
  if (granularity == KvGranularity::Step) return cache.append_slots(appends, results);
  require_same_size("append_slots", appends.size(), results.size());
  int64_t succeeded = 0;
  for (std::size_t i = 0; i < appends.size(); ++i) {
    results[i] = cache.append_slot(appends[i].seq, appends[i].token);
    succeeded += results[i].ok();
  }
  return succeeded;
}

int64_t free_step(SharedKvCache& cache, KvGranularity granularity,
                  std::span<const uint64_t> seqs) {
  if (granularity == KvGranularity::Step) return cache.free(seqs);
  int64_t freed = 0;
  for (uint64_t seq : seqs) freed += cache.free(seq) == KvError::None;
  return freed;
}

void tables_step(const SharedKvCache& cache, KvGranularity granularity,
                 std::span<const uint64_t> seqs, std::span<std::vector<KvBlockId>> tables) {
  if (granularity == KvGranularity::Step) return cache.block_tables(seqs, tables);
  require_same_size("block_tables", seqs.size(), tables.size());
  for (std::size_t i = 0; i < seqs.size(); ++i) tables[i] = cache.block_table(seqs[i]);
}

void peek_step(const SharedKvCache& cache, KvGranularity granularity,
               std::span<const std::span<const int32_t>> prompts, std::span<int32_t> cached) {
  if (granularity == KvGranularity::Step) return cache.peek_prefixes(prompts, cached);
  require_same_size("peek_prefixes", prompts.size(), cached.size());
  for (std::size_t i = 0; i < prompts.size(); ++i) cached[i] = cache.peek_prefix(prompts[i]);
}

}  // namespace troupe
