#pragma once
// `troupe-bench locks`: lock contention across thread counts and sync modes (issue 2).
// For each thread count, repetitions run the sync modes interleaved (rep 1: A B C, rep 2:
// A B C, ...), each run with fresh threads and a fresh lock (lock_contention.hpp). Prints one
// table per thread count as soon as it is measured; optionally writes JSON and CSV.
// Definitions of the figures, per (sync, threads):
//   ops/s          loops of all threads per second: median, min and max over repetitions
//   ns per op      1e9 / median ops/s (wall time per completed loop, all threads together)
//   share min/max  a thread's loops relative to an equal split; median over repetitions of
//                  each repetition's lowest and highest (min_share_worst: lowest anywhere)
//   longest wait   with --counters: the longest wait for the lock over all repetitions
//                  (for actor: the longest request round trip); else absent
//   ratio to std   median ops/s over std's median ops/s at the same thread count, and
//                  whether their [min, max] ranges overlap (a noise hint)

#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include "bench/lock_contention.hpp"
#include "bench/plot.hpp"
#include "bench/statistics.hpp"
#include "locks/sync_mode.hpp"

namespace troupe {

struct LocksConfig {
  std::vector<int> threads;
  std::vector<SyncMode> sync;
  int work_inside = 5;
  int work_outside = 5;
  double seconds = 1;
  int repetitions = 15;
  double read_ratio = 0;
  bool counters = false;
  std::optional<std::filesystem::path> json;
  std::optional<std::filesystem::path> csv;
  std::optional<std::filesystem::path> plot;
};

boost::program_options::options_description locks_options();
LocksConfig read_locks_config(const boost::program_options::variables_map& values);

struct LocksRow {
  SyncMode sync = SyncMode::Std;
  int threads = 0;
  std::vector<double> ops_per_s_repetitions;
  Summary ops_per_s;
  double ns_per_op = 0;
  double min_share = 0;
  double max_share = 0;
  double min_share_worst = 0;
  std::optional<double> longest_wait_ns;
  std::size_t bytes_per_lock = 0;
  double ratio_to_std = 0;            // NaN when std was not measured
  std::optional<bool> overlaps_std;   // absent for std itself or when std was not measured
};

// Derives the rows of one thread count from its runs: runs[mode][repetition].
std::vector<LocksRow> locks_rows(int threads, const std::vector<SyncMode>& modes,
                                 const std::vector<std::vector<ContentionRun>>& runs);

void print_locks_table(std::ostream& out, const LocksConfig& config, int threads,
                       const std::vector<LocksRow>& rows);
nlohmann::json locks_json(const LocksConfig& config, const std::vector<LocksRow>& rows);
std::vector<std::string> locks_csv_header();
// --plot: ops/s and ns per op (longest wait with --counters) against thread count, one line
// per sync mode.
PlotSpec locks_plot(const LocksConfig& config, const std::vector<LocksRow>& rows);
std::vector<std::string> locks_csv_fields(const LocksRow& row);

// The whole suite: measures, prints tables to out, writes the requested files; returns the
// rows. Throws std::runtime_error when a run fails or a file cannot be written.
std::vector<LocksRow> run_locks_suite(const LocksConfig& config, std::ostream& out);

// Entry point used by troupe-bench: parses args (after the suite name); exit status.
// Throws OptionsError on bad flags.
int locks_main(const std::vector<std::string>& args, std::ostream& out);

}  // namespace troupe
