// Engine: what the daemon, the bench and tests drive: requests in, streamed text out, under
// the runtime chosen with --runtime (actors | threads) and the sync mode chosen with --sync.
// An Engine serves one model generation at a time (a Pipeline: one KV cache, one batch
// planner, `workers` backends); reload() starts a new generation for new requests while the
// old one finishes what it has, then is destroyed.
// Request life: submit() never throws for a client's mistake and never blocks on the model;
// every submitted request ends with exactly one on_end() (finished, cancelled or error), also
// when it is refused at once (bad input, queue full, draining), when its worker fails or at
// shutdown. on_chunk() and on_end() of one request are never called concurrently and never
// after on_end(); they run on runtime threads and must not block (hand the data to another
// thread and return).
// Thread safety: every member may be called from any thread. Ownership: the engine owns its
// models, backends, threads and (when it needs one) its CAF actor system.
// Units: times are measured from GenerateRequest::arrival; tokens are vocabulary ids.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "actors/options.hpp"
#include "actors/sharing.hpp"
#include "actors/sharing_granularity.hpp"
#include "gpu/backend.hpp"
#include "locks/sync_mode.hpp"
#include "model/batch_planner.hpp"
#include "model/chat_template.hpp"
#include "model/kv_cache_core.hpp"
#include "model/model_state.hpp"
#include "model/sampler.hpp"

namespace troupe {

using EngineClock = std::chrono::steady_clock;

struct GenerateRequest {
  // Exactly one prompt form: prompt_tokens (used as is) when not empty, else messages (chat
  // template applied, generation prompt added) when chat, else prompt (text, BOS by the
  // vocabulary's rule).
  std::string prompt;
  std::vector<ChatMessage> messages;
  bool chat = false;
  std::vector<int32_t> prompt_tokens;

  SamplingParams sampling;
  int32_t max_tokens = 16;           // >= 1; the context limits it further
  std::vector<std::string> stop;     // stop strings; the text before the first match is kept
  bool ignore_eos = false;           // generate exactly max_tokens (bench)
  int32_t priority = 0;              // higher first; FCFS within a priority
  std::optional<EngineClock::duration> timeout;  // from arrival; the engine default if unset
  EngineClock::time_point arrival = EngineClock::now();
};

// One piece of streamed output: the text that became complete (whole UTF-8 characters, stop
// strings held back until they cannot match) and the tokens that produced it.
struct TokenChoice {
  int32_t token = 0;
  float logprob = 0.0f;
  std::vector<TokenLogprob> top;     // SamplingParams::n_logprobs entries, best first
  std::string text;                  // this token's bytes (may be part of a character)
};

struct TextChunk {
  std::string text;
  std::vector<TokenChoice> tokens;   // logprobs filled only when asked for
};

enum class EndKind : uint8_t { Finished, Cancelled, Error };
enum class FinishReason : uint8_t { Stop, Length };  // Stop: EOS or a stop string
// Error kinds map to HTTP statuses in the daemon: InvalidRequest 400, QueueFull 429,
// Unavailable 503 (loading, draining, shut down), Timeout 408-like (deadline reached),
// WorkerFailed and Internal 500.
enum class ErrorKind : uint8_t { None, InvalidRequest, QueueFull, Unavailable, Timeout,
                                 WorkerFailed, Internal };

struct Usage {
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t cached_tokens = 0;         // prompt tokens whose KV came from the prefix cache
};

struct Timings {                     // seconds from arrival; negative: did not happen
  double queued = -1;                // admitted (first prefill chunk planned)
  double first_token = -1;           // first generated token sampled
  double finished = -1;              // the terminal event
  std::vector<double> token_times;   // each generated token's sample time, in order
};

struct EndEvent {
  EndKind kind = EndKind::Finished;
  FinishReason finish = FinishReason::Length;  // when Finished
  ErrorKind error = ErrorKind::None;           // when Error
  std::string message;                         // when Error: a sentence a user can act on
  std::string param;                           // when InvalidRequest: the field at fault
  Usage usage;
  Timings timings;
  uint64_t model_generation = 0;               // the generation that served it
  int32_t preemptions = 0;
};

class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  virtual void on_chunk(TextChunk chunk) = 0;
  virtual void on_end(EndEvent end) = 0;
};

using RequestId = uint64_t;

struct EngineOptions {
  Runtime runtime = Runtime::Actors;
  SyncMode sync = SyncMode::Parking;     // threads + actor is refused (std::invalid_argument)
  KvGranularity kv_granularity = KvGranularity::Step;
  SharingOptions sharing;                // actor call timeout (sync actor)

