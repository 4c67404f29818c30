#include "bench/serve_workload.hpp"

#include <algorithm>
#include <condition_variable>
#include <limits>
#include <mutex>
#include <random>
#include <stdexcept>

#include <fmt/format.h>

#include "bench/context_switches.hpp"
#include "bench/process_memory.hpp"

namespace troupe {
namespace {

using std::chrono::duration;

double nan() { return std::numeric_limits<double>::quiet_NaN(); }

double seconds_between(EngineClock::time_point from, EngineClock::time_point to) {
  return duration<double>(to - from).count();
}

// Collects the terminal events of one run; the waiting thread sleeps on `changed`.
struct RunEnds {
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<std::optional<EndEvent>> ends;
  std::size_t ended = 0;
};

class CollectingSink final : public ResponseSink {
 public:
  CollectingSink(std::shared_ptr<RunEnds> ends, std::size_t index)
      : ends_(std::move(ends)), index_(index) {}
  void on_chunk(TextChunk) override {}
  void on_end(EndEvent end) override {
    {
      std::lock_guard lock(ends_->mutex);
      ends_->ends[index_] = std::move(end);
      ++ends_->ended;
    }
    ends_->changed.notify_all();
  }

 private:
  std::shared_ptr<RunEnds> ends_;
  std::size_t index_;
};

GenerateRequest make_request(std::vector<int32_t> prompt, int n_gen,
                             EngineClock::time_point arrival) {
  GenerateRequest request;
  request.prompt_tokens = std::move(prompt);
  request.max_tokens = n_gen;
  request.ignore_eos = true;
  request.sampling.temperature = 0;
  request.sampling.logprob = false;  // nobody reads it: skip the softmax normalizer
  request.arrival = arrival;
  return request;
}

// Waits until at least `count` requests ended; false on timeout.
bool wait_for_ends(RunEnds& ends, std::size_t count, EngineClock::time_point deadline) {
  std::unique_lock lock(ends.mutex);
  return ends.changed.wait_until(lock, deadline, [&] { return ends.ended >= count; });
}

std::string end_text(const EndEvent& end) {
  if (end.kind == EndKind::Error)
    return fmt::format("error ({}): {}", describe(end.error), end.message);
  return fmt::format("{} after {} tokens", describe(end.kind), end.usage.completion_tokens);
}

RequestTimes request_times(const EndEvent& end, int n_gen) {
  if (end.kind != EndKind::Finished || end.usage.completion_tokens != n_gen ||
      static_cast<int>(end.timings.token_times.size()) != n_gen)
    throw std::runtime_error(
        fmt::format("a request did not generate exactly {} tokens: {}", n_gen, end_text(end)));
  RequestTimes times;
  times.queue = end.timings.queued;
  times.ttft = end.timings.first_token;
  times.e2e = end.timings.finished;
  times.token_times = end.timings.token_times;
  times.prompt_tokens = end.usage.prompt_tokens;
  times.completion_tokens = end.usage.completion_tokens;
  times.cached_tokens = end.usage.cached_tokens;
  times.preemptions = end.preemptions;
  return times;
}

std::vector<std::pair<std::string, SharingStats>> sharing_delta(const EngineStats& before,
                                                                const EngineStats& after) {
  std::vector<std::pair<std::string, SharingStats>> delta;
  for (const auto& [name, stats] : after.sharing) {
    SharingStats run = stats;
    for (const auto& [earlier_name, earlier] : before.sharing) {
      if (earlier_name != name) continue;
      run.calls -= earlier.calls;
      run.contended_calls -= earlier.contended_calls;
      run.wait_ns_total -= earlier.wait_ns_total;
    }
    delta.emplace_back(name, run);
  }
  return delta;
}

double busy_seconds(const EngineStats& stats) {
  double busy = 0;
  for (double seconds : stats.worker_busy_seconds) busy += seconds;
  return busy;
}

void derive_throughput(ServeRun& run) {
  double last_ttft = 0, earliest_first = std::numeric_limits<double>::infinity(), last_token = 0;
  double uncached_prompt = 0, prompt = 0, generated = 0, after_first = 0, cached = 0;
  for (const RequestTimes& request : run.requests) {
    run.wall_seconds = std::max(run.wall_seconds, request.e2e);
    last_ttft = std::max(last_ttft, request.ttft);
    earliest_first = std::min(earliest_first, request.token_times.front());
    last_token = std::max(last_token, request.token_times.back());
    prompt += request.prompt_tokens;
    cached += request.cached_tokens;
    uncached_prompt += request.prompt_tokens - request.cached_tokens;
    generated += request.completion_tokens;
    after_first += request.completion_tokens - 1;
    run.preemptions += static_cast<uint64_t>(request.preemptions);
  }
  run.prompt_tok_per_s = last_ttft > 0 ? uncached_prompt / last_ttft : nan();
  run.generation_tok_per_s =
      last_token > earliest_first ? after_first / (last_token - earliest_first) : nan();
  run.output_tok_per_s = run.wall_seconds > 0 ? generated / run.wall_seconds : nan();
  run.total_tok_per_s = run.wall_seconds > 0 ? (prompt + generated) / run.wall_seconds : nan();
  run.prefix_hit_rate = prompt > 0 ? cached / prompt : 0;
}

}  // namespace

std::vector<std::vector<int32_t>> serve_prompts(const ServeWorkload& workload, uint32_t n_vocab) {
  if (n_vocab == 0) throw std::invalid_argument("the model has an empty vocabulary");
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(n_vocab - 1));
  std::mt19937_64 shared_random(workload.seed);
  std::vector<int32_t> shared(static_cast<std::size_t>(workload.shared_prefix));
  for (int32_t& id : shared) id = token(shared_random);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < workload.batch_size; ++i) {
    std::mt19937_64 random(workload.seed * 1'000'003 + static_cast<uint64_t>(i) + 1);
    std::vector<int32_t> prompt = shared;
    while (static_cast<int>(prompt.size()) < workload.n_prompt) prompt.push_back(token(random));
    prompts.push_back(std::move(prompt));
  }
  return prompts;
}

