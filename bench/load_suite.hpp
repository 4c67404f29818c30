#pragma once
// `troupe-bench load`: a running daemon (troupe-server or any OpenAI-compatible server) under
// an open-loop load over HTTP, as vLLM's serving benchmark does: --requests requests sent at
// gamma-distributed times (load_workload.hpp), at most --max-concurrency in flight (later
// ones wait for a slot), each a streaming POST /v1/completions with ignore_eos, temperature
// 0 and max_tokens = the output length, over its own HTTP/1.1 connection (http_client.hpp).
// Client-side figures: TTFT (send -> first content event), TPOT ((e2e - ttft) / (tokens - 1)
// per request), ITL (gaps between content events), E2E (send -> end of stream): mean, p50,
// p90, p99 in ms; request and token throughput over the whole run (first send -> last end);
// goodput (completed requests meeting every --goodput SLO, per second); failures by HTTP
// status or connection error. Tokens: the usage the server reports (stream_options).
// Before the first request it waits (at most --wait-ready seconds) while GET /health answers
// 503, so a server still loading its model is not measured as failing; a server without
// /health (any other status) is not waited for.
// Not thread-safe; run from one thread (it starts one thread per request in flight).

#include <filesystem>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include "bench/load_workload.hpp"

namespace troupe {

struct LoadConfig {
  std::string url = "http://127.0.0.1:8080";
  int requests = 200;
  double rate = 4;  // requests per second; infinity: all at once
  double burstiness = 1;
  int max_concurrency = 0;  // 0: unbounded
  DatasetSpec dataset;
  std::string goodput;  // the SLO text as given
  Slo slo;
  std::string model;  // "model" field; "" to let the server use its own
  std::string api_key;
  int timeout_seconds = 600;
  int wait_ready_seconds = 60;  // 0: send at once
  std::optional<std::filesystem::path> json, csv;
};

boost::program_options::options_description load_options();
LoadConfig read_load_config(const boost::program_options::variables_map& values);

void print_load_report(std::ostream& out, const LoadConfig& config, const LoadSummary& summary);
nlohmann::json load_json(const LoadConfig& config, const LoadSummary& summary);

// Runs the load, prints the report, writes the requested files. Throws std::runtime_error
// when every request failed to connect (nothing to measure), the server is still loading
// after wait_ready_seconds, or a file cannot be written.
LoadSummary run_load_suite(const LoadConfig& config, std::ostream& out);

int load_main(const std::vector<std::string>& args, std::ostream& out);

}  // namespace troupe