  std::string model_path;                // GGUF file; unused by the sim backend
  std::string chat_template;             // "" = detect from the model; else a family name
  BackendOptions backend;                // name cpu | sim | cuda, threads per worker, KV size
  std::string sim_profile = "7b-h200";   // backend sim only
  double sim_time_scale = 1.0;           // backend sim only: 0 = no sleeping (tests)
  int32_t workers = 1;                   // backends, each with at most one step in flight
  PlannerConfig planner;                 // max_batch_tokens, max_seqs, max_queued (workers
                                         // is taken from `workers`)
  int32_t context_tokens = 0;            // per sequence; 0 = the model's trained context
  bool prefix_cache = true;
  std::chrono::milliseconds request_timeout{600'000};  // default deadline from arrival
  // Deterministic tests only (actors runtime): workers and the scheduler are spawned so
  // that CAF's test coordinator can step them. Off in production.
  bool deterministic = false;
  // Tests only: when set, each worker's backend is passed through it as it is made (worker
  // index, the backend the options ask for) and the result is used, e.g. to inject a backend
  // that fails. Empty in production.
  std::function<std::unique_ptr<Backend>(int32_t worker, std::unique_ptr<Backend>)> wrap_backend;
  // Throws std::invalid_argument naming the option for a value out of range.
  void validate() const;
};

// A consistent-enough snapshot for /metrics and the bench (counters cumulative).
struct EngineStats {
  uint64_t model_generation = 0;
  std::string model_source;              // path, or the sim profile ("simulated ...")
  std::string backend;                   // Backend::name() of the workers
  int32_t running = 0;                   // prefilling or decoding
  int32_t waiting = 0;                   // queued, preempted included
  PlannerStats planner;                  // submitted, rejected, preemptions, tokens, ...
  KvStats kv;                            // blocks in use / total, prefix hits
  uint64_t kv_bytes = 0;                 // KV memory (simulated bytes for sim)
  uint64_t gpu_memory_bytes = 0;         // device memory the backends allocated (cuda; else 0)
  uint64_t requests_finished = 0, requests_cancelled = 0, requests_failed = 0;
  uint64_t prompt_tokens = 0, generated_tokens = 0, cached_tokens = 0;
  // Lock contention (locks) or mailbox depth (actors) of each shared state and queue, by
  // name: "kv_cache", "planner", "request_channels", "scheduler_mailbox", ...
  std::vector<std::pair<std::string, SharingStats>> sharing;
  // Worker activity since start: each worker's steps' device time (Backend::StepTimes: for
  // a backend that picks greedy tokens itself, the pick is inside it; for the sim, the roofline
  // time however late its thread woke), a step in progress counted up to now.
  std::vector<double> worker_busy_seconds;
  double uptime_seconds = 0;
  bool draining = false;
};

class Engine {
 public:
  virtual ~Engine() = default;  // as shutdown(0): cancels what is left

  // Starts the request; every outcome arrives at sink (see the contract above). Returns the
  // id to cancel it with.
  virtual RequestId submit(GenerateRequest request, std::shared_ptr<ResponseSink> sink) = 0;
  // Ends the request (Cancelled) if it has not ended; its KV blocks are freed at the next
  // iteration. Unknown or ended ids are ignored.
  virtual void cancel(RequestId id) = 0;

  // Loads `model_path` (empty: the current path again) as a new generation. Requests already
  // submitted finish on the generation they started on; new ones go to the new one. Throws
  // ModelLoadError (the old generation keeps serving) for a file that cannot be loaded.
  virtual void reload(const std::string& model_path) = 0;

  // The current generation's model: tokenizer, template, context (for /tokenize, /v1/models
  // and prompt-length checks). Never null once the engine is constructed.
  virtual std::shared_ptr<const LoadedModel> model() const = 0;
  virtual int32_t context_tokens() const = 0;

  virtual EngineStats stats() const = 0;
  // The current generation's idle gaps between back-to-back steps of each worker since the
  // last call, in seconds: from the end of one step (Backend::step and sampling) to the
  // start of the next while the worker had work, i.e. the runtime's hand-offs, locking and
  // planning. At most the last 8192 per worker.
  virtual std::vector<double> take_step_gaps() = 0;

  // Stops accepting (new requests end at once with Unavailable), waits until every request
  // ended or `drain` passed, then cancels the rest and waits for their end events. Returns
  // the number of requests cancelled. Idempotent.
  virtual int shutdown(std::chrono::milliseconds drain) = 0;
};

// Loads the model (unless sim), starts the runtime. Throws std::invalid_argument for bad
// options (naming the option) and ModelLoadError for a model that cannot be loaded.
std::unique_ptr<Engine> make_engine(const EngineOptions& options);

std::string_view describe(EndKind kind);
std::string_view describe(FinishReason reason);     // "stop" / "length" (OpenAI's names)
std::string_view describe(ErrorKind kind);

}  // namespace troupe
