#include "bench/kvcache_suite.hpp"

#include <cmath>
#include <limits>
#include <ostream>
#include <stdexcept>

#include <fmt/format.h>

#include "actors/options.hpp"
#include "bench/machine.hpp"
#include "bench/progress.hpp"
#include "bench/report.hpp"

namespace troupe {
namespace po = boost::program_options;

namespace {

double nan() { return std::numeric_limits<double>::quiet_NaN(); }

double percentile_or_nan(const std::vector<double>& samples, double p) {
  return samples.empty() ? nan() : percentile(samples, p);
}

void pool(std::vector<double>& into, const std::vector<double>& samples) {
  into.insert(into.end(), samples.begin(), samples.end());
}

std::string ratio_text(double value) {
  if (std::isnan(value)) return "-";
  return value < 0.1 ? fmt::format("{:.4f}x", value) : fmt::format("{:.2f}x", value);
}

}  // namespace

po::options_description kvcache_options() {
  po::options_description description(
      "troupe-bench kvcache: one shared KV cache and model state under each sync mode\n"
      "Client threads do prefix lookups, appends and frees (a sequence ends, a new one is\n"
      "admitted) in steps of " + std::to_string(kStepOps) +
      " operations; a metrics reader snapshots both states every millisecond; the model is\n"
      "reloaded once per second. No model file is needed. Modes run interleaved per\n"
      "repetition with fresh state per run.\n\nOptions");
  add_general_options(description);
  add_sync_option(description, sync_list_text(all_sync_modes, ","));
  description.add_options()
      ("threads", po::value<std::string>()->value_name("LIST")->default_value("1,2,8,16,32"),
       "client thread counts, comma-separated")
      ("kv-granularity", po::value<std::string>()->value_name("LIST")->default_value("step"),
       "step: one batched call per kind of work per step; token: one call per operation "
       "(comma-separated list of both to compare)")
      ("mix", po::value<std::string>()->value_name("MIX")->default_value("lookup:70,append:25,free:5"),
       "relative weights of the operations")
      ("seconds", po::value<double>()->value_name("S")->default_value(1.0, "1"),
       "duration of one run (fractions allowed)")
      ("repetitions", po::value<int>()->value_name("N")->default_value(9),
       "interleaved repetitions of every (sync, threads, granularity) run")
      ("json", po::value<std::string>()->value_name("FILE"), "write the results as JSON");
  return description;
}

KvcacheConfig read_kvcache_config(const po::variables_map& values) {
  KvcacheConfig config;
  config.threads = parse_int_list("threads", values.at("threads").as<std::string>(), 1, 4096);
  config.sync = read_sync_options(values).sync;
  config.granularity =
      parse_kv_granularity_list("kv-granularity", values.at("kv-granularity").as<std::string>());
  config.mix = parse_kv_mix("mix", values.at("mix").as<std::string>());
  config.seconds = read_in_range(values, "seconds", 0.01, 3600.0);
  config.repetitions = read_in_range(values, "repetitions", 1, 10'000);
  if (values.count("json")) config.json = values.at("json").as<std::string>();
  return config;
}

std::vector<KvcacheRow> kvcache_rows(int threads, KvGranularity granularity,
                                     const std::vector<SyncMode>& modes,
                                     std::vector<std::vector<KvWorkloadRun>>& runs) {
  std::vector<KvcacheRow> rows;
  for (std::size_t m = 0; m < modes.size(); ++m) {
    KvcacheRow row;
    row.sync = modes[m];
    row.granularity = granularity;
    row.threads = threads;
    std::vector<double> lookups, appends, frees, contended, model_contended, hit_rates;
    double calls = 0, operations = 0;
    for (KvWorkloadRun& run : runs[m]) {
      row.ops_per_s_repetitions.push_back(run.ops_per_second());
      pool(lookups, run.lookup_ns);
      pool(appends, run.append_ns);
      pool(frees, run.free_ns);
      contended.push_back(run.kv_sharing.contended_fraction());
      model_contended.push_back(run.model_sharing.contended_fraction());
      hit_rates.push_back(run.kv_stats.token_hit_rate());
      row.mailbox_depth_max = std::max(row.mailbox_depth_max, run.kv_sharing.mailbox_depth_max);
      calls += static_cast<double>(run.kv_sharing.calls);
      operations += static_cast<double>(run.operations());
      row.failed += run.failed;
      row.reloads += run.reloads;
      row.snapshots += run.snapshots;
    }
    row.ops_per_s = summarize(row.ops_per_s_repetitions);
    row.lookup_p50_ns = percentile_or_nan(lookups, 50);
    row.lookup_p99_ns = percentile_or_nan(lookups, 99);
    row.append_p50_ns = percentile_or_nan(appends, 50);
    row.append_p99_ns = percentile_or_nan(appends, 99);
    row.free_p50_ns = percentile_or_nan(frees, 50);
    row.free_p99_ns = percentile_or_nan(frees, 99);
    row.calls_per_op = ratio(calls, operations);
    row.contended = median(contended);
    row.model_contended = median(model_contended);
    row.hit_rate = median(hit_rates);
    rows.push_back(std::move(row));
  }
  const KvcacheRow* std_row = nullptr;
  for (const KvcacheRow& row : rows)
    if (row.sync == SyncMode::Std) std_row = &row;
  for (KvcacheRow& row : rows) {
    row.ratio_to_std = std_row ? ratio(row.ops_per_s.median, std_row->ops_per_s.median) : nan();
    if (std_row && &row != std_row)
      row.overlaps_std = ranges_overlap(row.ops_per_s, std_row->ops_per_s);
  }
  return rows;
}

void print_kvcache_table(std::ostream& out, const KvcacheConfig& config, int threads,
                         KvGranularity granularity, const std::vector<KvcacheRow>& rows) {
  out << fmt::format(
      "\nkvcache: {} thread{}, granularity {}, mix {}, {:g} s x {} repetitions (interleaved)\n",
      threads, threads == 1 ? "" : "s", to_string(granularity), kv_mix_text(config.mix),
      config.seconds, config.repetitions);
  TextTable table({{"sync", Align::Left},
                   {"ops/s median"},
                   {"[min"},
                   {"max]"},
                   {"lookup p50"},
                   {"p99"},
                   {"append p50"},
                   {"p99"},
                   {"free p50"},
                   {"p99"},
                   {"calls/op"},
                   {"contended"},
                   {"max depth"},
                   {"vs std"},
                   {"ranges", Align::Left}});
  uint64_t failed = 0;
  for (const KvcacheRow& row : rows) {
    const std::string ranges =
        row.overlaps_std ? (*row.overlaps_std ? "overlap std" : "distinct") : "";
    table.add_row({std::string(to_string(row.sync)), format_si(row.ops_per_s.median),
                   format_si(row.ops_per_s.min), format_si(row.ops_per_s.max),
                   format_duration_ns(row.lookup_p50_ns), format_duration_ns(row.lookup_p99_ns),
                   format_duration_ns(row.append_p50_ns), format_duration_ns(row.append_p99_ns),
                   format_duration_ns(row.free_p50_ns), format_duration_ns(row.free_p99_ns),
                   format_fixed(row.calls_per_op, 2),
                   format_fixed(100 * row.contended, 1) + " %",
                   row.sync == SyncMode::Actor ? std::to_string(row.mailbox_depth_max) : "-",
                   ratio_text(row.ratio_to_std), ranges});
    failed += row.failed;
  }
  table.print(out);
  if (failed > 0)
    out << "note: the cache refused " << failed
        << " operations (out of blocks); the figures include them\n";
  out.flush();
}

nlohmann::json kvcache_json(const KvcacheConfig& config, const std::vector<KvcacheRow>& rows) {
  nlohmann::json sync_names = nlohmann::json::array();
  for (SyncMode mode : config.sync) sync_names.push_back(to_string(mode));
  nlohmann::json granularities = nlohmann::json::array();
  for (KvGranularity granularity : config.granularity)
    granularities.push_back(to_string(granularity));
  nlohmann::json document = {
      {"suite", "kvcache"},
      {"axes", {"sync", "kv_granularity", "threads"}},
      {"headline", {"ops_per_s_median", "lookup_p99_ns", "append_p99_ns", "free_p99_ns",
                    "contended"}},
      {"config",
       {{"threads", config.threads},
        {"sync", sync_names},
        {"kv_granularity", granularities},
        {"mix", kv_mix_text(config.mix)},
        {"step_ops", kStepOps},
        {"live_sequences_per_thread", kLiveSequences},
        {"block_tokens", kBlockTokens},
        {"seconds", config.seconds},
        {"repetitions", config.repetitions}}},
      {"machine", to_json(collect_machine_facts())},
      {"results", nlohmann::json::array()}};
  for (const KvcacheRow& row : rows) {
    document["results"].push_back({
        {"sync", to_string(row.sync)},
        {"kv_granularity", to_string(row.granularity)},
        {"threads", row.threads},
        {"ops_per_s_median", row.ops_per_s.median},
        {"ops_per_s_min", row.ops_per_s.min},
        {"ops_per_s_max", row.ops_per_s.max},
        {"ops_per_s_repetitions", row.ops_per_s_repetitions},
        {"lookup_p50_ns", row.lookup_p50_ns},
        {"lookup_p99_ns", row.lookup_p99_ns},
        {"append_p50_ns", row.append_p50_ns},
        {"append_p99_ns", row.append_p99_ns},
        {"free_p50_ns", row.free_p50_ns},
        {"free_p99_ns", row.free_p99_ns},
        {"calls_per_op", row.calls_per_op},
        {"contended", row.contended},
        {"mailbox_depth_max", row.mailbox_depth_max},
        {"model_contended", row.model_contended},
        {"hit_rate", row.hit_rate},
        {"failed", row.failed},
        {"reloads", row.reloads},
        {"snapshots", row.snapshots},
        {"ratio_to_std", row.ratio_to_std},
        {"overlaps_std", row.overlaps_std ? nlohmann::json(*row.overlaps_std) : nullptr},
    });
  }
  return document;
}

std::vector<KvcacheRow> run_kvcache_suite(const KvcacheConfig& config, std::ostream& out) {
  ProgressLine progress;
  std::vector<KvcacheRow> all_rows;
  for (int threads : config.threads) {
    for (KvGranularity granularity : config.granularity) {
      std::vector<std::vector<KvWorkloadRun>> runs(config.sync.size());
      for_each_interleaved(
          static_cast<std::size_t>(config.repetitions), config.sync.size(),
          [&](std::size_t repetition, std::size_t mode) {
            progress.show(fmt::format("kvcache: {} threads, {}, repetition {}/{}, {}", threads,
                                      to_string(granularity), repetition + 1, config.repetitions,
                                      to_string(config.sync[mode])));
            KvWorkloadRun run = run_kv_workload({.sync = config.sync[mode],
                                                 .granularity = granularity,
                                                 .threads = threads,
                                                 .seconds = config.seconds,
                                                 .mix = config.mix});
            if (run.check_failure)
              throw std::runtime_error(fmt::format("the KV cache is inconsistent after a {} run: {}",
                                                   to_string(config.sync[mode]),
                                                   *run.check_failure));
            runs[mode].push_back(std::move(run));
          });
      progress.clear();
      std::vector<KvcacheRow> rows = kvcache_rows(threads, granularity, config.sync, runs);
      print_kvcache_table(out, config, threads, granularity, rows);
      all_rows.insert(all_rows.end(), rows.begin(), rows.end());
    }
  }
  if (config.json) write_json_file(*config.json, kvcache_json(config, all_rows));
  return all_rows;
}

int kvcache_main(const std::vector<std::string>& args, std::ostream& out) {
  const po::options_description description = kvcache_options();
  const po::variables_map values = parse_options(description, args);
  if (help_requested(values)) {
    out << description << '\n';
    return 0;
  }
  run_kvcache_suite(read_kvcache_config(values), out);
  return 0;
}

}  // namespace troupe
