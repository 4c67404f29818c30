#pragma once
// The pure parts of `troupe-bench load`: the request dataset, the arrival schedule, the SLOs
// of --goodput and the summary of the per-request results. No I/O besides reading a
// dataset file; no state; safe from any thread.
// Arrivals (as vLLM's serving benchmark): inter-arrival gaps drawn from a gamma distribution
// of shape `burstiness` and mean 1 / rate (burstiness 1: a Poisson process; below 1: burstier;
// above: more regular); rate infinity sends every request at once.
// Datasets: random (input_len token ids drawn from [kRandomTokenFirst, kRandomTokenEnd), ids
// that exist in every vocabulary), shared-prefix (the same, with the first prefix_len ids
// common to every request), or a JSONL file whose lines hold {"prompt": text or token ids,
// optional "max_tokens"}, used in order and cycled.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/statistics.hpp"

namespace troupe {

inline constexpr int32_t kRandomTokenFirst = 10;
inline constexpr int32_t kRandomTokenEnd = 1000;

struct LoadPrompt {
  nlohmann::json prompt;  // a string or an array of token ids, as /v1/completions takes it
  int output_len = 0;
};

struct DatasetSpec {
  std::string kind = "random";  // random | shared-prefix | a .jsonl path
  int input_len = 128;
  int output_len = 128;
  int prefix_len = 0;  // shared-prefix: 0 means input_len / 2
  uint64_t seed = 1;
};

// `count` prompts. Throws std::runtime_error naming the file and line for an unreadable or
// malformed JSONL file, std::invalid_argument for unusable lengths.
std::vector<LoadPrompt> load_dataset(const DatasetSpec& spec, int count);

// Send times, in seconds from the start, non-decreasing; the first is 0.
std::vector<double> arrival_offsets(int count, double rate, double burstiness, uint64_t seed);

// --goodput "ttft:500,tpot:50,e2e:2000" (milliseconds); throws std::invalid_argument.
struct Slo {
  std::optional<double> ttft_ms, tpot_ms, e2e_ms;
};
Slo parse_slo(const std::string& text);

struct LoadRequestResult {
  bool ok = false;
  std::string failure;       // "" when ok; the HTTP status ("429") or the connection error
  double start = 0;          // seconds from the benchmark's start, when sent
  double ttft = 0, e2e = 0;  // seconds from sending
  std::vector<double> itl;   // gaps between content events, seconds
  int prompt_tokens = 0;
  int output_tokens = 0;
};

// What one streamed response says: the times of its content events and its usage.
// Throws nothing: a malformed event or an error event makes the result a failure.
LoadRequestResult read_completion_stream(const std::vector<std::pair<double, std::string>>& events,
                                         double e2e);

struct LoadSummary {
  int completed = 0, failed = 0;
  std::map<std::string, int> failures;  // by status or error
  double duration = 0;                  // start -> last response end, seconds
  double request_per_s = 0, output_tok_per_s = 0, total_tok_per_s = 0;
  double goodput_per_s = 0;     // completed requests meeting every SLO, per second
  double goodput_fraction = 0;  // of the completed requests
  Distribution ttft_ms, tpot_ms, itl_ms, e2e_ms;  // NaN when nothing completed
  int peak_concurrency = 0;
};

LoadSummary summarize_load(const std::vector<LoadRequestResult>& results, const Slo& slo,
                           double duration, int peak_concurrency);

}  // namespace troupe