ServeRun run_serve_workload(const EngineOptions& options, const ServeWorkload& workload) {
  if (workload.batch_size < 1 || workload.n_prompt < 1 || workload.n_gen < 1 ||
      workload.shared_prefix < 0 || workload.shared_prefix > workload.n_prompt)
    throw std::invalid_argument(
        "the serve workload needs batch size, prompt and generated tokens >= 1 and a shared "
        "prefix within the prompt");
  reset_peak_rss();
  std::unique_ptr<Engine> engine = make_engine(options);
  const uint32_t n_vocab = engine->model()->desc().n_vocab;
  const auto wait_limit = options.request_timeout + std::chrono::seconds(10);

  {  // warm-up: the first step of a fresh engine pays for allocations and cold caches
    auto ends = std::make_shared<RunEnds>();
    ends->ends.resize(1);
    ServeWorkload warm = workload;
    warm.batch_size = 1;
    warm.n_prompt = std::min(workload.n_prompt, 8);
    warm.shared_prefix = 0;
    warm.seed = workload.seed ^ 0x5eed'0000'0000ull;
    engine->submit(make_request(serve_prompts(warm, n_vocab).front(), 2, EngineClock::now()),
                   std::make_shared<CollectingSink>(ends, 0));
    if (!wait_for_ends(*ends, 1, EngineClock::now() + wait_limit))
      throw std::runtime_error("the warm-up request did not end within the request timeout");
    if (ends->ends[0]->kind != EndKind::Finished)
      throw std::runtime_error("the warm-up request failed: " + end_text(*ends->ends[0]));
  }

  std::vector<std::vector<int32_t>> prompts = serve_prompts(workload, n_vocab);
  auto ends = std::make_shared<RunEnds>();
  ends->ends.resize(prompts.size());
  const EngineStats before = engine->stats();
  engine->take_step_gaps();  // the warm-up's
  const std::optional<ContextSwitches> switches_before = context_switches();
  const EngineClock::time_point arrival = EngineClock::now();
  for (std::size_t i = 0; i < prompts.size(); ++i)
    engine->submit(make_request(std::move(prompts[i]), workload.n_gen, arrival),
                   std::make_shared<CollectingSink>(ends, i));

  const EngineClock::time_point deadline = arrival + wait_limit;
  const bool first_ended = wait_for_ends(*ends, 1, deadline);
  const EngineStats at_first_end = engine->stats();
  const std::optional<ContextSwitches> switches_at_first_end = context_switches();
  std::vector<double> idle_gaps = engine->take_step_gaps();
  const double window = seconds_between(arrival, EngineClock::now());
  if (!first_ended || !wait_for_ends(*ends, prompts.size(), deadline)) {
    engine->shutdown(std::chrono::milliseconds(0));
    throw std::runtime_error("the requests did not end within the request timeout");
  }
  const EngineStats after = engine->stats();
  engine->shutdown(std::chrono::milliseconds(1000));

  ServeRun run;
  {
    std::lock_guard lock(ends->mutex);
    for (const std::optional<EndEvent>& end : ends->ends)
      run.requests.push_back(request_times(*end, workload.n_gen));
  }
  derive_throughput(run);

  const double workers = static_cast<double>(at_first_end.worker_busy_seconds.size());
  const double busy = busy_seconds(at_first_end) - busy_seconds(before);
  const double steps = static_cast<double>(at_first_end.planner.batches - before.planner.batches);
  run.worker_utilization = workers > 0 && window > 0 ? busy / (workers * window) : nan();
  run.idle_gap_mean_seconds = steps > 0 ? std::max(0.0, workers * window - busy) / steps : nan();
  run.idle_gaps = std::move(idle_gaps);
  run.switches_per_step = run.involuntary_switches_per_step = nan();
  if (steps > 0 && switches_before && switches_at_first_end) {
    const double voluntary =
        double(switches_at_first_end->voluntary - switches_before->voluntary);
    const double involuntary =
        double(switches_at_first_end->involuntary - switches_before->involuntary);
    run.switches_per_step = (voluntary + involuntary) / steps;
    run.involuntary_switches_per_step = involuntary / steps;
  }
  run.peak_kv_blocks = after.kv.peak_in_use_blocks;
  if (after.kv.total_blocks > 0)
    run.peak_kv_bytes = after.kv_bytes / static_cast<uint64_t>(after.kv.total_blocks) *
                        static_cast<uint64_t>(after.kv.peak_in_use_blocks);
  run.gpu_memory_bytes = after.gpu_memory_bytes;
  run.sharing = sharing_delta(before, after);
  run.backend = after.backend;
  run.model_source = after.model_source;
  engine.reset();
  run.peak_rss_bytes = peak_rss_bytes();
  return run;
}

}  // namespace troupe
