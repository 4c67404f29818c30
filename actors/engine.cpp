#include "actors/engine.hpp"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <thread>
#include <utility>

#include "actors/pipeline.hpp"
#include "gpu/cuda/cuda_backend.hpp"
#include "gpu/kv_pool.hpp"
#include "gpu/sim_backend.hpp"
#include "gpu/sim_profile.hpp"
#include "model/gguf.hpp"

namespace troupe {

std::string_view describe(EndKind kind) {
  switch (kind) {
    case EndKind::Finished: return "finished";
    case EndKind::Cancelled: return "cancelled";
    case EndKind::Error: return "error";
  }
  return "unknown";
}

std::string_view describe(FinishReason reason) {
  return reason == FinishReason::Stop ? "stop" : "length";
}

std::string_view describe(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::None: return "none";
    case ErrorKind::InvalidRequest: return "invalid_request";
    case ErrorKind::QueueFull: return "queue_full";
    case ErrorKind::Unavailable: return "unavailable";
    case ErrorKind::Timeout: return "timeout";
    case ErrorKind::WorkerFailed: return "worker_failed";
    case ErrorKind::Internal: return "internal";
  }
  return "unknown";
}

namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

}  // namespace

void EngineOptions::validate() const {
  require(!(runtime == Runtime::Threads && sync == SyncMode::Actor),
          "--sync actor needs --runtime actors: the threads runtime has no actor to own the "
          "shared state; choose a lock (std, std-rw, parking, parking-rw, futex, spin)");
  require(workers >= 1 && workers <= 1024,
          "--workers must be in [1, 1024], got " + std::to_string(workers));
  PlannerConfig config = planner;
  config.workers = workers;
  config.validate();
  require(context_tokens >= 0,
          "--context must be >= 0 (0: the model's), got " + std::to_string(context_tokens));
  require(request_timeout.count() > 0, "the request timeout must be positive, got " +
                                           std::to_string(request_timeout.count()) + " ms");
  require(backend.name == "cpu" || backend.name == "sim" || backend.name == "cuda",
          "--backend must be cpu, cuda or sim, got '" + backend.name + "'");
  // Each cuda worker has its own device KV pool: a prefix hit on a block another worker
  // wrote would read memory this worker never filled.
  require(backend.name != "cuda" || workers == 1 || !prefix_cache,
          "--workers " + std::to_string(workers) +
              " with --backend cuda needs --prefix-cache off (each cuda worker has its own "
              "device KV pool, so cached prefixes cannot be shared); or use --workers 1");
  require(backend.threads >= 0,
          "--backend-threads must be >= 0 (0: all cores), got " + std::to_string(backend.threads));
  require(backend.kv_block_tokens >= 1,
          "the KV block size must be at least 1 token, got " +
              std::to_string(backend.kv_block_tokens));
  require(backend.kv_blocks >= 0, "the KV block count must be >= 0 (0: from the byte budget)");
  if (backend.name == "sim") {
    require(std::isfinite(sim_time_scale) && sim_time_scale >= 0,
            "--sim-time-scale must be a number >= 0 (0: no waiting), got " +
                std::to_string(sim_time_scale));
    troupe::sim_profile(sim_profile);  // throws naming the known profiles
  } else {
    require(!model_path.empty(), "--model is required with --backend " + backend.name +
                                     " (only the sim backend runs without a model file)");
  }
}

// ---- the pieces every runtime builds the same way ----------------------------------------

std::shared_ptr<KvPool> make_pipeline_kv_pool(const PipelineParts& parts) {
  if (parts.options.backend.name != "cpu") return nullptr;
  return make_kv_pool(parts.model->desc(), parts.options.backend);
}

std::unique_ptr<Backend> make_pipeline_backend(const PipelineParts& parts, int32_t worker,
                                               const std::shared_ptr<KvPool>& shared_pool) {
  const EngineOptions& options = parts.options;
  BackendOptions backend = options.backend;
  backend.max_batch_tokens = std::max(backend.max_batch_tokens, options.planner.max_batch_tokens);
  std::unique_ptr<Backend> made;
  if (backend.name == "sim") {
    SimProfile profile = sim_profile(options.sim_profile);
    profile.model.n_vocab = parts.model->desc().n_vocab;
    made = std::make_unique<SimBackend>(profile, backend, options.sim_time_scale);
  } else {
    if (backend.name == "cpu") backend.kv_pool = shared_pool;
    made = make_backend(parts.model->desc(), backend);
  }
  if (options.wrap_backend) made = options.wrap_backend(worker, std::move(made));
  if (!made) throw std::invalid_argument("wrap_backend returned no backend");
  return made;
}

