#include "daemon/metrics.hpp"

#include <algorithm>
#include <fmt/format.h>

namespace troupe {
namespace {

void header(std::string& out, std::string_view name, std::string_view type,
            std::string_view help) {
  fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

template <class T>
void single(std::string& out, std::string_view name, std::string_view type, std::string_view help,
            T value) {
  header(out, name, type, help);
  fmt::format_to(std::back_inserter(out), "{} {}\n", name, value);
}

std::string label_value(std::string_view text) {
  std::string escaped;
  for (char c : text) {
    if (c == '\\' || c == '"') escaped += '\\';
    if (c == '\n') {
      escaped += "\\n";
      continue;
    }
    escaped += c;
  }
  return escaped;
}

std::vector<double> latency_bounds() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
}

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  const auto bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  ++counts_[std::size_t(bucket)];
  sum_ += value;
  ++count_;
}

void Histogram::render(std::string& out, std::string_view name, std::string_view help) const {
  header(out, name, "histogram", help);
  uint64_t cumulative = 0;
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    fmt::format_to(std::back_inserter(out), "{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i],
                   cumulative);
  }
  fmt::format_to(std::back_inserter(out), "{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n",
                 name, count_, name, sum_, name, count_);
}

ServerMetrics::ServerMetrics()
    : queue_time_(latency_bounds()),
      first_token_(latency_bounds()),
      inter_token_({0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5,
                    1, 2.5}),
      end_to_end_(latency_bounds()) {}

void ServerMetrics::record_response(std::string_view route, int status) {
  std::lock_guard lock(mutex_);
  ++responses_[{std::string(route), status}];
}

void ServerMetrics::record_end(const EndEvent& end) {
  std::lock_guard lock(mutex_);
  const Timings& t = end.timings;
  if (t.queued >= 0) queue_time_.observe(t.queued);
  if (t.first_token >= 0) first_token_.observe(t.first_token);
  for (std::size_t i = 1; i < t.token_times.size(); ++i)
    inter_token_.observe(std::max(0.0, t.token_times[i] - t.token_times[i - 1]));
  if (t.finished >= 0 && end.kind == EndKind::Finished) end_to_end_.observe(t.finished);
}

void ServerMetrics::connection_opened() {
  std::lock_guard lock(mutex_);
  ++connections_open_;
  ++connections_total_;
}

void ServerMetrics::connection_closed() {
  std::lock_guard lock(mutex_);
  --connections_open_;
}

