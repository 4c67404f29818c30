#include "bench/load_workload.hpp"

#include <cmath>
#include <fstream>
#include <limits>
#include <stdexcept>

#include <gtest/gtest.h>

#include "bench/http_client.hpp"
#include "tests/util/scratch_file.hpp"

namespace troupe {
namespace {

std::span<const uint8_t> bytes_of(const std::string& text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

TEST(LoadArrivals, GammaGapsHaveTheRequestedMeanAndSpread) {
  const int count = 20001;
  for (double burstiness : {1.0, 4.0, 0.25}) {
    const std::vector<double> offsets = arrival_offsets(count, 5.0, burstiness, 42);
    ASSERT_EQ(offsets.size(), static_cast<std::size_t>(count));
    EXPECT_EQ(offsets[0], 0);
    std::vector<double> gaps;
    for (int i = 1; i < count; ++i) {
      ASSERT_GE(offsets[i], offsets[i - 1]);
      gaps.push_back(offsets[i] - offsets[i - 1]);
    }
    double sum = 0, squares = 0;
    for (double gap : gaps) sum += gap;
    const double mean = sum / gaps.size();
    for (double gap : gaps) squares += (gap - mean) * (gap - mean);
    const double cv = std::sqrt(squares / gaps.size()) / mean;
    // Gamma(k, 1 / (rate k)): mean 1 / rate = 0.2 s, coefficient of variation 1 / sqrt(k).
    EXPECT_NEAR(mean, 0.2, 0.2 * 0.04) << "burstiness " << burstiness;
    EXPECT_NEAR(cv, 1 / std::sqrt(burstiness), 0.06 / std::sqrt(burstiness)) << burstiness;
  }
  EXPECT_EQ(arrival_offsets(5, 2, 1, 7), arrival_offsets(5, 2, 1, 7));
  EXPECT_NE(arrival_offsets(5, 2, 1, 7), arrival_offsets(5, 2, 1, 8));
}

TEST(LoadArrivals, InfiniteRateSendsAllAtOnceAndBadRatesThrow) {
  EXPECT_EQ(arrival_offsets(4, std::numeric_limits<double>::infinity(), 1, 1),
            (std::vector<double>{0, 0, 0, 0}));
  EXPECT_THROW(arrival_offsets(4, 0, 1, 1), std::invalid_argument);
  EXPECT_THROW(arrival_offsets(4, 1, 0, 1), std::invalid_argument);
}

TEST(LoadDataset, RandomAndSharedPrefixPrompts) {
  const DatasetSpec random{.kind = "random", .input_len = 20, .output_len = 7, .seed = 3};
  const auto prompts = load_dataset(random, 5);
  ASSERT_EQ(prompts.size(), 5u);
  for (const LoadPrompt& prompt : prompts) {
    ASSERT_EQ(prompt.prompt.size(), 20u);
    EXPECT_EQ(prompt.output_len, 7);
    for (const auto& id : prompt.prompt)
      EXPECT_TRUE(id.get<int>() >= kRandomTokenFirst && id.get<int>() < kRandomTokenEnd);
  }
  EXPECT_NE(prompts[0].prompt, prompts[1].prompt);
  EXPECT_EQ(load_dataset(random, 5)[4].prompt, prompts[4].prompt);

  DatasetSpec shared = random;
  shared.kind = "shared-prefix";
  const auto half = load_dataset(shared, 3);
  for (const LoadPrompt& prompt : half) {
    for (int i = 0; i < 10; ++i) EXPECT_EQ(prompt.prompt[i], half[0].prompt[i]);
  }
  EXPECT_NE(half[1].prompt[10], half[0].prompt[10]);
  shared.prefix_len = 15;
  const auto longer = load_dataset(shared, 2);
  for (int i = 0; i < 15; ++i) EXPECT_EQ(longer[1].prompt[i], longer[0].prompt[i]);
}

TEST(LoadDataset, JsonlFileCyclesAndNamesItsBadLines) {
  const test::ScratchFile good(
      bytes_of("{\"prompt\": \"Hello there\"}\n\n{\"prompt\": [1, 2, 3], \"max_tokens\": 4}\n"));
  const auto prompts = load_dataset({.kind = good.path(), .output_len = 9}, 3);
  ASSERT_EQ(prompts.size(), 3u);
  EXPECT_EQ(prompts[0].prompt, "Hello there");
  EXPECT_EQ(prompts[0].output_len, 9);
  EXPECT_EQ(prompts[1].prompt, nlohmann::json({1, 2, 3}));
  EXPECT_EQ(prompts[1].output_len, 4);
  EXPECT_EQ(prompts[2].prompt, "Hello there");

  const test::ScratchFile bad(bytes_of("{\"prompt\": \"ok\"}\n{\"text\": \"no prompt\"}\n"));
  try {
    load_dataset({.kind = bad.path()}, 1);
    FAIL() << "a line without prompt was accepted";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("line 2"), std::string::npos) << error.what();
  }
  const test::ScratchFile not_json(bytes_of("{prompt: 1\n"));
  EXPECT_THROW(load_dataset({.kind = not_json.path()}, 1), std::runtime_error);
  EXPECT_THROW(load_dataset({.kind = "/nonexistent/data.jsonl"}, 1), std::runtime_error);
}

TEST(LoadSlo, ParsesMillisecondsAndRefusesTheRest) {
  const Slo slo = parse_slo("ttft:500,tpot:50");
  EXPECT_EQ(slo.ttft_ms, 500);
  EXPECT_EQ(slo.tpot_ms, 50);
  EXPECT_FALSE(slo.e2e_ms);
  EXPECT_EQ(parse_slo("e2e:1500.5").e2e_ms, 1500.5);
  EXPECT_FALSE(parse_slo("").ttft_ms);
  EXPECT_THROW(parse_slo("ttft"), std::invalid_argument);
  EXPECT_THROW(parse_slo("ttft:-1"), std::invalid_argument);
  EXPECT_THROW(parse_slo("ttft:5x"), std::invalid_argument);
  EXPECT_THROW(parse_slo("latency:5"), std::invalid_argument);
}

TEST(LoadStream, ContentEventsGiveTtftItlAndTokens) {
  const std::vector<std::pair<double, std::string>> events{
      {0.10, R"({"choices":[{"text":"He","index":0}]})"},
      {0.15, R"({"choices":[{"text":"","index":0}]})"},  // nothing became final yet
      {0.30, R"({"choices":[{"text":"llo","index":0}]})"},
      {0.35, R"({"choices":[{"text":"!","index":0,"finish_reason":"length"}]})"},
      {0.36, R"({"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":4}})"},
      {0.36, "[DONE]"}};
  const LoadRequestResult result = read_completion_stream(events, 0.4);
  ASSERT_TRUE(result.ok) << result.failure;
  EXPECT_DOUBLE_EQ(result.ttft, 0.10);
  ASSERT_EQ(result.itl.size(), 2u);
  EXPECT_NEAR(result.itl[0], 0.20, 1e-12);
  EXPECT_NEAR(result.itl[1], 0.05, 1e-12);
  EXPECT_EQ(result.output_tokens, 4);  // the usage, not the 3 content events
  EXPECT_EQ(result.prompt_tokens, 5);
  EXPECT_DOUBLE_EQ(result.e2e, 0.4);

  EXPECT_EQ(read_completion_stream({{0.1, R"({"choices":[{"text":"a"}]})"}}, 1).failure,
            "stream ended without [DONE]");
  EXPECT_EQ(
      read_completion_stream({{0.1, R"({"error":{"message":"x"}})"}, {0.1, "[DONE]"}}, 1).failure,
      "stream error");
  EXPECT_EQ(read_completion_stream({{0.1, "{not json"}}, 1).failure, "malformed event");
}

TEST(LoadSummary, ThroughputGoodputAndFailures) {
  LoadRequestResult fast;
  fast.ok = true;
  fast.ttft = 0.1;
  fast.e2e = 1.1;
  fast.itl = {0.5, 0.5};
  fast.prompt_tokens = 10;
  fast.output_tokens = 3;
  LoadRequestResult slow = fast;
  slow.ttft = 0.9;
  slow.e2e = 2.9;  // tpot (2.9 - 0.9) / 2 = 1 s
  LoadRequestResult refused;
  refused.failure = "429";
  const LoadSummary summary =
      summarize_load({fast, slow, refused, refused}, parse_slo("ttft:500,tpot:600"), 4.0, 3);
  EXPECT_EQ(summary.completed, 2);
  EXPECT_EQ(summary.failed, 2);
  EXPECT_EQ(summary.failures.at("429"), 2);
  EXPECT_DOUBLE_EQ(summary.request_per_s, 0.5);
  EXPECT_DOUBLE_EQ(summary.output_tok_per_s, 1.5);
  EXPECT_DOUBLE_EQ(summary.total_tok_per_s, 6.5);
  EXPECT_DOUBLE_EQ(summary.goodput_per_s, 0.25);  // only `fast` meets both SLOs
  EXPECT_DOUBLE_EQ(summary.goodput_fraction, 0.5);
  EXPECT_DOUBLE_EQ(summary.ttft_ms.mean, 500);
  EXPECT_DOUBLE_EQ(summary.tpot_ms.mean, 750);
  EXPECT_DOUBLE_EQ(summary.itl_ms.p50, 500);
  EXPECT_DOUBLE_EQ(summary.e2e_ms.p50, 2000);
  EXPECT_EQ(summary.peak_concurrency, 3);
}

TEST(HttpClient, UrlsAndEventStreamFraming) {
  const HttpUrl url = parse_http_url("http://127.0.0.1:8080/api/");
  EXPECT_EQ(url.host, "127.0.0.1");
  EXPECT_EQ(url.port, "8080");
  EXPECT_EQ(url.prefix, "/api");
  EXPECT_EQ(parse_http_url("http://localhost").port, "80");
  EXPECT_EQ(parse_http_url("http://[::1]:9000").host, "::1");
  EXPECT_THROW(parse_http_url("https://x:1"), std::invalid_argument);
  EXPECT_THROW(parse_http_url("127.0.0.1:8080"), std::invalid_argument);
  EXPECT_THROW(parse_http_url("http://host:port"), std::invalid_argument);

  std::string pending = "data: {\"a\":1}\n\n: comment\n\ndata: [DO";
  EXPECT_EQ(take_sse_events(pending), std::vector<std::string>{"{\"a\":1}"});
  EXPECT_EQ(pending, "data: [DO");
  pending += "NE]\r\n\r\nevent: x\ndata: one\ndata: two\n\n";
  EXPECT_EQ(take_sse_events(pending), (std::vector<std::string>{"[DONE]", "one\ntwo"}));
  EXPECT_EQ(pending, "");
}

}  // namespace
}  // namespace troupe
