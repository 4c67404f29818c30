#include "actors/actor_pipeline.hpp"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>

#include "actors/mailbox_meter.hpp"
#include "actors/worker_meter.hpp"
#include "actors/actor_request.hpp"
#include "actors/actor_request_registry.hpp"
#include "actors/actor_scheduler.hpp"
#include "actors/actor_worker.hpp"
#include "actors/shared_kv_cache.hpp"
#include "actors/step_runner.hpp"
#include "gpu/kv_pool.hpp"

namespace troupe {

namespace {

caf::actor_system_config& configure(caf::actor_system_config& config, bool deterministic) {
  if (deterministic) {
    config.set("scheduler.policy", caf::atom("testing"));
    return config;
  }
  // Request actors only: the scheduler and the workers are detached. Polling off, so idle
  // CAF threads take no CPU from the compute pool.
  config.set("scheduler.policy", caf::atom("stealing"));
  config.set("scheduler.max-threads", 2);
  config.set("work-stealing.aggressive-poll-attempts", 0);
  config.set("work-stealing.moderate-poll-attempts", 0);
  return config;
}

class ActorsPipeline final : public ActorPipeline {
 public:
  explicit ActorsPipeline(PipelineParts parts)
      : parts_(std::move(parts)),
        chat_template_(std::make_shared<const ChatTemplate>(pipeline_chat_template(parts_))),
        context_tokens_(parts_.options.context_tokens > 0
                            ? parts_.options.context_tokens
                            : int32_t(parts_.model->desc().n_ctx_train)),
        deterministic_(parts_.options.deterministic) {
    const EngineOptions& options = parts_.options;
    if (options.workers < 1)
      throw std::invalid_argument("workers must be at least 1, got " +
                                  std::to_string(options.workers));
    system_ = std::make_unique<caf::actor_system>(configure(config_, deterministic_));

    std::vector<std::unique_ptr<Backend>> backends;
    const std::shared_ptr<KvPool> shared_pool = make_pipeline_kv_pool(parts_);
    for (int32_t i = 0; i < options.workers; ++i)
      backends.push_back(make_pipeline_backend(parts_, i, shared_pool));
    std::vector<Backend*> views;
    for (const auto& backend : backends) views.push_back(backend.get());
    backends_ = describe_pipeline_backends(views, options);
    kv_ = make_shared_kv_cache(options.sync, backends_.kv_config, system_.get(), options.sharing);

    const Vocab& vocab = parts_.model->tokenizer().vocab();
    // Where cores are to spare, workers poll for their next step; where they are scarce, the
    // scheduler yields its core to the workers it has just sent steps to.
    const bool cores_to_spare =
        int64_t(std::thread::hardware_concurrency()) >= options.workers + 4;
    const auto worker_poll =
        cores_to_spare ? std::chrono::microseconds(200) : std::chrono::microseconds(0);
    for (int32_t i = 0; i < options.workers; ++i) {
      worker_meters_.push_back(std::make_shared<WorkerMeter>());
      workers_.push_back(spawn_worker_actor(
          *system_, {.index = i,
                     .runner = std::make_shared<StepRunner>(std::move(backends[size_t(i)]), vocab),
                     .meter = worker_meters_.back(),
                     .scheduler_meter = meter_,
                     .detached = !deterministic_,
                     .poll_for = worker_poll}));
    }
    scheduler_ = spawn_scheduler_actor(*system_, {.planner = options.planner,
                                                  .kv_cache = kv_.get(),
                                                  .kv_granularity = options.kv_granularity,
                                                  .workers = workers_,
                                                  .meter = meter_,
                                                  .snapshot = snapshot_,
                                                  .detached = !deterministic_,
                                                  .yield_after_dispatch = !cores_to_spare});
  }