std::string ServerMetrics::render(const EngineStats* stats, const CpuSplit& cpu) const {
  std::string out;
  out.reserve(16 << 10);
  {
    std::lock_guard lock(mutex_);
    header(out, "troupe_http_responses_total", "counter", "HTTP responses by route and status");
    for (const auto& [key, count] : responses_)
      fmt::format_to(std::back_inserter(out),
                     "troupe_http_responses_total{{route=\"{}\",status=\"{}\"}} {}\n",
                     label_value(key.first), key.second, count);
    single(out, "troupe_http_connections_open", "gauge", "open HTTP connections",
           connections_open_);
    single(out, "troupe_http_connections_total", "counter", "accepted HTTP connections",
           connections_total_);
    queue_time_.render(out, "troupe_queue_time_seconds",
                       "time from arrival to admission into a batch");
    first_token_.render(out, "troupe_time_to_first_token_seconds",
                        "time from arrival to the first generated token");
    inter_token_.render(out, "troupe_inter_token_latency_seconds",
                        "time between consecutive generated tokens of a request");
    end_to_end_.render(out, "troupe_e2e_request_latency_seconds",
                       "time from arrival to the end of a finished request");
  }
  single(out, "troupe_http_cpu_seconds_total", "counter", "CPU time of the HTTP threads",
         cpu.http_seconds);
  single(out, "troupe_process_cpu_seconds_total", "counter", "CPU time of the whole process",
         cpu.process_seconds);
  single(out, "troupe_http_cpu_share", "gauge",
         "HTTP threads' share of the process's CPU time since start",
         cpu.process_seconds > 0 ? cpu.http_seconds / cpu.process_seconds : 0.0);
  single(out, "troupe_model_loaded", "gauge", "1 once the model is loaded", stats ? 1 : 0);
  if (!stats) return out;
  const EngineStats& s = *stats;
  single(out, "troupe_model_generation", "gauge", "generation of the current model",
         s.model_generation);
  single(out, "troupe_draining", "gauge", "1 while shutting down", s.draining ? 1 : 0);
  single(out, "troupe_uptime_seconds", "gauge", "engine uptime", s.uptime_seconds);
  single(out, "troupe_requests_running", "gauge", "requests prefilling or decoding", s.running);
  single(out, "troupe_requests_waiting", "gauge", "requests queued (preempted included)",
         s.waiting);
  single(out, "troupe_requests_finished_total", "counter", "requests finished",
         s.requests_finished);
  single(out, "troupe_requests_cancelled_total", "counter", "requests cancelled",
         s.requests_cancelled);
  single(out, "troupe_requests_failed_total", "counter", "requests ended by an error",
         s.requests_failed);
  single(out, "troupe_rejections_total", "counter", "requests refused by the scheduler",
         s.planner.rejected);
  single(out, "troupe_preemptions_total", "counter", "sequences preempted (recomputed later)",
         s.planner.preemptions);
  single(out, "troupe_prompt_tokens_total", "counter", "prompt tokens of accepted requests",
         s.prompt_tokens);
  single(out, "troupe_generation_tokens_total", "counter", "generated tokens",
         s.generated_tokens);
  single(out, "troupe_cached_prompt_tokens_total", "counter",
         "prompt tokens whose KV came from the prefix cache", s.cached_tokens);
  single(out, "troupe_batches_total", "counter", "non-empty batches planned", s.planner.batches);
  single(out, "troupe_kv_cache_blocks_total", "gauge", "KV-cache blocks", s.kv.total_blocks);
  single(out, "troupe_kv_cache_blocks_in_use", "gauge", "KV-cache blocks held by sequences",
         s.kv.in_use_blocks);
  single(out, "troupe_kv_cache_blocks_cached_idle", "gauge",
         "KV-cache blocks held by none, kept for prefix hits", s.kv.cached_idle_blocks);
  single(out, "troupe_kv_cache_usage_ratio", "gauge", "KV-cache blocks in use / total",
         s.kv.total_blocks > 0 ? double(s.kv.in_use_blocks) / s.kv.total_blocks : 0.0);
  single(out, "troupe_kv_cache_bytes", "gauge", "KV-cache memory", s.kv_bytes);
  single(out, "troupe_gpu_memory_bytes", "gauge",
         "GPU memory the backends allocated (weights, KV pool, scratch; 0 without cuda)",
         s.gpu_memory_bytes);
  single(out, "troupe_prefix_cache_hit_rate", "gauge",
         "prompt tokens found in the prefix cache / tokens looked up", s.kv.token_hit_rate());
  single(out, "troupe_prefix_cache_hit_tokens_total", "counter", "prefix-cache hit tokens",
         s.kv.hit_tokens);
  single(out, "troupe_prefix_cache_lookup_tokens_total", "counter",
         "prompt tokens looked up in the prefix cache", s.kv.lookup_tokens);

  header(out, "troupe_sharing_calls_total", "counter",
         "calls into each shared state (lock acquisitions or actor requests)");
  for (const auto& [name, sharing] : s.sharing)
    fmt::format_to(std::back_inserter(out), "troupe_sharing_calls_total{{state=\"{}\"}} {}\n",
                   label_value(name), sharing.calls);
  header(out, "troupe_sharing_contended_calls_total", "counter",
         "calls that found the lock taken or a request already queued");
  for (const auto& [name, sharing] : s.sharing)
    fmt::format_to(std::back_inserter(out),
                   "troupe_sharing_contended_calls_total{{state=\"{}\"}} {}\n", label_value(name),
                   sharing.contended_calls);
  header(out, "troupe_sharing_wait_seconds_total", "counter",
         "time contended calls waited (locks) or round trips took (actors)");
  for (const auto& [name, sharing] : s.sharing)
    fmt::format_to(std::back_inserter(out),
                   "troupe_sharing_wait_seconds_total{{state=\"{}\"}} {}\n", label_value(name),
                   double(sharing.wait_ns_total) * 1e-9);
  header(out, "troupe_mailbox_depth_max", "gauge", "most requests queued at once in an owner's mailbox");
  for (const auto& [name, sharing] : s.sharing)
    fmt::format_to(std::back_inserter(out), "troupe_mailbox_depth_max{{state=\"{}\"}} {}\n",
                   label_value(name), sharing.mailbox_depth_max);
  header(out, "troupe_worker_busy_seconds_total", "counter", "time each worker spent in steps");
  for (std::size_t i = 0; i < s.worker_busy_seconds.size(); ++i)
    fmt::format_to(std::back_inserter(out), "troupe_worker_busy_seconds_total{{worker=\"{}\"}} {}\n",
                   i, s.worker_busy_seconds[i]);
  return out;
}

}  // namespace troupe
