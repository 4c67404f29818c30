#pragma once
// `troupe-bench kvcache`: the shared KV cache and model state under every sync mode (issue 4).
// For each thread count and each --kv-granularity, repetitions run the sync modes
// interleaved (rep 1: A B C, rep 2: A B C, ...), each run with fresh threads, a fresh cache,
// model state and (for actor) actor system (kvcache_workload.hpp). Prints one table per
// (threads, granularity) as soon as it is measured; optionally writes JSON.
// Definitions of the figures, per (sync, granularity, threads):
//   ops/s          operations (lookups + appends + frees) of all clients per second: median,
//                  min and max over repetitions
//   p50 / p99      sampled call latencies per operation kind, all repetitions pooled
//   calls/op       calls into the KV cache per operation (batching shows as < 1)
//   contended      share of KV cache calls that found the lock taken (or, for actor, a
//                  request already queued): median over repetitions
//   max depth      actor: the deepest the owner's mailbox got, over all repetitions
//   ratio to std   median ops/s over std's at the same threads and granularity, and whether
//                  their [min, max] ranges overlap (a noise hint)

#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include "bench/kvcache_workload.hpp"
#include "bench/statistics.hpp"

namespace troupe {

struct KvcacheConfig {
  std::vector<int> threads;
  std::vector<SyncMode> sync;
  std::vector<KvGranularity> granularity;
  double seconds = 1;
  int repetitions = 9;
  KvMix mix;
  std::optional<std::filesystem::path> json;
};

boost::program_options::options_description kvcache_options();
KvcacheConfig read_kvcache_config(const boost::program_options::variables_map& values);

struct KvcacheRow {
  SyncMode sync = SyncMode::Std;
  KvGranularity granularity = KvGranularity::Step;
  int threads = 0;
  std::vector<double> ops_per_s_repetitions;
  Summary ops_per_s;
  double lookup_p50_ns = 0, lookup_p99_ns = 0;  // NaN when the mix has none
  double append_p50_ns = 0, append_p99_ns = 0;
  double free_p50_ns = 0, free_p99_ns = 0;
  double calls_per_op = 0;
  double contended = 0;
  uint64_t mailbox_depth_max = 0;
  double model_contended = 0;   // the model state's sharing, median over repetitions
  double hit_rate = 0;          // KV token hit rate at the end, median over repetitions
  uint64_t failed = 0;          // refused operations, all repetitions
  uint64_t reloads = 0;         // all repetitions
  uint64_t snapshots = 0;       // all repetitions
  double ratio_to_std = 0;            // NaN when std was not measured
  std::optional<bool> overlaps_std;   // absent for std itself or when std was not measured
};

// Derives the rows of one (threads, granularity) from its runs: runs[mode][repetition].
std::vector<KvcacheRow> kvcache_rows(int threads, KvGranularity granularity,
                                     const std::vector<SyncMode>& modes,
                                     std::vector<std::vector<KvWorkloadRun>>& runs);

void print_kvcache_table(std::ostream& out, const KvcacheConfig& config, int threads,
                         KvGranularity granularity, const std::vector<KvcacheRow>& rows);
nlohmann::json kvcache_json(const KvcacheConfig& config, const std::vector<KvcacheRow>& rows);

// The whole suite: measures, prints tables to out, writes the requested file; returns the
// rows. Throws std::runtime_error when a run fails, the cache's check() fails, or the file
// cannot be written.
std::vector<KvcacheRow> run_kvcache_suite(const KvcacheConfig& config, std::ostream& out);

// Entry point used by troupe-bench: parses args (after the suite name); exit status.
// Throws OptionsError on bad flags.
int kvcache_main(const std::vector<std::string>& args, std::ostream& out);

}  // namespace troupe
