#include "bench/serve_suite.hpp"

#include <cmath>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "bench/compare.hpp"
#include "bench/suites.hpp"
#include "tests/util/scratch_file.hpp"
#include "tests/util/tiny_model.hpp"

namespace troupe {
namespace {

using Json = nlohmann::json;

// Every number in the document is finite (NaN and infinity are written as null, so a null
// figure is a missing one); only the overlap hints of the reference rows may be null.
void expect_all_finite(const Json& value, const std::string& path) {
  if (value.is_object()) {
    for (const auto& [key, element] : value.items()) {
      if (element.is_null()) {
        EXPECT_TRUE(key == "overlaps_first" || key == "batching_gain_overlaps")
            << "missing figure " << path << "." << key;
        continue;
      }
      expect_all_finite(element, path + "." + key);
    }
  } else if (value.is_array()) {
    for (std::size_t i = 0; i < value.size(); ++i)
      expect_all_finite(value[i], path + "[" + std::to_string(i) + "]");
  } else if (value.is_number_float()) {
    EXPECT_TRUE(std::isfinite(value.get<double>())) << path;
  }
}

ServeConfig small_config(const std::string& backend) {
  ServeConfig config;
  config.model.backend = backend;
  config.model.backend_threads = 1;
  config.sim_time_scale = 0.02;
  config.batch_sizes = {1, 3};
  config.n_prompt = 12;
  config.n_gen = 5;
  config.repetitions = 2;
  config.runtimes = {Runtime::Actors, Runtime::Threads};
  config.sync = {SyncMode::Std, SyncMode::Actor};
  config.workers = 2;
  config.kv_mib = backend == "sim" ? 0 : 16;
  config.timeout_seconds = 60;
  return config;
}

void expect_complete_results(const ServeConfig& config, const std::vector<ServeRow>& rows,
                             const Json& document) {
  // actors/std, actors/actor, threads/std per batch size; threads/actor skipped.
  ASSERT_EQ(rows.size(), 6u);
  ASSERT_EQ(document["skipped"].size(), 1u);
  EXPECT_EQ(document["skipped"][0]["combination"], "threads/actor");
  for (const ServeRow& row : rows) {
    ASSERT_EQ(row.runs.size(), 2u);
    for (const ServeRun& run : row.runs) {
      ASSERT_EQ(run.requests.size(), static_cast<std::size_t>(row.batch_size));
      for (const RequestTimes& request : run.requests) {
        EXPECT_EQ(request.completion_tokens, config.n_gen);
        EXPECT_EQ(request.prompt_tokens, config.n_prompt);
        EXPECT_LE(request.queue, request.ttft);
        EXPECT_LE(request.ttft, request.e2e);
      }
      // Output tok/s is measured over the wall clock: times wall gives back every token.
      EXPECT_NEAR(run.output_tok_per_s * run.wall_seconds, row.batch_size * config.n_gen, 1e-6);
      EXPECT_GT(run.worker_utilization, 0);
      EXPECT_LE(run.worker_utilization, 1.0 + 1e-9);
      // Every request decodes several steps back to back before the first one ends.
      EXPECT_FALSE(run.idle_gaps.empty());
      for (double gap : run.idle_gaps) EXPECT_GE(gap, 0);
      EXPECT_GT(run.peak_kv_blocks, 0);
      EXPECT_EQ(run.gpu_memory_bytes, 0u);  // no cuda backend in these runs
      ASSERT_TRUE(run.peak_rss_bytes.has_value());
      EXPECT_GT(*run.peak_rss_bytes, 1u << 20);
      EXPECT_TRUE(std::isfinite(run.switches_per_step));
      EXPECT_GE(run.switches_per_step, run.involuntary_switches_per_step);
      EXPECT_GE(run.involuntary_switches_per_step, 0);
    }
  }
  expect_all_finite(document["results"], "results");
  for (const Json& result : document["results"])
    for (const char* key : {"ttft_ms", "tpot_ms", "itl_ms", "e2e_ms", "queue_ms", "idle_gap_us"})
      for (const char* stat : {"mean", "p50", "p90", "p99"})
        EXPECT_TRUE(result[key][stat].is_number()) << key << "." << stat;
}

TEST(ServeSuite, ShortSimRunHasEveryFigureAndSaysSimulated) {
  const ServeConfig config = small_config("sim");
  std::ostringstream out;
  const std::vector<ServeRow> rows = run_serve_suite(config, out);
  const auto [combinations, skipped] = serve_combinations(config);
  const Json document = serve_json(config, rows, skipped);
  expect_complete_results(config, rows, document);
  EXPECT_TRUE(document["simulated"].get<bool>());
  EXPECT_NE(out.str().find("serve (simulated): batch 3"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("skipped threads/actor"), std::string::npos);
  EXPECT_NE(rows.front().backend.find("simulated"), std::string::npos);
  // The document compares with itself: every headline ratio is 1.
  const Comparison self = compare_results(document, document, false);
  EXPECT_FALSE(self.figures.empty());
  for (const ComparedFigure& figure : self.figures) EXPECT_DOUBLE_EQ(figure.ratio, 1.0);
}

TEST(ServeSuite, ShortRunOnATinyModel) {
  const test::ScratchFile model(test::tiny_model_bytes(test::tiny_model_preset("llama-spm-f32")));
  ServeConfig config = small_config("cpu");
  config.model.model = model.path();
  test::ScratchFile json_file, csv_file;
  config.json = json_file.path();
  config.csv = csv_file.path();
  std::ostringstream out;
  const std::vector<ServeRow> rows = run_serve_suite(config, out);
  const Json document = read_results_file(json_file.path());
  expect_complete_results(config, rows, document);
  EXPECT_FALSE(document["simulated"].get<bool>());
  EXPECT_EQ(out.str().find("simulated"), std::string::npos);
  EXPECT_EQ(document["config"]["model"], model.path());
  EXPECT_TRUE(document["machine"].contains("git_commit"));
}

ServeRun run_with(std::vector<std::vector<double>> token_times, double output_tok_per_s) {
  ServeRun run;
  for (std::vector<double>& times : token_times) {
    RequestTimes request;
    request.queue = times.front() / 2;
    request.ttft = times.front();
    request.e2e = times.back();
    request.completion_tokens = static_cast<int32_t>(times.size());
    request.token_times = std::move(times);
    run.requests.push_back(std::move(request));
  }
  run.output_tok_per_s = output_tok_per_s;
  return run;
}

TEST(ServeSuite, RowsPoolLatenciesAndRatioTheFirstCombination) {
  const std::vector<ServeCombination> combinations{{Runtime::Actors, SyncMode::Std},
                                                   {Runtime::Threads, SyncMode::Parking}};
  // First combination: one request with tokens at 0.1, 0.3, 0.6 s: ttft 100 ms, tpot
  // (0.6 - 0.1) / 2 = 250 ms, itl 200 and 300 ms.
  std::vector<std::vector<ServeRun>> runs{
      {run_with({{0.1, 0.3, 0.6}}, 10), run_with({{0.1, 0.3, 0.6}}, 14)},
      {run_with({{0.2, 0.4}}, 30), run_with({{0.2, 0.4}}, 26)}};
  const std::vector<ServeRow> rows = serve_rows(4, combinations, runs);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_DOUBLE_EQ(rows[0].ttft_ms.mean, 100);
  EXPECT_DOUBLE_EQ(rows[0].tpot_ms.p50, 250);
  EXPECT_DOUBLE_EQ(rows[0].itl_ms.mean, 250);  // 200, 300, 200, 300
  EXPECT_DOUBLE_EQ(rows[0].itl_ms.p50, 250);
  EXPECT_NEAR(rows[0].itl_ms.p99, 300, 1e-9);
  EXPECT_DOUBLE_EQ(rows[0].e2e_ms.p90, 600);
  EXPECT_DOUBLE_EQ(rows[0].queue_ms.mean, 50);
  EXPECT_DOUBLE_EQ(rows[0].output_tok_per_s.median, 12);
  EXPECT_DOUBLE_EQ(rows[1].output_tok_per_s.median, 28);
  EXPECT_DOUBLE_EQ(rows[0].ratio_to_first, 1);
  EXPECT_FALSE(rows[0].overlaps_first.has_value());
  EXPECT_NEAR(rows[1].ratio_to_first, 28.0 / 12.0, 1e-12);
  ASSERT_TRUE(rows[1].overlaps_first.has_value());
  EXPECT_FALSE(*rows[1].overlaps_first);  // [10, 14] and [26, 30]
  EXPECT_EQ(label(combinations[1]), "threads/parking");
  EXPECT_EQ(label({Runtime::Actors, SyncMode::Actor, KvGranularity::Token, false}),
            "actors/actor/token/no-prefix");
}

TEST(ServeSuite, BatchingGainIsOverTheSameCombinationsSmallestBatch) {
  const ServeCombination threads{Runtime::Threads, SyncMode::Std};
  const ServeCombination actors{Runtime::Actors, SyncMode::Std};
  std::vector<ServeRow> rows(4);
  rows[0].batch_size = 8, rows[0].combination = threads, rows[0].output_tok_per_s = {45, 40, 50};
  rows[1].batch_size = 8, rows[1].combination = actors, rows[1].output_tok_per_s = {30, 20, 40};
  rows[2].batch_size = 1, rows[2].combination = threads, rows[2].output_tok_per_s = {10, 8, 12};
  rows[3].batch_size = 1, rows[3].combination = actors, rows[3].output_tok_per_s = {25, 20, 30};
  set_batching_gain(rows);
  EXPECT_DOUBLE_EQ(rows[0].batching_gain, 4.5);
  EXPECT_FALSE(*rows[0].batching_gain_overlaps);  // [40, 50] and [8, 12]
  EXPECT_DOUBLE_EQ(rows[1].batching_gain, 1.2);
  EXPECT_TRUE(*rows[1].batching_gain_overlaps);  // [20, 40] and [20, 30]
  EXPECT_DOUBLE_EQ(rows[2].batching_gain, 1.0);
  EXPECT_FALSE(rows[2].batching_gain_overlaps.has_value());
}

TEST(ServeSuite, PromptsAreSeededAndShareTheirPrefix) {
  const ServeWorkload workload{
      .batch_size = 3, .n_prompt = 10, .n_gen = 1, .shared_prefix = 4, .seed = 7};
  const auto prompts = serve_prompts(workload, 50);
  EXPECT_EQ(prompts, serve_prompts(workload, 50));
  ASSERT_EQ(prompts.size(), 3u);
  for (const auto& prompt : prompts) {
    ASSERT_EQ(prompt.size(), 10u);
    EXPECT_TRUE(std::equal(prompt.begin(), prompt.begin() + 4, prompts[0].begin()));
    for (int32_t token : prompt) EXPECT_TRUE(token >= 0 && token < 50);
  }
  EXPECT_NE(prompts[0], prompts[1]);
  ServeWorkload other = workload;
  other.seed = 8;
  EXPECT_NE(serve_prompts(other, 50), prompts);
}

TEST(ServeSuite, CommandLineMistakes) {
  std::ostringstream out, err;
  EXPECT_EQ(run_bench({"serve", "--prefix-cache", "maybe"}, out, err), 2);
  EXPECT_NE(err.str().find("--prefix-cache"), std::string::npos) << err.str();
  EXPECT_EQ(
      run_bench({"serve", "--backend", "sim", "--runtime", "threads", "--sync", "actor"}, out, err),
      1);
  EXPECT_NE(err.str().find("no combination left"), std::string::npos) << err.str();
  EXPECT_EQ(run_bench({"serve", "--backend", "cpu", "--model", "/nonexistent/model.gguf",
                       "--runtime", "threads"},
                      out, err),
            1);
  EXPECT_NE(err.str().find("/nonexistent/model.gguf"), std::string::npos) << err.str();
  EXPECT_EQ(run_bench({"serve", "--help"}, out, err), 0);
  EXPECT_NE(out.str().find("--prompt-batchsize"), std::string::npos);
}

}  // namespace
}  // namespace troupe