PipelineBackends describe_pipeline_backends(std::span<Backend* const> backends,
                                            const EngineOptions& options) {
  Backend& first = *backends.front();
  const KvPool& pool = first.kv();
  PipelineBackends described;
  described.name = first.name();
  described.kv_bytes = pool.bytes();
  if (const auto* sim = dynamic_cast<const SimBackend*>(&first))
    described.kv_bytes = uint64_t(sim->simulated_kv_bytes());
  for (Backend* backend : backends)
    if (const auto use = gpu_memory_in_use(*backend)) described.gpu_bytes += use->backend_bytes;
  // Tokens (blocks x block size) must fit an int32 for the KV-cache core.
  described.kv_config = {
      .num_blocks = int32_t(std::min<int64_t>(pool.n_blocks(), INT32_MAX / pool.block_tokens())),
      .block_size = pool.block_tokens(),
      .prefix_cache = options.prefix_cache};
  return described;
}

ChatTemplate pipeline_chat_template(const PipelineParts& parts) {
  const Vocab& vocab = parts.model->tokenizer().vocab();
  if (parts.options.chat_template.empty())
    return ChatTemplate::detect(vocab.chat_template(), vocab);
  return ChatTemplate::named(parts.options.chat_template, vocab);
}

namespace {

std::unique_ptr<Pipeline> make_pipeline(PipelineParts parts) {
  if (parts.options.runtime == Runtime::Threads) return make_threads_pipeline(std::move(parts));
  return make_actors_pipeline(std::move(parts));
}

constexpr std::string_view kSimOnlyTokens =
    "the sim backend without --model takes prompt tokens only";

// The vocabulary of a sim backend without a model file: <unk>, <s>, </s>, then "▁t<id>".
Tokenizer synthetic_tokenizer(uint32_t n_vocab) {
  VocabSpec spec;
  spec.tokens = {"<unk>", "<s>", "</s>"};
  spec.types = {TokenType::Unknown, TokenType::Control, TokenType::Control};
  spec.tokens.reserve(n_vocab);
  spec.types.reserve(n_vocab);
  for (uint32_t id = 3; id < n_vocab; ++id) {
    spec.tokens.push_back("\u2581t" + std::to_string(id));
    spec.types.push_back(TokenType::Normal);
  }
  return Tokenizer(Vocab::from_spec(std::move(spec)));
}

// One generation's model: the GGUF file, or for sim the profile's shape with the model
// file's tokenizer (n_vocab taken from it) or a synthetic one.
std::unique_ptr<LoadedModel> load_model(const EngineOptions& options, const std::string& path) {
  if (options.backend.name != "sim") return LoadedModel::open(path);
  const SimProfile profile = sim_profile(options.sim_profile);
  ModelDesc desc = sim_model_desc(profile);
  const std::string source = "simulated " + profile.name;
  if (path.empty()) {
    Tokenizer tokenizer = synthetic_tokenizer(desc.n_vocab);
    return std::make_unique<LoadedModel>(source, nullptr, std::move(desc), std::move(tokenizer));
  }
  try {
    auto file = std::make_unique<GgufFile>(GgufFile::open(path));
    Tokenizer tokenizer = Tokenizer::from_gguf(*file);
    desc.n_vocab = uint32_t(tokenizer.vocab().size());
    return std::make_unique<LoadedModel>(source + " (tokenizer of " + path + ")",
                                         std::move(file), std::move(desc),
                                         std::move(tokenizer));
  } catch (const std::exception& error) {
    throw ModelLoadError("cannot load model '" + path + "': " + error.what());
  }
}

EndEvent refusal(ErrorKind error, std::string message, std::string param = {}) {
  EndEvent end;
  end.kind = EndKind::Error;
  end.error = error;
  end.message = std::move(message);
  end.param = std::move(param);
  return end;
}

// Adds the cumulative counters of `from` to `to` (a pipeline's share of the engine's totals).
void add_counters(EngineStats& to, const EngineStats& from) {
  PlannerStats& p = to.planner;
  const PlannerStats& q = from.planner;
  p.submitted += q.submitted;
  p.rejected += q.rejected;
  p.admitted += q.admitted;
  p.preemptions += q.preemptions;
  p.finished += q.finished;
  p.cancelled += q.cancelled;
  p.expired += q.expired;
  p.failed += q.failed;
  p.batches += q.batches;
  p.decode_tokens += q.decode_tokens;
  p.prefill_tokens += q.prefill_tokens;
  p.peak_waiting = std::max(p.peak_waiting, q.peak_waiting);
  to.requests_finished += from.requests_finished;
  to.requests_cancelled += from.requests_cancelled;
  to.requests_failed += from.requests_failed;
  to.prompt_tokens += from.prompt_tokens;
  to.generated_tokens += from.generated_tokens;
  to.cached_tokens += from.cached_tokens;
}

class EngineImpl final : public Engine {
 public:
  explicit EngineImpl(const EngineOptions& options)
      : options_(options), started_(EngineClock::now()) {
    current_ = start_generation(options_.model_path);
    reaper_ = std::thread([this] { reap_retired(); });
  }

