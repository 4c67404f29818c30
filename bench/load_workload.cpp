#include "bench/load_workload.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <random>
#include <stdexcept>

#include <fmt/format.h>

namespace troupe {
namespace {

double nan() { return std::numeric_limits<double>::quiet_NaN(); }

std::vector<int32_t> random_tokens(std::mt19937_64& random, int count) {
  std::uniform_int_distribution<int32_t> token(kRandomTokenFirst, kRandomTokenEnd - 1);
  std::vector<int32_t> tokens(static_cast<std::size_t>(count));
  for (int32_t& id : tokens) id = token(random);
  return tokens;
}

std::vector<LoadPrompt> read_jsonl(const DatasetSpec& spec, int count) {
  std::ifstream in(spec.kind);
  if (!in) throw std::runtime_error("--dataset: cannot open '" + spec.kind + "'");
  std::vector<LoadPrompt> lines;
  int number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto fail = [&](const std::string& why) {
      throw std::runtime_error(fmt::format("--dataset '{}' line {}: {}", spec.kind, number, why));
    };
    nlohmann::json value;
    try {
      value = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& error) {
      fail(std::string("not JSON: ") + error.what());
    }
    if (!value.is_object() || !value.contains("prompt"))
      fail("expected an object with \"prompt\" (text or token ids)");
    const nlohmann::json& prompt = value["prompt"];
    const bool tokens = prompt.is_array() && !prompt.empty() &&
                        std::all_of(prompt.begin(), prompt.end(), [](const nlohmann::json& id) {
                          return id.is_number_integer();
                        });
    if (!(prompt.is_string() && !prompt.get<std::string>().empty()) && !tokens)
      fail("\"prompt\" must be non-empty text or an array of token ids");
    int output_len = spec.output_len;
    if (value.contains("max_tokens")) {
      if (!value["max_tokens"].is_number_integer() || value["max_tokens"].get<int64_t>() < 1)
        fail("\"max_tokens\" must be a whole number >= 1");
      output_len = value["max_tokens"].get<int>();
    }
    lines.push_back({prompt, output_len});
  }
  if (lines.empty()) throw std::runtime_error("--dataset '" + spec.kind + "' holds no prompt");
  std::vector<LoadPrompt> prompts;
  for (int i = 0; i < count; ++i)
    prompts.push_back(lines[static_cast<std::size_t>(i) % lines.size()]);
  return prompts;
}

}  // namespace

std::vector<LoadPrompt> load_dataset(const DatasetSpec& spec, int count) {
  if (spec.kind != "random" && spec.kind != "shared-prefix") return read_jsonl(spec, count);
  if (spec.input_len < 1 || spec.output_len < 1)
    throw std::invalid_argument("--input-len and --output-len must be at least 1");
  const int prefix_len = spec.kind == "random" ? 0
                         : spec.prefix_len > 0 ? std::min(spec.prefix_len, spec.input_len)
                                               : spec.input_len / 2;
  std::mt19937_64 random(spec.seed);
  const std::vector<int32_t> prefix = random_tokens(random, prefix_len);
  std::vector<LoadPrompt> prompts;
  for (int i = 0; i < count; ++i) {
    std::vector<int32_t> tokens = prefix;
    const std::vector<int32_t> rest = random_tokens(random, spec.input_len - prefix_len);
    tokens.insert(tokens.end(), rest.begin(), rest.end());
    prompts.push_back({nlohmann::json(tokens), spec.output_len});
  }
  return prompts;
}

std::vector<double> arrival_offsets(int count, double rate, double burstiness, uint64_t seed) {
  if (!(rate > 0) || !(burstiness > 0))
    throw std::invalid_argument("--rate and --burstiness must be above 0");
  std::vector<double> offsets;
  if (count <= 0) return offsets;
  offsets.push_back(0);
  if (std::isinf(rate)) {
    offsets.resize(static_cast<std::size_t>(count), 0.0);
    return offsets;
  }
  std::mt19937_64 random(seed);
  std::gamma_distribution<double> gap(burstiness, 1.0 / (rate * burstiness));
  for (int i = 1; i < count; ++i) offsets.push_back(offsets.back() + gap(random));
  return offsets;
}

