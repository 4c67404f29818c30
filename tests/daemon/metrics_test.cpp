#include "daemon/metrics.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <sstream>

namespace troupe {
namespace {

// name{labels} -> value, from the text format.
std::map<std::string, double> samples(const std::string& text) {
  std::map<std::string, double> values;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto space = line.rfind(' ');
    values[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return values;
}

TEST(Histogram, CumulativeBucketsSumAndCount) {
  Histogram histogram({0.1, 1.0});
  for (double value : {0.05, 0.1, 0.5, 2.0}) histogram.observe(value);
  std::string out;
  histogram.render(out, "troupe_x_seconds", "help");
  const auto values = samples(out);
  EXPECT_EQ(values.at("troupe_x_seconds_bucket{le=\"0.1\"}"), 2);  // le is inclusive
  EXPECT_EQ(values.at("troupe_x_seconds_bucket{le=\"1\"}"), 3);
  EXPECT_EQ(values.at("troupe_x_seconds_bucket{le=\"+Inf\"}"), 4);
  EXPECT_DOUBLE_EQ(values.at("troupe_x_seconds_sum"), 2.65);
  EXPECT_EQ(values.at("troupe_x_seconds_count"), 4);
  EXPECT_NE(out.find("# TYPE troupe_x_seconds histogram\n"), std::string::npos);
}

TEST(ServerMetrics, HistogramsComeFromEndTimings) {
  ServerMetrics metrics;
  EndEvent finished;
  finished.timings.queued = 0.002;
  finished.timings.first_token = 0.2;
  finished.timings.token_times = {0.2, 0.23, 0.33};  // gaps 0.03 and 0.1
  finished.timings.finished = 0.4;
  metrics.record_end(finished);
  EndEvent refused;
  refused.kind = EndKind::Error;
  refused.timings.finished = 0.001;
  metrics.record_end(refused);
  metrics.record_response("/v1/completions", 200);
  metrics.record_response("/v1/completions", 429);
  metrics.record_response("/v1/completions", 429);

  const auto values = samples(metrics.render(nullptr, CpuSplit{0.5, 10.0}));
  EXPECT_EQ(values.at("troupe_queue_time_seconds_count"), 1);
  EXPECT_DOUBLE_EQ(values.at("troupe_time_to_first_token_seconds_sum"), 0.2);
  EXPECT_EQ(values.at("troupe_inter_token_latency_seconds_count"), 2);
  EXPECT_EQ(values.at("troupe_inter_token_latency_seconds_bucket{le=\"0.04\"}"), 1);
  EXPECT_NEAR(values.at("troupe_inter_token_latency_seconds_sum"), 0.13, 1e-12);
  EXPECT_EQ(values.at("troupe_e2e_request_latency_seconds_count"), 1);  // finished only
  EXPECT_EQ(values.at("troupe_http_responses_total{route=\"/v1/completions\",status=\"429\"}"), 2);
  EXPECT_DOUBLE_EQ(values.at("troupe_http_cpu_share"), 0.05);
  EXPECT_EQ(values.at("troupe_model_loaded"), 0);
  EXPECT_EQ(values.count("troupe_requests_running"), 0u);  // no engine yet
}

TEST(ServerMetrics, EngineSnapshotIsExposedWithThePrefix) {
  EngineStats stats;
  stats.running = 3;
  stats.waiting = 2;
  stats.kv.total_blocks = 100;
  stats.kv.in_use_blocks = 25;
  stats.kv.lookup_tokens = 10;
  stats.kv.hit_tokens = 4;
  stats.planner.rejected = 7;
  stats.planner.preemptions = 1;
  stats.generated_tokens = 99;
  stats.sharing = {{"kv_cache", SharingStats{10, 2, 3'000'000'000, 5, 0}},
                   {"scheduler_mailbox", SharingStats{4, 1, 0, 0, 6}}};
  stats.worker_busy_seconds = {1.5};
  stats.gpu_memory_bytes = 184 << 20;
  const std::string text = ServerMetrics().render(&stats, CpuSplit{});
  const auto values = samples(text);
  EXPECT_EQ(values.at("troupe_requests_running"), 3);
  EXPECT_EQ(values.at("troupe_requests_waiting"), 2);
  EXPECT_DOUBLE_EQ(values.at("troupe_kv_cache_usage_ratio"), 0.25);
  EXPECT_DOUBLE_EQ(values.at("troupe_prefix_cache_hit_rate"), 0.4);
  EXPECT_EQ(values.at("troupe_rejections_total"), 7);
  EXPECT_EQ(values.at("troupe_generation_tokens_total"), 99);
  EXPECT_EQ(values.at("troupe_sharing_contended_calls_total{state=\"kv_cache\"}"), 2);
  EXPECT_DOUBLE_EQ(values.at("troupe_sharing_wait_seconds_total{state=\"kv_cache\"}"), 3.0);
  EXPECT_EQ(values.at("troupe_mailbox_depth_max{state=\"scheduler_mailbox\"}"), 6);
  EXPECT_DOUBLE_EQ(values.at("troupe_worker_busy_seconds_total{worker=\"0\"}"), 1.5);
  EXPECT_EQ(values.at("troupe_gpu_memory_bytes"), 184 << 20);
  for (const auto& [name, value] : values) EXPECT_EQ(name.rfind("troupe_", 0), 0u) << name;
  // Every sample's metric has HELP and TYPE.
  for (const auto& [name, value] : values) {
    std::string base = name.substr(0, name.find('{'));
    for (const char* suffix : {"_bucket", "_sum", "_count"})
      if (base.size() > std::strlen(suffix) &&
          base.compare(base.size() - std::strlen(suffix), std::string::npos, suffix) == 0 &&
          text.find("# TYPE " + base.substr(0, base.size() - std::strlen(suffix)) +
                    " histogram") != std::string::npos)
        base.resize(base.size() - std::strlen(suffix));
    EXPECT_NE(text.find("# TYPE " + base + " "), std::string::npos) << name;
  }
}

}  // namespace
}  // namespace troupe