  ~EngineImpl() override {
    shutdown(std::chrono::milliseconds(0));
    {
      std::lock_guard lock(reaper_mutex_);
      stopping_ = true;
    }
    reaper_wake_.notify_all();
    reaper_.join();
    std::unique_lock lock(mutex_);
    retiring_.clear();
    current_.reset();
  }

  RequestId submit(GenerateRequest request, std::shared_ptr<ResponseSink> sink) override {
    const RequestId id = next_id_.fetch_add(1, std::memory_order_relaxed);
    if (!request.timeout) request.timeout = options_.request_timeout;
    std::shared_lock lock(mutex_);
    if (draining_) {
      lock.unlock();
      refused_.fetch_add(1, std::memory_order_relaxed);
      sink->on_end(refusal(ErrorKind::Unavailable,
                           "the server is shutting down and takes no new requests"));
      return id;
    }
    if (request.prompt_tokens.empty() && options_.backend.name == "sim" &&
        options_.model_path.empty()) {
      lock.unlock();
      refused_.fetch_add(1, std::memory_order_relaxed);
      sink->on_end(refusal(ErrorKind::InvalidRequest, std::string(kSimOnlyTokens),
                           request.chat ? "messages" : "prompt"));
      return id;
    }
    current_->pipeline->submit(id, std::move(request), std::move(sink));
    return id;
  }

  void cancel(RequestId id) override {
    std::shared_lock lock(mutex_);
    current_->pipeline->cancel(id);
    for (const auto& generation : retiring_) generation->pipeline->cancel(id);
  }

  void reload(const std::string& model_path) override {
    std::lock_guard reloading(reload_mutex_);
    std::string path = model_path;
    if (path.empty()) {
      std::shared_lock lock(mutex_);
      path = current_->path;
    }
    std::shared_ptr<Generation> next = start_generation(path);
    {
      std::unique_lock lock(mutex_);
      if (draining_) throw std::runtime_error("the engine is shut down; reload refused");
      retiring_.push_back(std::move(current_));
      current_ = std::move(next);
    }
    reaper_wake_.notify_all();
  }

  std::shared_ptr<const LoadedModel> model() const override {
    std::shared_lock lock(mutex_);
    return current_->model;
  }

  int32_t context_tokens() const override {
    std::shared_lock lock(mutex_);
    return current_->parts_context;
  }

  std::vector<double> take_step_gaps() override {
    std::shared_lock lock(mutex_);
    return current_->pipeline->take_step_gaps();
  }

  EngineStats stats() const override {
    std::shared_lock lock(mutex_);
    EngineStats stats = current_->pipeline->stats();
    stats.model_generation = current_->model->generation();
    stats.model_source = current_->model->source();
    for (const auto& generation : retiring_) {
      const EngineStats old = generation->pipeline->stats();
      add_counters(stats, old);
      stats.running += old.running;
      stats.waiting += old.waiting;
    }
    {
      std::lock_guard totals(retired_mutex_);
      add_counters(stats, retired_totals_);
    }
    stats.requests_failed += refused_.load(std::memory_order_relaxed);
    stats.uptime_seconds = std::chrono::duration<double>(EngineClock::now() - started_).count();
    stats.draining = draining_;
    return stats;
  }

