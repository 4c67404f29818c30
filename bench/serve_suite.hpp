#pragma once
// `troupe-bench serve` (issues 5 and 7): the serving engine in-process, no HTTP. For each
// batch size, every runtime x sync x kv-granularity x prefix-cache combination; repetitions
// run every (batch size, combination) interleaved (rep 1: A B C, rep 2: A B C, ...), so the
// batching gain (a batch size's output tok/s over the smallest's) is fair too; combinations
// the engine refuses (runtime threads with sync actor) are skipped and listed. Each run is one
// run_serve_workload (serve_workload.hpp): a fresh Engine per run, so that no run inherits
// another's prefix cache, KV peak, counters or warm state, and interleaving stays fair;
// loading the model is outside the measured window.
// Report: one table per batch size with the combinations side by side (columns); medians
// over repetitions with [min-max] for throughput and utilization; latencies (ms) pooled over
// every request of every repetition; ratio of each combination's output tok/s to the first
// combination's, with "overlap" when their [min, max] ranges share a point (noise hint).
// Every output of a sim run says "simulated". JSON keys: see serve_json().
// Not thread-safe; run from one thread.

#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include "actors/engine.hpp"
#include "bench/serve_workload.hpp"
#include "bench/statistics.hpp"

namespace troupe {

struct ServeCombination {
  Runtime runtime = Runtime::Actors;
  SyncMode sync = SyncMode::Parking;
  KvGranularity granularity = KvGranularity::Step;
  bool prefix_cache = true;
};
// "actors/parking", with "/token" and "/no-prefix" when they differ from the defaults.
std::string label(const ServeCombination& combination);

struct ServeConfig {
  ModelOptions model;
  std::string sim_profile = "7b-h200";
  double sim_time_scale = 1.0;
  std::vector<int> batch_sizes{8};
  int n_prompt = 64;
  int n_gen = 16;
  int shared_prefix = 0;
  int repetitions = 1;
  uint64_t seed = 1;
  std::vector<Runtime> runtimes{Runtime::Actors, Runtime::Threads};
  std::vector<SyncMode> sync{SyncMode::Parking};
  std::vector<KvGranularity> granularity{KvGranularity::Step};
  std::vector<bool> prefix_cache{true};
  int workers = 1;
  int max_batch_tokens = 512;
  int max_seqs = 64;
  int kv_mib = 0;  // 0: the backend's default (sim: 100 GiB, an H200's)
  int timeout_seconds = 600;
  std::optional<std::filesystem::path> json, csv, plot;

  bool simulated() const { return model.backend == "sim"; }
};

boost::program_options::options_description serve_options();
ServeConfig read_serve_config(const boost::program_options::variables_map& values);

struct SkippedCombination {
  ServeCombination combination;
  std::string reason;
};
// The combinations to run, in the order of the flags, and those skipped with the reason.
std::pair<std::vector<ServeCombination>, std::vector<SkippedCombination>> serve_combinations(
    const ServeConfig& config);
EngineOptions engine_options(const ServeConfig& config, const ServeCombination& combination);

struct SharingRow {
  std::string name;
  uint64_t calls = 0, contended_calls = 0, wait_ns_total = 0, wait_ns_longest = 0;
  uint64_t mailbox_depth_max = 0;
};

struct ServeRow {
  int batch_size = 0;
  ServeCombination combination;
  std::vector<ServeRun> runs;
  Summary output_tok_per_s, total_tok_per_s, prompt_tok_per_s, generation_tok_per_s;
  Summary wall_seconds, worker_utilization, idle_gap_mean_us;
  Summary switches_per_step, involuntary_switches_per_step;  // the process's, per step
  Distribution ttft_ms, tpot_ms, itl_ms, e2e_ms, queue_ms;
  Distribution idle_gap_us;  // the measured gaps of every repetition together
  double peak_rss_bytes = 0;   // median; NaN when unreadable
  int32_t peak_kv_blocks = 0;  // max over repetitions
  uint64_t peak_kv_bytes = 0;
  uint64_t gpu_memory_bytes = 0;
  double prefix_hit_rate = 0;                  // median
  uint64_t preemptions = 0;                    // all repetitions
  std::vector<SharingRow> sharing;             // summed over repetitions (maxima: max)
  double ratio_to_first = 0;                   // output tok/s median over the first combination's
  std::optional<bool> overlaps_first;          // absent for the first combination
  double batching_gain = 0;                    // output tok/s median over the same combination's at
                                               // the smallest batch size (set by set_batching_gain)
  std::optional<bool> batching_gain_overlaps;  // absent at the smallest batch size
  std::string backend;
};

// Derives the rows of one batch size: runs[combination][repetition].
std::vector<ServeRow> serve_rows(int batch_size, const std::vector<ServeCombination>& combinations,
                                 std::vector<std::vector<ServeRun>> runs);

// Fills batching_gain of every row from the rows of the same combination.
void set_batching_gain(std::vector<ServeRow>& rows);
void print_batching_gain(std::ostream& out, const ServeConfig& config,
                         const std::vector<ServeCombination>& combinations,
                         const std::vector<ServeRow>& rows);
void print_serve_table(std::ostream& out, const ServeConfig& config, int batch_size,
                       const std::vector<ServeRow>& rows);
nlohmann::json serve_json(const ServeConfig& config, const std::vector<ServeRow>& rows,
                          const std::vector<SkippedCombination>& skipped);
std::vector<std::string> serve_csv_header();
std::vector<std::string> serve_csv_fields(const ServeRow& row);

// Measures, prints, writes the requested files; returns the rows. Throws
// std::runtime_error when a run fails or a file cannot be written.
std::vector<ServeRow> run_serve_suite(const ServeConfig& config, std::ostream& out);

// Entry point used by troupe-bench. Throws OptionsError on bad flags.
int serve_main(const std::vector<std::string>& args, std::ostream& out);

}  // namespace troupe
