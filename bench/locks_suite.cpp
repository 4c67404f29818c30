#include "bench/locks_suite.hpp"

#include <cmath>
#include <limits>
#include <ostream>

#include <fmt/format.h>

#include "actors/options.hpp"
#include "bench/machine.hpp"
#include "bench/plot.hpp"
#include "bench/progress.hpp"
#include "bench/report.hpp"

namespace troupe {
namespace po = boost::program_options;

namespace {

double nan() { return std::numeric_limits<double>::quiet_NaN(); }

nlohmann::json optional_json(const std::optional<double>& value) {
  return value ? nlohmann::json(*value) : nlohmann::json(nullptr);
}

std::string seconds_text(double seconds) { return fmt::format("{:g} s", seconds); }

}  // namespace

po::options_description locks_options() {
  po::options_description description(
      "troupe-bench locks: lock contention across thread counts and sync modes\n"
      "Each thread loops {lock; work inside; unlock; work outside}; modes run interleaved\n"
      "per repetition with fresh threads and a fresh lock per run.\n\nOptions");
  add_general_options(description);
  add_sync_option(description, sync_list_text(all_sync_modes, ","));
  description.add_options()
      ("threads", po::value<std::string>()->value_name("LIST")->default_value("1,2,8,16,32"),
       "contending thread counts, comma-separated")
      ("work-inside", po::value<int>()->value_name("N")->default_value(5),
       "units of dependent floating-point work inside the critical section")
      ("work-outside", po::value<int>()->value_name("N")->default_value(5),
       "units of work between critical sections")
      ("seconds", po::value<double>()->value_name("S")->default_value(1.0, "1"),
       "duration of one run (fractions allowed)")
      ("repetitions", po::value<int>()->value_name("N")->default_value(15),
       "interleaved repetitions of every (sync, threads) run")
      ("read-ratio", po::value<double>()->value_name("R")->default_value(0.0, "0"),
       "fraction of loops that only read, under the shared lock of reader-writer locks")
      ("counters", po::bool_switch(),
       "wrap each lock in Counted<Lock> to report the longest wait (costs throughput: compare "
       "only runs with the same setting); for actor, time each request")
      ("json", po::value<std::string>()->value_name("FILE"), "write the results as JSON")
      ("csv", po::value<std::string>()->value_name("FILE"), "write the results as CSV")
      ("plot", po::value<std::string>()->value_name("FILE.svg"),
       "plot ops/s and ns per op (longest wait with --counters) against thread count");
  return description;
}

LocksConfig read_locks_config(const po::variables_map& values) {
  LocksConfig config;
  config.threads = parse_int_list("threads", values.at("threads").as<std::string>(), 1, 4096);
  config.sync = read_sync_options(values).sync;
  config.work_inside = read_in_range(values, "work-inside", 0, 1'000'000);
  config.work_outside = read_in_range(values, "work-outside", 0, 1'000'000);
  config.seconds = read_in_range(values, "seconds", 0.001, 3600.0);
  config.repetitions = read_in_range(values, "repetitions", 1, 10'000);
  config.read_ratio = read_in_range(values, "read-ratio", 0.0, 1.0);
  config.counters = values.at("counters").as<bool>();
  if (values.count("json")) config.json = values.at("json").as<std::string>();
  if (values.count("csv")) config.csv = values.at("csv").as<std::string>();
  if (values.count("plot")) config.plot = values.at("plot").as<std::string>();
  return config;
}

std::vector<LocksRow> locks_rows(int threads, const std::vector<SyncMode>& modes,
                                 const std::vector<std::vector<ContentionRun>>& runs) {
  std::vector<LocksRow> rows;
  for (std::size_t m = 0; m < modes.size(); ++m) {
    LocksRow row;
    row.sync = modes[m];
    row.threads = threads;
    std::vector<double> min_shares;
    std::vector<double> max_shares;
    for (const ContentionRun& run : runs[m]) {
      row.ops_per_s_repetitions.push_back(run.ops_per_second());
      min_shares.push_back(run.min_share());
      max_shares.push_back(run.max_share());
      if (run.longest_wait_ns)
        row.longest_wait_ns = std::max(row.longest_wait_ns.value_or(0), *run.longest_wait_ns);
      row.bytes_per_lock = run.bytes_per_lock;
    }
    row.ops_per_s = summarize(row.ops_per_s_repetitions);
    row.ns_per_op = ratio(1e9, row.ops_per_s.median);
    row.min_share = median(min_shares);
    row.max_share = median(max_shares);
    row.min_share_worst = min_of(min_shares);
    rows.push_back(std::move(row));
  }
  const LocksRow* std_row = nullptr;
  for (const LocksRow& row : rows)
    if (row.sync == SyncMode::Std) std_row = &row;
  for (LocksRow& row : rows) {
    row.ratio_to_std = std_row ? ratio(row.ops_per_s.median, std_row->ops_per_s.median) : nan();
    if (std_row && &row != std_row)
      row.overlaps_std = ranges_overlap(row.ops_per_s, std_row->ops_per_s);
  }
  return rows;
}

void print_locks_table(std::ostream& out, const LocksConfig& config, int threads,
                       const std::vector<LocksRow>& rows) {
  out << fmt::format(
      "\nlocks: {} thread{}, work {} inside / {} outside, read ratio {:g}, {} x {} "
      "repetitions (interleaved){}\n",
      threads, threads == 1 ? "" : "s", config.work_inside, config.work_outside,
      config.read_ratio, seconds_text(config.seconds), config.repetitions,
      config.counters ? ", with contention counters" : "");
  TextTable table({{"sync", Align::Left},
                   {"ops/s median"},
                   {"[min"},
                   {"max]"},
                   {"ns/op"},
                   {"share min"},
                   {"share max"},
                   {"longest wait"},
                   {"bytes"},
                   {"vs std"},
                   {"ranges", Align::Left}});
  for (const LocksRow& row : rows) {
    const std::string longest_wait =
        row.longest_wait_ns ? format_duration_ns(*row.longest_wait_ns) : "-";
    const std::string versus_std =
        std::isnan(row.ratio_to_std)  ? "-"
        : row.ratio_to_std < 0.1      ? fmt::format("{:.4f}x", row.ratio_to_std)
                                      : fmt::format("{:.2f}x", row.ratio_to_std);
    const std::string ranges =
        row.overlaps_std ? (*row.overlaps_std ? "overlap std" : "distinct") : "";
    table.add_row({std::string(to_string(row.sync)), format_si(row.ops_per_s.median),
                   format_si(row.ops_per_s.min), format_si(row.ops_per_s.max),
                   format_fixed(row.ns_per_op, 1), format_fixed(row.min_share, 2),
                   format_fixed(row.max_share, 2), longest_wait,
                   std::to_string(row.bytes_per_lock), versus_std, ranges});
  }
  table.print(out);
  out.flush();
}

nlohmann::json locks_json(const LocksConfig& config, const std::vector<LocksRow>& rows) {
  nlohmann::json sync_names = nlohmann::json::array();
  for (SyncMode mode : config.sync) sync_names.push_back(to_string(mode));
  nlohmann::json document = {
      {"suite", "locks"},
      {"axes", {"sync", "threads"}},
      {"headline", {"ops_per_s_median", "ns_per_op", "min_share", "longest_wait_ns"}},
      {"config",
       {{"threads", config.threads},
        {"sync", sync_names},
        {"work_inside", config.work_inside},
        {"work_outside", config.work_outside},
        {"seconds", config.seconds},
        {"repetitions", config.repetitions},
        {"read_ratio", config.read_ratio},
        {"counters", config.counters}}},
      {"machine", to_json(collect_machine_facts())},
      {"results", nlohmann::json::array()}};
  for (const LocksRow& row : rows) {
    document["results"].push_back({
        {"sync", to_string(row.sync)},
        {"threads", row.threads},
        {"ops_per_s_median", row.ops_per_s.median},
        {"ops_per_s_min", row.ops_per_s.min},
        {"ops_per_s_max", row.ops_per_s.max},
        {"ops_per_s_repetitions", row.ops_per_s_repetitions},
        {"ns_per_op", row.ns_per_op},
        {"min_share", row.min_share},
        {"max_share", row.max_share},
        {"min_share_worst", row.min_share_worst},
        {"longest_wait_ns", optional_json(row.longest_wait_ns)},
        {"bytes_per_lock", row.bytes_per_lock},
        {"ratio_to_std", row.ratio_to_std},
        {"overlaps_std", row.overlaps_std ? nlohmann::json(*row.overlaps_std) : nullptr},
    });
  }
  return document;
}

std::vector<std::string> locks_csv_header() {
  return {"sync",          "threads",   "ops_per_s_median", "ops_per_s_min",
          "ops_per_s_max", "ns_per_op", "min_share",        "max_share",
          "min_share_worst", "longest_wait_ns", "bytes_per_lock", "ratio_to_std",
          "overlaps_std"};
}

std::vector<std::string> locks_csv_fields(const LocksRow& row) {
  auto number = [](double value) { return std::isnan(value) ? "" : fmt::format("{:g}", value); };
  return {std::string(to_string(row.sync)),
          std::to_string(row.threads),
          number(row.ops_per_s.median),
          number(row.ops_per_s.min),
          number(row.ops_per_s.max),
          number(row.ns_per_op),
          number(row.min_share),
          number(row.max_share),
          number(row.min_share_worst),
          row.longest_wait_ns ? number(*row.longest_wait_ns) : "",
          std::to_string(row.bytes_per_lock),
          number(row.ratio_to_std),
          row.overlaps_std ? (*row.overlaps_std ? "true" : "false") : ""};
}

PlotSpec locks_plot(const LocksConfig& config, const std::vector<LocksRow>& rows) {
  PlotSpec spec;
  spec.title = fmt::format("troupe-bench locks: work {} inside / {} outside, read ratio {:g}",
                           config.work_inside, config.work_outside, config.read_ratio);
  spec.x_label = "contending threads";
  spec.log2_x = true;
  spec.panels = {{"loops per second (all threads), median", "ops/s", {}},
                 config.counters ? PlotPanel{"longest wait for the lock", "ns", {}}
                                 : PlotPanel{"wall time per loop (1e9 / ops/s)", "ns", {}}};
  for (SyncMode mode : config.sync) {
    PlotSeries throughput{std::string(to_string(mode)), {}, {}}, latency = throughput;
    for (const LocksRow& row : rows) {
      if (row.sync != mode) continue;
      throughput.x.push_back(row.threads), throughput.y.push_back(row.ops_per_s.median);
      latency.x.push_back(row.threads);
      latency.y.push_back(config.counters ? row.longest_wait_ns.value_or(nan()) : row.ns_per_op);
    }
    spec.panels[0].series.push_back(throughput);
    spec.panels[1].series.push_back(latency);
  }
  return spec;
}

std::vector<LocksRow> run_locks_suite(const LocksConfig& config, std::ostream& out) {
  ProgressLine progress;
  std::vector<LocksRow> all_rows;
  for (int threads : config.threads) {
    const ContentionConfig contention{.threads = threads,
                                      .work_inside = config.work_inside,
                                      .work_outside = config.work_outside,
                                      .seconds = config.seconds,
                                      .read_ratio = config.read_ratio,
                                      .counters = config.counters};
    std::vector<std::vector<ContentionRun>> runs(config.sync.size());
    for_each_interleaved(static_cast<std::size_t>(config.repetitions), config.sync.size(),
                         [&](std::size_t repetition, std::size_t mode) {
                           progress.show(fmt::format("locks: {} threads, repetition {}/{}, {}",
                                                     threads, repetition + 1, config.repetitions,
                                                     to_string(config.sync[mode])));
                           runs[mode].push_back(run_contention(config.sync[mode], contention));
                         });
    progress.clear();
    std::vector<LocksRow> rows = locks_rows(threads, config.sync, runs);
    print_locks_table(out, config, threads, rows);
    all_rows.insert(all_rows.end(), rows.begin(), rows.end());
  }
  if (config.json) write_json_file(*config.json, locks_json(config, all_rows));
  if (config.csv) {
    std::vector<std::vector<std::string>> lines;
    for (const LocksRow& row : all_rows) lines.push_back(locks_csv_fields(row));
    write_csv_file(*config.csv, locks_csv_header(), lines);
  }
  if (config.plot) write_plot_svg(locks_plot(config, all_rows), *config.plot);
  return all_rows;
}

int locks_main(const std::vector<std::string>& args, std::ostream& out) {
  const po::options_description description = locks_options();
  const po::variables_map values = parse_options(description, args);
  if (help_requested(values)) {
    out << description << '\n';
    return 0;
  }
  run_locks_suite(read_locks_config(values), out);
  return 0;
}

}  // namespace troupe
