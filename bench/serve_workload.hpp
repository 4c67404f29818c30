#pragma once
// One measured run of `troupe-bench serve`: a fresh Engine, one warm-up request, then
// `batch_size` requests of `n_prompt` seeded random prompt tokens, each generating exactly
// `n_gen` tokens (EOS ignored), all submitted at once with the same arrival time; the run
// ends when every request has ended. The figures come from the requests' EndEvents
// (seconds from the common arrival) and from EngineStats deltas around the run.
// Definitions (per run):
//   wall                 arrival -> last terminal event
//   prompt tok/s         prompt tokens not served from the prefix cache / the last TTFT
//   generation tok/s     tokens after each request's first / (last token - earliest first token)
//   output tok/s         all generated tokens / wall (measured aggregate throughput)
//   total tok/s          prompt + generated tokens / wall
//   worker_utilization   sum over workers of their steps' device time (Backend::StepTimes;
//                        the sim's is its roofline time, however late its thread wakes) /
//                        (workers x window), window = arrival -> the first request's end,
//                        while every request is still waiting or running; a step still in
//                        flight at the window's end counts up to it
//   idle_gap_mean        (workers x window - busy) / steps planned in the window
//   idle_gaps            each gap the runtimes measured between back-to-back steps of a
//                        worker in the window (Engine::take_step_gaps), from the end of one
//                        step's device work to the start of the next: noticing the end,
//                        sampling, hand-offs, locking and planning, without the time a worker
//                        waited for work
//   switches_per_step    the process's context switches in the window (every thread's,
//                        bench/context_switches.hpp) / steps planned in the window, and the
//                        involuntary ones alone: what the runtime's hand-offs cost the OS
// Not thread-safe: one run at a time per process (peak RSS is process-wide).

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "actors/engine.hpp"

namespace troupe {

struct ServeWorkload {
  int batch_size = 1;
  int n_prompt = 64;
  int n_gen = 16;
  int shared_prefix = 0;  // leading prompt tokens common to every request (<= n_prompt)
  uint64_t seed = 1;      // the same seed gives the same prompts in every run
};

// One request's end, in seconds from the arrival.
struct RequestTimes {
  double queue = 0;
  double ttft = 0;
  double e2e = 0;
  std::vector<double> token_times;
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t cached_tokens = 0;
  int32_t preemptions = 0;
};

struct ServeRun {
  std::vector<RequestTimes> requests;
  double wall_seconds = 0;
  double prompt_tok_per_s = 0;
  double generation_tok_per_s = 0;
  double output_tok_per_s = 0;
  double total_tok_per_s = 0;
  double worker_utilization = 0;
  double idle_gap_mean_seconds = 0;  // NaN when no step was planned in the window
  std::vector<double> idle_gaps;     // seconds
  double switches_per_step = 0;      // NaN when unknown or no step was planned in the window
  double involuntary_switches_per_step = 0;
  int32_t peak_kv_blocks = 0;
  uint64_t peak_kv_bytes = 0;
  uint64_t gpu_memory_bytes = 0;  // EngineStats::gpu_memory_bytes (cuda; else 0)
  double prefix_hit_rate = 0;  // cached prompt tokens / prompt tokens
  uint64_t preemptions = 0;
  std::optional<uint64_t> peak_rss_bytes;
  std::vector<std::pair<std::string, SharingStats>> sharing;  // this run's calls only
  std::string backend;  // Backend::name() ("sim (simulated ...)" for sim)
  std::string model_source;
};

// The prompts of a workload: batch_size vectors of n_prompt tokens in [0, n_vocab).
std::vector<std::vector<int32_t>> serve_prompts(const ServeWorkload& workload, uint32_t n_vocab);

// Throws std::invalid_argument for an unusable workload or options, ModelLoadError for a
// model that cannot be loaded, std::runtime_error when a request does not finish with
// exactly n_gen tokens or the run exceeds options.request_timeout.
ServeRun run_serve_workload(const EngineOptions& options, const ServeWorkload& workload);

}  // namespace troupe
