#include "bench/serve_suite.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <ostream>
#include <stdexcept>

#include <fmt/format.h>

#include "actors/options.hpp"
#include "bench/machine.hpp"
#include "bench/plot.hpp"
#include "bench/progress.hpp"
#include "bench/report.hpp"

namespace troupe {
namespace po = boost::program_options;

namespace {

constexpr uint64_t kSimKvBytes = 100ull << 30;

double nan() { return std::numeric_limits<double>::quiet_NaN(); }

bool parse_on_off(std::string_view text) {
  if (text == "on") return true;
  if (text == "off") return false;
  throw std::invalid_argument("expected on or off");
}

Summary summary_of(const std::vector<ServeRun>& runs, double ServeRun::*figure, double scale = 1) {
  std::vector<double> values;
  for (const ServeRun& run : runs)
    if (std::isfinite(run.*figure)) values.push_back(run.*figure * scale);
  if (values.empty()) return {nan(), nan(), nan()};
  return summarize(values);
}

std::string median_range(const Summary& summary, auto&& format) {
  if (std::isnan(summary.median)) return "-";
  return format(summary.median) + " [" + format(summary.min) + "-" + format(summary.max) + "]";
}

std::string ratio_text(const ServeRow& row) {
  if (std::isnan(row.ratio_to_first)) return "-";
  std::string text = fmt::format("{:.2f}x", row.ratio_to_first);
  if (row.overlaps_first) text += *row.overlaps_first ? " overlap" : " distinct";
  return text;
}

nlohmann::json summary_json(const Summary& summary) {
  return {{"median", summary.median}, {"min", summary.min}, {"max", summary.max}};
}

nlohmann::json distribution_json(const Distribution& d) {
  return {{"mean", d.mean}, {"p50", d.p50}, {"p90", d.p90}, {"p99", d.p99}};
}

std::string mib_text(double bytes) {
  return std::isnan(bytes) ? "-" : fmt::format("{:.1f}", bytes / (1 << 20));
}

// Lock contention summed over every shared state, or the deepest mailbox.
std::string contention_text(const ServeRow& row) {
  uint64_t calls = 0, contended = 0;
  for (const SharingRow& sharing : row.sharing)
    calls += sharing.calls, contended += sharing.contended_calls;
  if (calls == 0) return "-";
  return fmt::format("{:.2f} %", 100.0 * double(contended) / double(calls));
}

std::string wait_text(const ServeRow& row) {
  uint64_t wait = 0;
  for (const SharingRow& sharing : row.sharing) wait += sharing.wait_ns_total;
  return row.sharing.empty() ? "-" : format_duration_ns(double(wait));
}

std::string depth_text(const ServeRow& row) {
  uint64_t depth = 0;
  for (const SharingRow& sharing : row.sharing) depth = std::max(depth, sharing.mailbox_depth_max);
  return row.sharing.empty() ? "-" : std::to_string(depth);
}

}  // namespace

std::string label(const ServeCombination& combination) {
  std::string text =
      fmt::format("{}/{}", to_string(combination.runtime), to_string(combination.sync));
  if (combination.granularity != KvGranularity::Step)
    text += "/" + std::string(to_string(combination.granularity));
  if (!combination.prefix_cache) text += "/no-prefix";
  return text;
}

po::options_description serve_options() {
  po::options_description description(
      "troupe-bench serve: the serving engine in-process under each runtime x sync mode\n"
      "Each run: a fresh engine, BATCH requests of N-PROMPT random prompt tokens (seeded)\n"
      "generating exactly N-GEN tokens, submitted at once; combinations run interleaved per\n"
      "repetition. --backend sim needs no model file and its figures are simulated.\n\nOptions");
  add_general_options(description);
  add_model_options(description);
  add_runtime_option(description, "actors,threads");
  add_sync_option(description, "parking");
  description.add_options()
      ("sim-profile", po::value<std::string>()->value_name("NAME")->default_value("7b-h200"),
       "backend sim: the simulated model and device")
      ("sim-time-scale", po::value<double>()->value_name("S")->default_value(1.0, "1"),
       "backend sim: multiplies every simulated step time (0: no waiting, for tests)")
      ("prompt-batchsize", po::value<std::string>()->value_name("LIST")->default_value("8"),
       "concurrent requests per run, comma-separated")
      ("n-prompt", po::value<int>()->value_name("N")->default_value(64),
       "prompt tokens per request")
      ("n-gen", po::value<int>()->value_name("N")->default_value(16),
       "generated tokens per request (EOS ignored)")
      ("shared-prefix", po::value<int>()->value_name("N")->default_value(0),
       "leading prompt tokens common to every request (exercises the prefix cache)")
      ("repetitions", po::value<int>()->value_name("N")->default_value(1),
       "interleaved repetitions of every combination")
      ("seed", po::value<uint64_t>()->value_name("N")->default_value(1), "prompt seed")
      ("workers", po::value<int>()->value_name("N")->default_value(1),
       "backends, each with at most one step in flight")
      ("kv-granularity", po::value<std::string>()->value_name("LIST")->default_value("step"),
       "step (one KV transaction per planner iteration) and/or token (one call per token)")
      ("prefix-cache", po::value<std::string>()->value_name("LIST")->default_value("on"),
       "on and/or off")
      ("max-batch-tokens", po::value<int>()->value_name("N")->default_value(512),
       "tokens of one batch (decodes and prefill chunks together)")
      ("max-seqs", po::value<int>()->value_name("N")->default_value(64),
       "sequences in one batch and running on one worker")
      ("kv-mib", po::value<int>()->value_name("MIB")->default_value(0),
       "KV memory per backend; 0: the backend's default (sim: 100 GiB, an H200's share)")
      ("timeout", po::value<int>()->value_name("S")->default_value(600),
       "seconds a run may take before it fails")
      ("json", po::value<std::string>()->value_name("FILE"), "write the results as JSON")
      ("csv", po::value<std::string>()->value_name("FILE"), "write the results as CSV")
      ("plot", po::value<std::string>()->value_name("FILE.svg"),
       "plot output tok/s and p99 latencies against batch size (gnuplot)");
  return description;
}

ServeConfig read_serve_config(const po::variables_map& values) {
  ServeConfig config;
  config.model = read_model_options(values);
  const SyncOptions sync = read_sync_options(values);
  config.sync = sync.sync;
  config.runtimes = sync.runtime;
  config.sim_profile = values.at("sim-profile").as<std::string>();
  config.sim_time_scale = read_in_range(values, "sim-time-scale", 0.0, 1000.0);
  config.batch_sizes =
      parse_int_list("prompt-batchsize", values.at("prompt-batchsize").as<std::string>(), 1, 4096);
  config.n_prompt = read_in_range(values, "n-prompt", 1, 1 << 20);
  config.n_gen = read_in_range(values, "n-gen", 1, 1 << 20);
  config.shared_prefix = read_in_range(values, "shared-prefix", 0, config.n_prompt);
  config.repetitions = read_in_range(values, "repetitions", 1, 10'000);
  config.seed = values.at("seed").as<uint64_t>();
  config.workers = read_in_range(values, "workers", 1, 256);
  config.granularity =
      parse_kv_granularity_list("kv-granularity", values.at("kv-granularity").as<std::string>());
  config.prefix_cache =
      parse_list<bool>("prefix-cache", values.at("prefix-cache").as<std::string>(), parse_on_off);
  config.max_batch_tokens = read_in_range(values, "max-batch-tokens", 1, 1 << 20);
  config.max_seqs = read_in_range(values, "max-seqs", 1, config.max_batch_tokens);
  config.kv_mib = read_in_range(values, "kv-mib", 0, 1 << 24);
  config.timeout_seconds = read_in_range(values, "timeout", 1, 86'400);
  if (values.count("json")) config.json = values.at("json").as<std::string>();
  if (values.count("csv")) config.csv = values.at("csv").as<std::string>();
  if (values.count("plot")) config.plot = values.at("plot").as<std::string>();
  return config;
}

std::pair<std::vector<ServeCombination>, std::vector<SkippedCombination>> serve_combinations(
    const ServeConfig& config) {
  std::vector<ServeCombination> run;
  std::vector<SkippedCombination> skipped;
  for (Runtime runtime : config.runtimes)
    for (SyncMode sync : config.sync)
      for (KvGranularity granularity : config.granularity)
        for (bool prefix_cache : config.prefix_cache) {
          const ServeCombination combination{runtime, sync, granularity, prefix_cache};
          if (runtime == Runtime::Threads && sync == SyncMode::Actor)
            skipped.push_back(
                {combination, "the threads runtime has no actor to own the shared state"});
          else
            run.push_back(combination);
        }
  return {run, skipped};
}

EngineOptions engine_options(const ServeConfig& config, const ServeCombination& combination) {
  EngineOptions options;
  options.runtime = combination.runtime;
  options.sync = combination.sync;
  options.kv_granularity = combination.granularity;
  options.prefix_cache = combination.prefix_cache;
  options.model_path = config.model.model.string();
  options.backend.name = config.model.backend;
  options.backend.threads = config.model.backend_threads;
  options.backend.max_batch_tokens = config.max_batch_tokens;
  if (config.kv_mib > 0)
    options.backend.kv_bytes = static_cast<uint64_t>(config.kv_mib) << 20;
  else if (config.simulated())
    options.backend.kv_bytes = kSimKvBytes;
  options.sim_profile = config.sim_profile;
  options.sim_time_scale = config.sim_time_scale;
  options.workers = config.workers;
  options.planner.max_batch_tokens = config.max_batch_tokens;
  options.planner.max_seqs = config.max_seqs;
  options.planner.max_queued =
      std::max(options.planner.max_queued,
               *std::max_element(config.batch_sizes.begin(), config.batch_sizes.end()) + 1);
  options.request_timeout = std::chrono::seconds(config.timeout_seconds);
  return options;
}

std::vector<ServeRow> serve_rows(int batch_size, const std::vector<ServeCombination>& combinations,
                                 std::vector<std::vector<ServeRun>> runs) {
  std::vector<ServeRow> rows;
  for (std::size_t c = 0; c < combinations.size(); ++c) {
    ServeRow row;
    row.batch_size = batch_size;
    row.combination = combinations[c];
    row.runs = std::move(runs[c]);
    row.output_tok_per_s = summary_of(row.runs, &ServeRun::output_tok_per_s);
    row.total_tok_per_s = summary_of(row.runs, &ServeRun::total_tok_per_s);
    row.prompt_tok_per_s = summary_of(row.runs, &ServeRun::prompt_tok_per_s);
    row.generation_tok_per_s = summary_of(row.runs, &ServeRun::generation_tok_per_s);
    row.wall_seconds = summary_of(row.runs, &ServeRun::wall_seconds);
    row.worker_utilization = summary_of(row.runs, &ServeRun::worker_utilization);
    row.idle_gap_mean_us = summary_of(row.runs, &ServeRun::idle_gap_mean_seconds, 1e6);
    row.switches_per_step = summary_of(row.runs, &ServeRun::switches_per_step);
    row.involuntary_switches_per_step =
        summary_of(row.runs, &ServeRun::involuntary_switches_per_step);
    std::vector<double> ttft, tpot, itl, e2e, queue, rss, hit_rates, gaps;
    for (const ServeRun& run : row.runs) {
      for (const RequestTimes& request : run.requests) {
        ttft.push_back(request.ttft);
        e2e.push_back(request.e2e);
        queue.push_back(request.queue);
        const std::size_t n = request.token_times.size();
        if (n > 1)
          tpot.push_back((request.token_times.back() - request.token_times.front()) /
                         static_cast<double>(n - 1));
        for (std::size_t i = 1; i < n; ++i)
          itl.push_back(request.token_times[i] - request.token_times[i - 1]);
      }
      gaps.insert(gaps.end(), run.idle_gaps.begin(), run.idle_gaps.end());
      if (run.peak_rss_bytes) rss.push_back(static_cast<double>(*run.peak_rss_bytes));
      hit_rates.push_back(run.prefix_hit_rate);
      row.peak_kv_blocks = std::max(row.peak_kv_blocks, run.peak_kv_blocks);
      row.peak_kv_bytes = std::max(row.peak_kv_bytes, run.peak_kv_bytes);
      row.gpu_memory_bytes = std::max(row.gpu_memory_bytes, run.gpu_memory_bytes);
      row.preemptions += run.preemptions;
      row.backend = run.backend;
      for (const auto& [name, stats] : run.sharing) {
        auto found = std::find_if(row.sharing.begin(), row.sharing.end(),
                                  [&](const SharingRow& s) { return s.name == name; });
        if (found == row.sharing.end()) found = row.sharing.insert(row.sharing.end(), {name});
        found->calls += stats.calls;
        found->contended_calls += stats.contended_calls;
        found->wait_ns_total += stats.wait_ns_total;
        found->wait_ns_longest = std::max(found->wait_ns_longest, stats.wait_ns_longest);
        found->mailbox_depth_max = std::max(found->mailbox_depth_max, stats.mailbox_depth_max);
      }
    }
    row.ttft_ms = scaled_distribution(ttft, 1e3);
    row.tpot_ms = scaled_distribution(tpot, 1e3);
    row.itl_ms = scaled_distribution(itl, 1e3);
    row.e2e_ms = scaled_distribution(e2e, 1e3);
    row.queue_ms = scaled_distribution(queue, 1e3);
    row.idle_gap_us = scaled_distribution(gaps, 1e6);
    row.peak_rss_bytes = rss.empty() ? nan() : median(rss);
    row.prefix_hit_rate = hit_rates.empty() ? nan() : median(hit_rates);
    rows.push_back(std::move(row));
  }
  for (std::size_t c = 0; c < rows.size(); ++c) {
    rows[c].ratio_to_first =
        ratio(rows[c].output_tok_per_s.median, rows[0].output_tok_per_s.median);
    if (c > 0)
      rows[c].overlaps_first = ranges_overlap(rows[c].output_tok_per_s, rows[0].output_tok_per_s);
  }
  return rows;
}

void print_serve_table(std::ostream& out, const ServeConfig& config, int batch_size,
                       const std::vector<ServeRow>& rows) {
  const std::string backend = rows.empty() ? config.model.backend : rows.front().backend;
  out << fmt::format(
      "\nserve{}: batch {} x ({} prompt + {} generated tokens), {} worker{}, {}, "
      "{} repetition{} (interleaved)\n",
      config.simulated() ? " (simulated)" : "", batch_size, config.n_prompt, config.n_gen,
      config.workers, config.workers == 1 ? "" : "s", backend, config.repetitions,
      config.repetitions == 1 ? "" : "s");
  std::vector<Column> columns{{"figure", Align::Left}};
  for (const ServeRow& row : rows) columns.push_back({label(row.combination)});
  TextTable table(columns);
  auto add = [&](const std::string& name, auto&& cell) {
    std::vector<std::string> cells{name};
    for (const ServeRow& row : rows) cells.push_back(cell(row));
    table.add_row(std::move(cells));
  };
  auto si = [](double value) { return format_si(value); };
  auto fixed1 = [](double value) { return format_fixed(value, 1); };
  add("output tok/s (wall)",
      [&](const ServeRow& r) { return median_range(r.output_tok_per_s, si); });
  add("  ratio to first", [&](const ServeRow& r) { return ratio_text(r); });
  add("total tok/s (wall)", [&](const ServeRow& r) { return median_range(r.total_tok_per_s, si); });
  add("prompt tok/s", [&](const ServeRow& r) { return median_range(r.prompt_tok_per_s, si); });
  add("generation tok/s",
      [&](const ServeRow& r) { return median_range(r.generation_tok_per_s, si); });
  add("wall s", [&](const ServeRow& r) {
    return median_range(r.wall_seconds, [](double v) { return format_fixed(v, 3); });
  });
  const std::pair<const char*, Distribution ServeRow::*> latencies[] = {
      {"ttft", &ServeRow::ttft_ms},
      {"tpot", &ServeRow::tpot_ms},
      {"itl", &ServeRow::itl_ms},
      {"e2e", &ServeRow::e2e_ms},
      {"queue", &ServeRow::queue_ms}};
  for (const auto& [name, member] : latencies) {
    add(fmt::format("{} ms mean", name),
        [&](const ServeRow& r) { return format_fixed((r.*member).mean, 2); });
    add("  p50", [&](const ServeRow& r) { return format_fixed((r.*member).p50, 2); });
    add("  p90", [&](const ServeRow& r) { return format_fixed((r.*member).p90, 2); });
    add("  p99", [&](const ServeRow& r) { return format_fixed((r.*member).p99, 2); });
  }
  add("worker utilization %", [&](const ServeRow& r) {
    return median_range(r.worker_utilization, [](double v) { return format_fixed(100 * v, 1); });
  });
  add("idle per step us",
      [&](const ServeRow& r) { return median_range(r.idle_gap_mean_us, fixed1); });
  add("idle gap us p50", [&](const ServeRow& r) { return fixed1(r.idle_gap_us.p50); });
  add("  p99", [&](const ServeRow& r) { return fixed1(r.idle_gap_us.p99); });
  add("context switches / step",
      [&](const ServeRow& r) { return median_range(r.switches_per_step, fixed1); });
  add("  involuntary",
      [&](const ServeRow& r) { return median_range(r.involuntary_switches_per_step, fixed1); });
  add("peak RSS MiB", [&](const ServeRow& r) { return mib_text(r.peak_rss_bytes); });
  add("peak KV blocks", [&](const ServeRow& r) { return std::to_string(r.peak_kv_blocks); });
  add(config.simulated() ? "peak KV MiB (simulated)" : "peak KV MiB",
      [&](const ServeRow& r) { return mib_text(double(r.peak_kv_bytes)); });
  add("prefix hit rate %",
      [&](const ServeRow& r) { return format_fixed(100 * r.prefix_hit_rate, 1); });
  add("preemptions", [&](const ServeRow& r) { return std::to_string(r.preemptions); });
  add("contended calls", [&](const ServeRow& r) { return contention_text(r); });
  add("lock wait / actor rtt", [&](const ServeRow& r) { return wait_text(r); });
  add("max mailbox depth", [&](const ServeRow& r) { return depth_text(r); });
  table.print(out);
  out.flush();
}

nlohmann::json serve_json(const ServeConfig& config, const std::vector<ServeRow>& rows,
                          const std::vector<SkippedCombination>& skipped) {
  auto names = [](const auto& list, auto&& name) {
    nlohmann::json array = nlohmann::json::array();
    for (const auto& element : list) array.push_back(name(element));
    return array;
  };
  nlohmann::json document = {
      {"suite", "serve"},
      {"simulated", config.simulated()},
      {"axes", {"batch_size", "runtime", "sync", "kv_granularity", "prefix_cache"}},
      {"headline",
       {"output_tok_per_s.median", "total_tok_per_s.median", "batching_gain", "ttft_ms.p99",
        "itl_ms.p99", "e2e_ms.p99", "worker_utilization.median", "peak_rss_bytes"}},
      {"config",
       {{"backend", config.model.backend},
        {"model",
         config.simulated() ? "simulated " + config.sim_profile : config.model.model.string()},
        {"sim_profile", config.simulated() ? nlohmann::json(config.sim_profile) : nullptr},
        {"sim_time_scale", config.simulated() ? nlohmann::json(config.sim_time_scale) : nullptr},
        {"backend_threads", config.model.backend_threads},
        {"prompt_batchsize", config.batch_sizes},
        {"n_prompt", config.n_prompt},
        {"n_gen", config.n_gen},
        {"shared_prefix", config.shared_prefix},
        {"repetitions", config.repetitions},
        {"seed", config.seed},
        {"runtime", names(config.runtimes, [](Runtime r) { return std::string(to_string(r)); })},
        {"sync", names(config.sync, [](SyncMode s) { return std::string(to_string(s)); })},
        {"kv_granularity",
         names(config.granularity, [](KvGranularity g) { return std::string(to_string(g)); })},
        {"prefix_cache", config.prefix_cache},
        {"workers", config.workers},
        {"max_batch_tokens", config.max_batch_tokens},
        {"max_seqs", config.max_seqs},
        {"kv_mib", config.kv_mib},
        {"engine_per_run", true}}},
      {"machine", to_json(collect_machine_facts())},
      {"skipped", nlohmann::json::array()},
      {"results", nlohmann::json::array()}};
  for (const SkippedCombination& skip : skipped)
    document["skipped"].push_back(
        {{"combination", label(skip.combination)}, {"reason", skip.reason}});
  for (const ServeRow& row : rows) {
    nlohmann::json sharing = nlohmann::json::object();
    for (const SharingRow& s : row.sharing)
      sharing[s.name] = {
          {"calls", s.calls},
          {"contended_calls", s.contended_calls},
          {"contended_fraction", s.calls ? double(s.contended_calls) / double(s.calls) : 0.0},
          {"wait_ms_total", double(s.wait_ns_total) / 1e6},
          {"wait_ms_longest", double(s.wait_ns_longest) / 1e6},
          {"mailbox_depth_max", s.mailbox_depth_max}};
    std::vector<double> output_repetitions;
    for (const ServeRun& run : row.runs) output_repetitions.push_back(run.output_tok_per_s);
    document["results"].push_back({
        {"batch_size", row.batch_size},
        {"runtime", to_string(row.combination.runtime)},
        {"sync", to_string(row.combination.sync)},
        {"kv_granularity", to_string(row.combination.granularity)},
        {"prefix_cache", row.combination.prefix_cache},
        {"label", label(row.combination)},
        {"backend", row.backend},
        {"output_tok_per_s", summary_json(row.output_tok_per_s)},
        {"output_tok_per_s_repetitions", output_repetitions},
        {"total_tok_per_s", summary_json(row.total_tok_per_s)},
        {"prompt_tok_per_s", summary_json(row.prompt_tok_per_s)},
        {"generation_tok_per_s", summary_json(row.generation_tok_per_s)},
        {"wall_s", summary_json(row.wall_seconds)},
        {"ttft_ms", distribution_json(row.ttft_ms)},
        {"tpot_ms", distribution_json(row.tpot_ms)},
        {"itl_ms", distribution_json(row.itl_ms)},
        {"e2e_ms", distribution_json(row.e2e_ms)},
        {"queue_ms", distribution_json(row.queue_ms)},
        {"worker_utilization", summary_json(row.worker_utilization)},
        {"idle_gap_mean_us", summary_json(row.idle_gap_mean_us)},
        {"idle_gap_us", distribution_json(row.idle_gap_us)},
        {"switches_per_step", summary_json(row.switches_per_step)},
        {"involuntary_switches_per_step", summary_json(row.involuntary_switches_per_step)},
        {"peak_rss_bytes", row.peak_rss_bytes},
        {"peak_kv_blocks", row.peak_kv_blocks},
        {"peak_kv_bytes", row.peak_kv_bytes},
        {"gpu_memory_bytes", row.gpu_memory_bytes},
        {"prefix_hit_rate", row.prefix_hit_rate},
        {"preemptions", row.preemptions},
        {"sharing", sharing},
        {"ratio_to_first", row.ratio_to_first},
        {"batching_gain", row.batching_gain},
        {"batching_gain_overlaps",
         row.batching_gain_overlaps ? nlohmann::json(*row.batching_gain_overlaps) : nullptr},
        {"overlaps_first", row.overlaps_first ? nlohmann::json(*row.overlaps_first) : nullptr},
    });
  }
  return document;
}

std::vector<std::string> serve_csv_header() {
  std::vector<std::string> header{"batch_size",
                                  "runtime",
                                  "sync",
                                  "kv_granularity",
                                  "prefix_cache",
                                  "simulated",
                                  "output_tok_per_s_median",
                                  "output_tok_per_s_min",
                                  "output_tok_per_s_max",
                                  "total_tok_per_s_median",
                                  "prompt_tok_per_s_median",
                                  "generation_tok_per_s_median"};
  for (const char* name : {"ttft_ms", "tpot_ms", "itl_ms", "e2e_ms", "queue_ms"})
    for (const char* stat : {"mean", "p50", "p90", "p99"})
      header.push_back(fmt::format("{}_{}", name, stat));
  for (const char* name :
       {"worker_utilization_median", "idle_gap_mean_us_median", "idle_gap_us_p50",
        "idle_gap_us_p99", "switches_per_step_median", "peak_rss_bytes", "peak_kv_blocks",
        "peak_kv_bytes", "prefix_hit_rate", "preemptions", "ratio_to_first"})
    header.push_back(name);
  return header;
}

std::vector<std::string> serve_csv_fields(const ServeRow& row) {
  auto number = [](double value) {
    return std::isfinite(value) ? fmt::format("{:.6g}", value) : "";
  };
  std::vector<std::string> fields{std::to_string(row.batch_size),
                                  std::string(to_string(row.combination.runtime)),
                                  std::string(to_string(row.combination.sync)),
                                  std::string(to_string(row.combination.granularity)),
                                  row.combination.prefix_cache ? "on" : "off",
                                  row.backend.find("simulated") != std::string::npos ? "yes" : "no",
                                  number(row.output_tok_per_s.median),
                                  number(row.output_tok_per_s.min),
                                  number(row.output_tok_per_s.max),
                                  number(row.total_tok_per_s.median),
                                  number(row.prompt_tok_per_s.median),
                                  number(row.generation_tok_per_s.median)};
  for (const Distribution* d :
       {&row.ttft_ms, &row.tpot_ms, &row.itl_ms, &row.e2e_ms, &row.queue_ms})
    for (double value : {d->mean, d->p50, d->p90, d->p99}) fields.push_back(number(value));
  for (double value : {row.worker_utilization.median, row.idle_gap_mean_us.median,
                       row.idle_gap_us.p50, row.idle_gap_us.p99, row.switches_per_step.median,
                       row.peak_rss_bytes, double(row.peak_kv_blocks), double(row.peak_kv_bytes),
                       row.prefix_hit_rate, double(row.preemptions), row.ratio_to_first})
    fields.push_back(number(value));
  return fields;
}

void set_batching_gain(std::vector<ServeRow>& rows) {
  for (ServeRow& row : rows) {
    const ServeRow* smallest = nullptr;
    for (const ServeRow& other : rows)
      if (label(other.combination) == label(row.combination) &&
          (!smallest || other.batch_size < smallest->batch_size))
        smallest = &other;
    row.batching_gain = ratio(row.output_tok_per_s.median, smallest->output_tok_per_s.median);
    if (smallest != &row)
      row.batching_gain_overlaps = ranges_overlap(row.output_tok_per_s, smallest->output_tok_per_s);
  }
}

void print_batching_gain(std::ostream& out, const ServeConfig& config,
                         const std::vector<ServeCombination>& combinations,
                         const std::vector<ServeRow>& rows) {
  out << fmt::format(
      "\nbatching gain{}: output tok/s (wall) at each batch size over the same "
      "combination's at batch {} (medians; 'overlap': the ranges share a point)\n",
      config.simulated() ? " (simulated)" : "",
      *std::min_element(config.batch_sizes.begin(), config.batch_sizes.end()));
  std::vector<Column> columns{{"batch", Align::Left}};
  for (const ServeCombination& combination : combinations) columns.push_back({label(combination)});
  TextTable table(columns);
  for (int batch_size : config.batch_sizes) {
    std::vector<std::string> cells{std::to_string(batch_size)};
    for (const ServeCombination& combination : combinations)
      for (const ServeRow& row : rows)
        if (row.batch_size == batch_size && label(row.combination) == label(combination)) {
          std::string cell =
              std::isnan(row.batching_gain) ? "-" : fmt::format("{:.2f}x", row.batching_gain);
          if (row.batching_gain_overlaps)
            cell += *row.batching_gain_overlaps ? " overlap" : " distinct";
          cells.push_back(cell);
        }
    table.add_row(std::move(cells));
  }
  table.print(out);
}

namespace {

PlotSpec serve_plot(const ServeConfig& config, const std::vector<ServeCombination>& combinations,
                    const std::vector<ServeRow>& rows) {
  PlotSpec spec;
  spec.title = fmt::format("troupe-bench serve{}: {} prompt + {} generated tokens per request",
                           config.simulated() ? " (simulated " + config.sim_profile + ")" : "",
                           config.n_prompt, config.n_gen);
  spec.x_label = "concurrent requests (batch size)";
  spec.log2_x = true;
  spec.panels = {{"output tokens/s (wall), median", "tokens/s", {}},
                 {"p99 time to first token", "ms", {}},
                 {"p99 inter-token latency", "ms", {}}};
  for (const ServeCombination& combination : combinations) {
    PlotSeries throughput{label(combination), {}, {}}, ttft = throughput, itl = throughput;
    for (const ServeRow& row : rows) {
      if (label(row.combination) != label(combination)) continue;
      const double x = row.batch_size;
      throughput.x.push_back(x), throughput.y.push_back(row.output_tok_per_s.median);
      ttft.x.push_back(x), ttft.y.push_back(row.ttft_ms.p99);
      itl.x.push_back(x), itl.y.push_back(row.itl_ms.p99);
    }
    spec.panels[0].series.push_back(throughput);
    spec.panels[1].series.push_back(ttft);
    spec.panels[2].series.push_back(itl);
  }
  return spec;
}

}  // namespace

std::vector<ServeRow> run_serve_suite(const ServeConfig& config, std::ostream& out) {
  const auto [combinations, skipped] = serve_combinations(config);
  for (const SkippedCombination& skip : skipped)
    out << "serve: skipped " << label(skip.combination) << ": " << skip.reason << '\n';
  if (combinations.empty())
    throw std::runtime_error("no combination left to run (see the skipped ones above)");
  ProgressLine progress;
  const std::size_t total = config.batch_sizes.size() * combinations.size() *
                            static_cast<std::size_t>(config.repetitions);
  std::size_t done = 0;
  std::vector<ServeRow> all_rows;
  // Every (batch size, combination) is one contender, so that batch sizes are interleaved
  // too and their ratios (the batching gain) see the same drifts of the machine.
  const std::size_t per_batch = combinations.size();
  std::vector<std::vector<std::vector<ServeRun>>> runs(
      config.batch_sizes.size(), std::vector<std::vector<ServeRun>>(per_batch));
  for_each_interleaved(
      static_cast<std::size_t>(config.repetitions), config.batch_sizes.size() * per_batch,
      [&](std::size_t repetition, std::size_t contender) {
        const std::size_t b = contender / per_batch, c = contender % per_batch;
        const int batch_size = config.batch_sizes[b];
        const int width = 20, filled = static_cast<int>(width * done / total);
        progress.show(fmt::format("serve [{}{}] {}/{}  batch {}, {}, repetition {}/{}",
                                  std::string(filled, '#'), std::string(width - filled, '.'), done,
                                  total, batch_size, label(combinations[c]), repetition + 1,
                                  config.repetitions));
        const ServeWorkload workload{batch_size, config.n_prompt, config.n_gen,
                                     config.shared_prefix, config.seed};
        try {
          runs[b][c].push_back(
              run_serve_workload(engine_options(config, combinations[c]), workload));
        } catch (const std::exception& error) {
          progress.clear();
          throw std::runtime_error(
              fmt::format("batch {}, {}: {}", batch_size, label(combinations[c]), error.what()));
        }
        ++done;
      });
  progress.clear();
  for (std::size_t b = 0; b < config.batch_sizes.size(); ++b) {
    std::vector<ServeRow> rows =
        serve_rows(config.batch_sizes[b], combinations, std::move(runs[b]));
    print_serve_table(out, config, config.batch_sizes[b], rows);
    all_rows.insert(all_rows.end(), rows.begin(), rows.end());
  }
  set_batching_gain(all_rows);
  if (config.batch_sizes.size() > 1) print_batching_gain(out, config, combinations, all_rows);
  if (config.json) write_json_file(*config.json, serve_json(config, all_rows, skipped));
  if (config.csv) {
    std::vector<std::vector<std::string>> lines;
    for (const ServeRow& row : all_rows) lines.push_back(serve_csv_fields(row));
    write_csv_file(*config.csv, serve_csv_header(), lines);
  }
  if (config.plot) write_plot_svg(serve_plot(config, combinations, all_rows), *config.plot);
  return all_rows;
}

int serve_main(const std::vector<std::string>& args, std::ostream& out) {
  const po::options_description description = serve_options();
  const po::variables_map values = parse_options(description, args);
  if (help_requested(values)) {
    out << description << '\n';
    return 0;
  }
  run_serve_suite(read_serve_config(values), out);
  return 0;
}

}  // namespace troupe