Slo parse_slo(const std::string& text) {
  Slo slo;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(start, end - start);
    const std::size_t colon = item.find(':');
    const std::string name = item.substr(0, colon);
    double value = nan();
    try {
      std::size_t used = 0;
      if (colon != std::string::npos) value = std::stod(item.substr(colon + 1), &used);
      if (colon != std::string::npos && used != item.size() - colon - 1) value = nan();
    } catch (const std::exception&) {
    }
    if (!(value > 0))
      throw std::invalid_argument("'" + item +
                                  "': expected NAME:MILLISECONDS with NAME ttft, "
                                  "tpot or e2e and a positive number");
    if (name == "ttft")
      slo.ttft_ms = value;
    else if (name == "tpot")
      slo.tpot_ms = value;
    else if (name == "e2e")
      slo.e2e_ms = value;
    else
      throw std::invalid_argument("'" + name + "': unknown SLO (expected ttft, tpot or e2e)");
    start = end + 1;
  }
  return slo;
}

LoadRequestResult read_completion_stream(const std::vector<std::pair<double, std::string>>& events,
                                         double e2e) {
  LoadRequestResult result;
  result.e2e = e2e;
  std::optional<double> last_content;
  int content_events = 0;
  std::optional<int> usage_tokens;
  bool done = false;
  for (const auto& [at, data] : events) {
    if (data == "[DONE]") {
      done = true;
      continue;
    }
    nlohmann::json event = nlohmann::json::parse(data, nullptr, false);
    if (event.is_discarded()) {
      result.failure = "malformed event";
      return result;
    }
    if (event.contains("error")) {
      result.failure = "stream error";
      return result;
    }
    if (event.contains("usage") && event["usage"].is_object()) {
      usage_tokens = event["usage"].value("completion_tokens", 0);
      result.prompt_tokens = event["usage"].value("prompt_tokens", 0);
    }
    if (!event.contains("choices") || !event["choices"].is_array() || event["choices"].empty())
      continue;
    const nlohmann::json& choice = event["choices"][0];
    const nlohmann::json text = choice.contains("text") ? choice["text"]
                                : choice.contains("delta")
                                    ? choice["delta"].value("content", nlohmann::json())
                                    : nlohmann::json();
    if (!text.is_string() || text.get<std::string>().empty()) continue;
    if (last_content)
      result.itl.push_back(at - *last_content);
    else
      result.ttft = at;
    last_content = at;
    ++content_events;
  }
  if (!done) {
    result.failure = "stream ended without [DONE]";
    return result;
  }
  if (content_events == 0) {
    result.failure = "no tokens";
    return result;
  }
  result.output_tokens = usage_tokens.value_or(content_events);
  result.ok = true;
  return result;
}

LoadSummary summarize_load(const std::vector<LoadRequestResult>& results, const Slo& slo,
                           double duration, int peak_concurrency) {
  LoadSummary summary;
  summary.duration = duration;
  summary.peak_concurrency = peak_concurrency;
  std::vector<double> ttft, tpot, itl, e2e;
  double output = 0, prompt = 0;
  int good = 0;
  for (const LoadRequestResult& result : results) {
    if (!result.ok) {
      ++summary.failed;
      ++summary.failures[result.failure];
      continue;
    }
    ++summary.completed;
    output += result.output_tokens;
    prompt += result.prompt_tokens;
    ttft.push_back(result.ttft);
    e2e.push_back(result.e2e);
    itl.insert(itl.end(), result.itl.begin(), result.itl.end());
    const double request_tpot =
        result.output_tokens > 1 ? (result.e2e - result.ttft) / (result.output_tokens - 1) : nan();
    if (!std::isnan(request_tpot)) tpot.push_back(request_tpot);
    const bool meets =
        (!slo.ttft_ms || result.ttft * 1e3 <= *slo.ttft_ms) &&
        (!slo.tpot_ms || std::isnan(request_tpot) || request_tpot * 1e3 <= *slo.tpot_ms) &&
        (!slo.e2e_ms || result.e2e * 1e3 <= *slo.e2e_ms);
    if (meets) ++good;
  }
  const double seconds = duration > 0 ? duration : nan();
  summary.request_per_s = summary.completed / seconds;
  summary.output_tok_per_s = output / seconds;
  summary.total_tok_per_s = (output + prompt) / seconds;
  summary.goodput_per_s = good / seconds;
  summary.goodput_fraction = summary.completed > 0 ? double(good) / summary.completed : nan();
  summary.ttft_ms = scaled_distribution(ttft, 1e3);
  summary.tpot_ms = scaled_distribution(tpot, 1e3);
  summary.itl_ms = scaled_distribution(itl, 1e3);
  summary.e2e_ms = scaled_distribution(e2e, 1e3);
  return summary;
}

}  // namespace troupe