  int shutdown(std::chrono::milliseconds drain) override {
    {
      std::unique_lock lock(mutex_);
      if (draining_) return 0;
      draining_ = true;
    }
    const auto until = EngineClock::now() + drain;
    while (live_requests() > 0 && EngineClock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    int cancelled = 0;
    {
      std::shared_lock lock(mutex_);
      cancelled += current_->pipeline->cancel_all();
      for (const auto& generation : retiring_) cancelled += generation->pipeline->cancel_all();
    }
    while (live_requests() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return cancelled;
  }

 private:
  struct Generation {
    std::shared_ptr<const LoadedModel> model;
    std::string path;
    int32_t parts_context = 0;
    std::unique_ptr<Pipeline> pipeline;
  };

  std::shared_ptr<Generation> start_generation(const std::string& path) {
    std::unique_ptr<LoadedModel> loaded = load_model(options_, path);
    auto generation = std::make_shared<Generation>();
    {
      std::lock_guard lock(model_state_mutex_);
      if (!model_state_)
        model_state_.emplace(std::move(loaded));
      else
        model_state_->install(std::move(loaded));
      generation->model = model_state_->acquire();
    }
    PipelineParts parts{.model = generation->model, .options = options_};
    parts.options.model_path = path;
    const uint32_t trained = generation->model->desc().n_ctx_train;
    parts.options.context_tokens =
        options_.context_tokens > 0 ? options_.context_tokens : int32_t(trained > 0 ? trained : 4096);
    generation->parts_context = parts.options.context_tokens;
    try {
      pipeline_chat_template(parts);
    } catch (const ChatTemplateError& error) {
      throw std::invalid_argument(std::string("--chat-template: ") + error.what());
    }
    generation->pipeline = make_pipeline(std::move(parts));
    generation->path = path;
    return generation;
  }

  int32_t live_requests() const {
    std::shared_lock lock(mutex_);
    int32_t live = current_->pipeline->live_requests();
    for (const auto& generation : retiring_) live += generation->pipeline->live_requests();
    return live;
  }

  // Destroys retired pipelines once idle, on this thread (never on a pipeline's own).
  void reap_retired() {
    std::unique_lock wait_lock(reaper_mutex_);
    while (!stopping_) {
      reaper_wake_.wait_for(wait_lock, std::chrono::milliseconds(20));
      std::vector<std::shared_ptr<Generation>> idle;
      {
        std::unique_lock lock(mutex_);
        for (auto it = retiring_.begin(); it != retiring_.end();) {
          if ((*it)->pipeline->live_requests() == 0) {
            idle.push_back(std::move(*it));
            it = retiring_.erase(it);
          } else {
            ++it;
          }
        }
        // Counted under the same hold, so stats() never misses nor double counts them.
        std::lock_guard totals(retired_mutex_);
        for (const auto& generation : idle) add_counters(retired_totals_, generation->pipeline->stats());
      }
      wait_lock.unlock();
      idle.clear();
      wait_lock.lock();
    }
  }

  const EngineOptions options_;
  const EngineClock::time_point started_;
  std::atomic<RequestId> next_id_{1};
  std::atomic<uint64_t> refused_{0};  // ended by the engine before reaching a pipeline

  std::mutex reload_mutex_;  // one reload at a time
  std::mutex model_state_mutex_;
  std::optional<ModelState> model_state_;

  mutable std::shared_mutex mutex_;  // current_, retiring_, draining_
  std::shared_ptr<Generation> current_;
  std::vector<std::shared_ptr<Generation>> retiring_;
  bool draining_ = false;

  mutable std::mutex retired_mutex_;
  EngineStats retired_totals_;

  std::mutex reaper_mutex_;
  std::condition_variable reaper_wake_;
  bool stopping_ = false;
  std::thread reaper_;
};

}  // namespace

std::unique_ptr<Engine> make_engine(const EngineOptions& options) {
  EngineOptions resolved = options;
  resolved.backend.name = resolve_backend_name(options.backend.name);
  resolved.validate();
  return std::make_unique<EngineImpl>(resolved);
}

}  // namespace troupe
