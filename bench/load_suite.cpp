#include "bench/load_suite.hpp"

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <limits>
#include <mutex>
#include <ostream>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

#include "actors/options.hpp"
#include "bench/http_client.hpp"
#include "bench/machine.hpp"
#include "bench/progress.hpp"
#include "bench/report.hpp"

namespace troupe {
namespace po = boost::program_options;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

double parse_rate(const std::string& text) {
  if (text == "inf" || text == "infinity") return std::numeric_limits<double>::infinity();
  try {
    std::size_t used = 0;
    const double rate = std::stod(text, &used);
    if (used == text.size() && rate > 0 && std::isfinite(rate)) return rate;
  } catch (const std::exception&) {
  }
  throw OptionsError("--rate: '" + text +
                     "' is not a positive number of requests per second or inf");
}

std::string request_body(const LoadConfig& config, const LoadPrompt& prompt) {
  nlohmann::json body = {{"prompt", prompt.prompt}, {"max_tokens", prompt.output_len},
                         {"stream", true},          {"stream_options", {{"include_usage", true}}},
                         {"ignore_eos", true},      {"temperature", 0}};
  if (!config.model.empty()) body["model"] = config.model;
  return body.dump();
}

// Bounds the requests in flight and tracks the most seen at once.
class Slots {
 public:
  explicit Slots(int limit) : limit_(limit) {}
  void acquire() {
    std::unique_lock lock(mutex_);
    freed_.wait(lock, [&] { return limit_ == 0 || busy_ < limit_; });
    peak_ = std::max(peak_, ++busy_);
  }
  void release() {
    {
      std::lock_guard lock(mutex_);
      --busy_;
    }
    freed_.notify_all();
  }
  int peak() const {
    std::lock_guard lock(mutex_);
    return peak_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable freed_;
  int limit_, busy_ = 0, peak_ = 0;
};

LoadRequestResult send_one(const LoadConfig& config, const HttpUrl& url, const std::string& body,
                           Clock::time_point start) {
  HttpResult http = http_post(url, "/v1/completions", body, config.api_key,
                              std::chrono::seconds(config.timeout_seconds));
  const Clock::time_point ended = Clock::now();
  LoadRequestResult result;
  if (http.status == 0 || (!http.error.empty() && http.status == 200)) {
    result.failure = http.status == 0 ? "connection: " + http.error : "read: " + http.error;
  } else if (http.status != 200) {
    result.failure = std::to_string(http.status);
  } else {
    std::vector<std::pair<double, std::string>> events;
    for (SseEvent& event : http.events)
      events.emplace_back(seconds_between(http.sent, event.at), std::move(event.data));
    result = read_completion_stream(events, seconds_between(http.sent, ended));
  }
  result.start = seconds_between(start, http.sent);
  return result;
}

void add_distribution(TextTable& table, const std::string& name, const Distribution& d) {
  table.add_row({name + " ms", format_fixed(d.mean, 2), format_fixed(d.p50, 2),
                 format_fixed(d.p90, 2), format_fixed(d.p99, 2)});
}

nlohmann::json distribution_json(const Distribution& d) {
  return {{"mean", d.mean}, {"p50", d.p50}, {"p90", d.p90}, {"p99", d.p99}};
}

std::string csv_number(const nlohmann::json& value) {
  if (value.is_null()) return "";
  if (value.is_number_float()) return fmt::format("{:.6g}", value.get<double>());
  return value.dump();
}

}  // namespace

po::options_description load_options() {
  po::options_description description(
      "troupe-bench load: a running OpenAI-compatible server under open-loop load (HTTP)\n"
      "Streaming POST /v1/completions at gamma-distributed times; client-side TTFT, TPOT,\n"
      "ITL, E2E, throughput, goodput and failures.\n\nOptions");
  add_general_options(description);
  description.add_options()
      ("url", po::value<std::string>()->value_name("URL")->default_value("http://127.0.0.1:8080"),
       "the server: http://HOST:PORT[/PREFIX]")
      ("requests", po::value<int>()->value_name("N")->default_value(200), "requests to send")
      ("rate", po::value<std::string>()->value_name("R")->default_value("4"),
       "mean requests per second, or inf (all at once)")
      ("burstiness", po::value<double>()->value_name("K")->default_value(1.0, "1"),
       "gamma shape of the gaps: 1 Poisson, < 1 burstier, > 1 more regular")
      ("max-concurrency", po::value<int>()->value_name("C")->default_value(0),
       "most requests in flight (later arrivals wait); 0: unbounded")
      ("dataset", po::value<std::string>()->value_name("KIND")->default_value("random"),
       "random, shared-prefix, or FILE.jsonl ({\"prompt\": ..., \"max_tokens\": N} per line)")
      ("input-len", po::value<int>()->value_name("N")->default_value(128),
       "prompt tokens (random, shared-prefix)")
      ("output-len", po::value<int>()->value_name("N")->default_value(128),
       "generated tokens per request (EOS ignored)")
      ("prefix-len", po::value<int>()->value_name("N")->default_value(0),
       "shared-prefix: common leading tokens (0: half the input)")
      ("seed", po::value<uint64_t>()->value_name("N")->default_value(1), "dataset and arrival seed")
      ("goodput", po::value<std::string>()->value_name("SLOS")->default_value(""),
       "service-level objectives in ms, e.g. ttft:500,tpot:50,e2e:10000")
      ("served-model-name", po::value<std::string>()->value_name("NAME")->default_value(""),
       "the requests' \"model\": the server's --served-model-name (default: none, the "
       "server's own)")
      ("api-key", po::value<std::string>()->value_name("KEY")->default_value(""),
       "sent as Authorization: Bearer KEY")
      ("timeout", po::value<int>()->value_name("S")->default_value(600),
       "seconds without progress before a request counts as failed")
      ("wait-ready", po::value<int>()->value_name("S")->default_value(60),
       "seconds to wait while GET /health answers 503 (model loading) before sending; 0: "
       "send at once")
      ("json", po::value<std::string>()->value_name("FILE"), "write the results as JSON")
      ("csv", po::value<std::string>()->value_name("FILE"), "write the results as CSV");
  return description;
}

LoadConfig read_load_config(const po::variables_map& values) {
  LoadConfig config;
  config.url = values.at("url").as<std::string>();
  try {
    parse_http_url(config.url);
  } catch (const std::invalid_argument& error) {
    throw OptionsError("--url: '" + config.url + "': " + error.what());
  }
  config.requests = read_in_range(values, "requests", 1, 1'000'000);
  config.rate = parse_rate(values.at("rate").as<std::string>());
  config.burstiness = read_in_range(values, "burstiness", 1e-3, 1e3);
  config.max_concurrency = read_in_range(values, "max-concurrency", 0, 100'000);
  config.dataset.kind = values.at("dataset").as<std::string>();
  config.dataset.input_len = read_in_range(values, "input-len", 1, 1 << 20);
  config.dataset.output_len = read_in_range(values, "output-len", 1, 1 << 20);
  config.dataset.prefix_len = read_in_range(values, "prefix-len", 0, 1 << 20);
  config.dataset.seed = values.at("seed").as<uint64_t>();
  config.goodput = values.at("goodput").as<std::string>();
  try {
    config.slo = parse_slo(config.goodput);
  } catch (const std::invalid_argument& error) {
    throw OptionsError(std::string("--goodput: ") + error.what());
  }
  config.model = values.at("served-model-name").as<std::string>();
  config.api_key = values.at("api-key").as<std::string>();
  config.timeout_seconds = read_in_range(values, "timeout", 1, 86'400);
  config.wait_ready_seconds = read_in_range(values, "wait-ready", 0, 86'400);
  if (values.count("json")) config.json = values.at("json").as<std::string>();
  if (values.count("csv")) config.csv = values.at("csv").as<std::string>();
  return config;
}

void print_load_report(std::ostream& out, const LoadConfig& config, const LoadSummary& s) {
  out << fmt::format(
      "\nload: {} requests to {}, rate {}, burstiness {:g}, max concurrency {}, "
      "dataset {} ({} in / {} out tokens)\n",
      config.requests, config.url,
      std::isinf(config.rate) ? std::string("inf") : fmt::format("{:g}/s", config.rate),
      config.burstiness,
      config.max_concurrency ? std::to_string(config.max_concurrency) : "unbounded",
      config.dataset.kind, config.dataset.input_len, config.dataset.output_len);
  TextTable totals({{"figure", Align::Left}, {"value"}});
  totals.add_row({"completed / failed", fmt::format("{} / {}", s.completed, s.failed)});
  totals.add_row({"duration s", format_fixed(s.duration, 2)});
  totals.add_row({"requests/s", format_fixed(s.request_per_s, 2)});
  totals.add_row({"output tok/s", format_si(s.output_tok_per_s)});
  totals.add_row({"total tok/s", format_si(s.total_tok_per_s)});
  totals.add_row({"peak concurrency", std::to_string(s.peak_concurrency)});
  if (!config.goodput.empty()) {
    totals.add_row({"goodput req/s (" + config.goodput + ")", format_fixed(s.goodput_per_s, 2)});
    totals.add_row({"requests meeting the SLOs %", format_fixed(100 * s.goodput_fraction, 1)});
  }
  totals.print(out);
  TextTable latencies({{"latency", Align::Left}, {"mean"}, {"p50"}, {"p90"}, {"p99"}});
  add_distribution(latencies, "ttft", s.ttft_ms);
  add_distribution(latencies, "tpot", s.tpot_ms);
  add_distribution(latencies, "itl", s.itl_ms);
  add_distribution(latencies, "e2e", s.e2e_ms);
  latencies.print(out);
  for (const auto& [failure, count] : s.failures)
    out << "failed: " << count << " x " << failure << '\n';
  out.flush();
}

nlohmann::json load_json(const LoadConfig& config, const LoadSummary& s) {
  const nlohmann::json rate =
      std::isinf(config.rate) ? nlohmann::json("inf") : nlohmann::json(config.rate);
  return {
      {"suite", "load"},
      {"axes", {"rate", "max_concurrency", "dataset"}},
      {"headline",
       {"output_tok_per_s", "request_per_s", "ttft_ms.p99", "tpot_ms.p99", "itl_ms.p99",
        "goodput_per_s"}},
      {"config",
       {{"url", config.url},
        {"requests", config.requests},
        {"rate", rate},
        {"burstiness", config.burstiness},
        {"max_concurrency", config.max_concurrency},
        {"dataset", config.dataset.kind},
        {"input_len", config.dataset.input_len},
        {"output_len", config.dataset.output_len},
        {"prefix_len", config.dataset.prefix_len},
        {"seed", config.dataset.seed},
        {"goodput", config.goodput}}},
      {"machine", to_json(collect_machine_facts())},
      {"results",
       {{{"rate", rate},
         {"max_concurrency", config.max_concurrency},
         {"dataset", config.dataset.kind},
         {"completed", s.completed},
         {"failed", s.failed},
         {"failures", s.failures},
         {"duration_s", s.duration},
         {"request_per_s", s.request_per_s},
         {"output_tok_per_s", s.output_tok_per_s},
         {"total_tok_per_s", s.total_tok_per_s},
         {"goodput_per_s", s.goodput_per_s},
         {"goodput_fraction", s.goodput_fraction},
         {"peak_concurrency", s.peak_concurrency},
         {"ttft_ms", distribution_json(s.ttft_ms)},
         {"tpot_ms", distribution_json(s.tpot_ms)},
         {"itl_ms", distribution_json(s.itl_ms)},
         {"e2e_ms", distribution_json(s.e2e_ms)}}}}};
}

namespace {

// Polls GET /health while it answers 503 (a troupe-server loading its model), at most
// wait_ready_seconds. Any other answer (ready, or a server without /health) ends the wait;
// a connection failure too (the requests then report it).
void wait_until_ready(const LoadConfig& config, const HttpUrl& url) {
  if (config.wait_ready_seconds == 0) return;
  const Clock::time_point until = Clock::now() + std::chrono::seconds(config.wait_ready_seconds);
  for (;;) {
    const HttpResult health = http_get(url, "/health", config.api_key, std::chrono::seconds(5));
    if (health.status != 503) return;
    if (Clock::now() >= until)
      throw std::runtime_error(config.url + "/health still answers 503 (not ready) after " +
                               std::to_string(config.wait_ready_seconds) +
                               " s; raise --wait-ready or check the server's log");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace

LoadSummary run_load_suite(const LoadConfig& config, std::ostream& out) {
  const HttpUrl url = parse_http_url(config.url);
  wait_until_ready(config, url);
  const std::vector<LoadPrompt> prompts = load_dataset(config.dataset, config.requests);
  const std::vector<double> offsets =
      arrival_offsets(config.requests, config.rate, config.burstiness, config.dataset.seed);
  std::vector<LoadRequestResult> results(prompts.size());
  std::vector<std::thread> threads;
  Slots slots(config.max_concurrency);
  std::mutex finished_mutex;
  std::size_t finished = 0;
  ProgressLine progress;
  const Clock::time_point start = Clock::now();
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    std::this_thread::sleep_until(start + std::chrono::duration_cast<Clock::duration>(
                                              std::chrono::duration<double>(offsets[i])));
    slots.acquire();
    {
      std::lock_guard lock(finished_mutex);
      progress.show(fmt::format("load: {}/{} sent, {} finished", i + 1, prompts.size(), finished));
    }
    threads.emplace_back([&, i, body = request_body(config, prompts[i])] {
      results[i] = send_one(config, url, body, start);
      slots.release();
      std::lock_guard lock(finished_mutex);
      ++finished;
    });
  }
  for (std::thread& thread : threads) thread.join();
  progress.clear();
  double duration = 0;
  for (const LoadRequestResult& result : results)
    duration = std::max(duration, result.start + result.e2e);
  const LoadSummary summary = summarize_load(results, config.slo, duration, slots.peak());
  bool any_connected = false;
  for (const LoadRequestResult& result : results)
    any_connected = any_connected || result.failure.rfind("connection: ", 0) != 0;
  if (!any_connected)
    throw std::runtime_error("no request reached " + config.url + " (" + results.front().failure +
                             "); is the server running?");
  print_load_report(out, config, summary);
  if (config.json) write_json_file(*config.json, load_json(config, summary));
  if (config.csv) {
    const nlohmann::json row = load_json(config, summary)["results"][0];
    std::vector<std::string> header, fields;
    for (const auto& [key, value] : row.items()) {
      if (value.is_object() && key != "failures") {
        for (const auto& [stat, number] : value.items()) {
          header.push_back(key + "_" + stat);
          fields.push_back(csv_number(number));
        }
      } else if (!value.is_object()) {
        header.push_back(key);
        fields.push_back(value.is_string() ? value.get<std::string>() : csv_number(value));
      }
    }
    write_csv_file(*config.csv, header, {fields});
  }
  return summary;
}

int load_main(const std::vector<std::string>& args, std::ostream& out) {
  const po::options_description description = load_options();
  const po::variables_map values = parse_options(description, args);
  if (help_requested(values)) {
    out << description << '\n';
    return 0;
  }
  run_load_suite(read_load_config(values), out);
  return 0;
}

}  // namespace troupe