  ~ActorsPipeline() override {
    registry_->cancel_all();
    if (deterministic_) {
      run_coordinator();
    } else {
      while (!registry_->wait_empty(EngineClock::now() + std::chrono::seconds(1))) {
      }
    }
    caf::anon_send_exit(scheduler_, caf::exit_reason::user_shutdown);
    for (const caf::actor& worker : workers_)
      caf::anon_send_exit(worker, caf::exit_reason::user_shutdown);
    if (deterministic_) {
      run_coordinator();
    } else {
      caf::scoped_actor self{*system_, /*hide=*/true};
      self->wait_for(scheduler_);
      for (const caf::actor& worker : workers_) self->wait_for(worker);
    }
    scheduler_ = nullptr;
    workers_.clear();
    kv_.reset();
    system_.reset();
  }

  void submit(RequestId id, GenerateRequest request,
              std::shared_ptr<ResponseSink> sink) override {
    if (!request.timeout) request.timeout = parts_.options.request_timeout;
    RequestActorSetup setup{.id = id,
                            .request = std::move(request),
                            .sink = std::move(sink),
                            .model = parts_.model,
                            .chat_template = chat_template_,
                            .context_tokens = context_tokens_,
                            .scheduler = scheduler_,
                            .registry = registry_,
                            .scheduler_meter = meter_};
    registry_->add(id, [&] { return spawn_request_actor(*system_, std::move(setup)); });
  }

  void cancel(RequestId id) override { registry_->cancel(id); }
  int32_t live_requests() const override { return registry_->live(); }
  int cancel_all() override { return registry_->cancel_all(); }

  EngineStats stats() const override {
    EngineStats stats;
    stats.model_generation = parts_.model->generation();
    stats.model_source = parts_.model->source();
    stats.backend = backends_.name;
    stats.planner = snapshot_->planner();
    stats.running = stats.planner.running;
    stats.waiting = stats.planner.waiting;
    stats.kv = kv_->stats();
    stats.kv_bytes = backends_.kv_bytes;
    stats.gpu_memory_bytes = backends_.gpu_bytes;
    registry_->fill(stats);
    stats.sharing.emplace_back("kv_cache", kv_->sharing_stats());
    stats.sharing.emplace_back("scheduler_mailbox", meter_->stats());
    for (const auto& meter : worker_meters_) stats.worker_busy_seconds.push_back(meter->busy_seconds());
    stats.uptime_seconds = std::chrono::duration<double>(EngineClock::now() - started_).count();
    return stats;
  }

  caf::actor_system& system() override { return *system_; }
  const SharedKvCache& kv_cache() const override { return *kv_; }
  caf::actor worker(int32_t index) const override { return workers_.at(size_t(index)); }

  std::vector<double> take_step_gaps() override {
    std::vector<double> gaps;
    for (const auto& meter : worker_meters_) {
      std::vector<double> taken = meter->take_gaps();
      gaps.insert(gaps.end(), taken.begin(), taken.end());
    }
    return gaps;
  }

 private:
  void run_coordinator() {
    auto& coordinator = dynamic_cast<caf::scheduler::test_coordinator&>(system_->scheduler());
    while (coordinator.run() > 0) {
    }
  }

  PipelineParts parts_;
  std::shared_ptr<const ChatTemplate> chat_template_;
  int32_t context_tokens_;
  bool deterministic_;
  EngineClock::time_point started_ = EngineClock::now();
  PipelineBackends backends_;  // fixed once the backends exist

  std::shared_ptr<MailboxMeter> meter_ = std::make_shared<MailboxMeter>();
  std::shared_ptr<SchedulerSnapshot> snapshot_ = std::make_shared<SchedulerSnapshot>();
  std::shared_ptr<RequestRegistry> registry_ = std::make_shared<RequestRegistry>();
  std::vector<std::shared_ptr<WorkerMeter>> worker_meters_;

  caf::actor_system_config config_;
  std::unique_ptr<caf::actor_system> system_;  // outlives kv_ and every actor handle below
  std::unique_ptr<SharedKvCache> kv_;
  std::vector<caf::actor> workers_;
  caf::actor scheduler_;
};

}  // namespace

std::unique_ptr<ActorPipeline> make_actor_pipeline(PipelineParts parts) {
  return std::make_unique<ActorsPipeline>(std::move(parts));
}

std::unique_ptr<Pipeline> make_actors_pipeline(PipelineParts parts) {
  return make_actor_pipeline(std::move(parts));
}

}  // namespace troupe
