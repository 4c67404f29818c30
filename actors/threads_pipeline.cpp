#include "actors/threads_pipeline.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include "actors/request_flow.hpp"
#include "actors/shared_planner_kv.hpp"
#include "actors/step_runner.hpp"
#include "actors/worker_meter.hpp"
#include "gpu/kv_pool.hpp"
#include "locks/parking_condvar.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;

template <class Lock>
using CondvarFor = std::conditional_t<
    std::is_same_v<Lock, ParkingMutex>, ParkingCondvar,
    std::conditional_t<std::is_same_v<Lock, std::mutex>, std::condition_variable,
                       std::condition_variable_any>>;

// Contention of each lock (or family of them) is a LockCounter (locks/counted.hpp): the
// Counted<Lock> figures kept outside the lock, so that std::condition_variable can wait on a
// plain std::mutex.

struct PendingEnd {
  EndKind kind = EndKind::Finished;
  ErrorKind error = ErrorKind::None;
  std::string message;
};

struct Admission {
  EngineClock::time_point at;
  int32_t cached_tokens = 0;
};

template <class Lock>
struct Request {
  RequestId id = 0;
  std::shared_ptr<ResponseSink> sink;
  std::unique_ptr<RequestFlow> flow;       // null when refused at once (see refused)
  std::optional<EndEvent> refused;
  std::optional<SeqSampling> sampling;     // used by the worker running its step

  // Guarded by the planner lock.
  bool admitted = false;
  int32_t preemptions = 0;

  // The token channel, guarded by channel_lock.
  Lock channel_lock;
  std::vector<SampledOutput> tokens;
  std::optional<Admission> admission;
  std::optional<PendingEnd> end;           // the first end decided by the runtime
  bool scheduled = false;                  // queued for delivery
  bool closed = false;                     // ended: the channel takes nothing more

  // Delivery thread only.
  bool done = false;
};

template <class Lock>
class ThreadsPipelineImpl final : public ThreadsPipeline {
  using Req = Request<Lock>;
  using ReqPtr = std::shared_ptr<Req>;

 public:
  explicit ThreadsPipelineImpl(PipelineParts parts)
      : parts_(std::move(parts)),
        options_(parts_.options),
        chat_template_(pipeline_chat_template(parts_)),
        context_tokens_(options_.context_tokens > 0 ? options_.context_tokens
                                                    : int32_t(parts_.model->desc().n_ctx_train)) {
    if (options_.workers < 1) throw std::invalid_argument("--workers must be at least 1");
    const std::shared_ptr<KvPool> pool = make_pipeline_kv_pool(parts_);
    for (int32_t w = 0; w < options_.workers; ++w)
      runners_.push_back(std::make_unique<StepRunner>(make_pipeline_backend(parts_, w, pool),
                                                      parts_.model->tokenizer().vocab()));
    std::vector<Backend*> views;
    for (const auto& runner : runners_) views.push_back(&runner->backend());
    backends_ = describe_pipeline_backends(views, options_);
    cache_ = make_shared_kv_cache(options_.sync, backends_.kv_config, nullptr, options_.sharing);
    planner_kv_ = std::make_unique<SharedPlannerKv>(*cache_, options_.kv_granularity);
    PlannerConfig planner_config = options_.planner;
    planner_config.workers = options_.workers;
    planner_ = std::make_unique<BatchPlanner>(planner_config, *planner_kv_);
    meters_ = std::make_unique<WorkerMeter[]>(size_t(options_.workers));
    alive_workers_ = options_.workers;

    delivery_ = std::thread([this] { deliver_loop(); });
    for (int32_t w = 0; w < options_.workers; ++w)
      workers_.emplace_back([this, w] { work(w); });
  }

  ~ThreadsPipelineImpl() override {
    cancel_all();
    while (live_.load(std::memory_order_acquire) > 0) std::this_thread::sleep_for(1ms);
    {
      auto lock = planner_counter_.acquire(planner_lock_);
      stopping_ = true;
    }
    work_cv_.notify_all();
    for (std::thread& worker : workers_) worker.join();
    {
      auto lock = delivery_counter_.acquire(delivery_lock_);
      delivery_stop_ = true;
    }
    delivery_cv_.notify_all();
    delivery_.join();
  }

  void submit(RequestId id, GenerateRequest request, std::shared_ptr<ResponseSink> sink) override {
    auto req = std::make_shared<Req>();
    req->id = id;
    req->sink = std::move(sink);
    live_.fetch_add(1, std::memory_order_acq_rel);
    auto started = RequestFlow::start(request, parts_.model, chat_template_, context_tokens_);
    if (EndEvent* end = std::get_if<EndEvent>(&started)) return refuse(req, std::move(*end));
    req->flow = std::move(std::get<std::unique_ptr<RequestFlow>>(started));
    const RequestFlow& flow = *req->flow;
    req->sampling.emplace(flow.sampling(), flow.prompt(), flow.ignore_eos());
    SubmitResult submitted;
    {
      auto lock = planner_counter_.acquire(planner_lock_);
      if (alive_workers_ == 0) {
        lock.unlock();
        return refuse(req, error_end(ErrorKind::WorkerFailed,
                                     "every worker of this model has failed; the server "
                                     "needs a restart or a reload"));
      }
      if (stopping_) {
        lock.unlock();
        return refuse(req, error_end(ErrorKind::Unavailable,
                                     "this model generation is shutting down; retry"));
      }
      submitted = planner_->submit({.seq = id,
                                    .prompt = flow.prompt(),
                                    .max_new_tokens = flow.max_new_tokens(),
                                    .priority = request.priority,
                                    .deadline = flow.deadline()});
      if (submitted.ok()) {
        table_.emplace(id, req);
        ++work_epoch_;
      }
    }
    if (submitted.ok()) {
      work_cv_.notify_one();
      return;
    }
    switch (submitted.error) {
      case SubmitError::QueueFull:
        return refuse(req, error_end(ErrorKind::QueueFull, submitted.message));
      case SubmitError::TooLong: {
        EndEvent end = error_end(ErrorKind::InvalidRequest, submitted.message);
        end.param = "max_tokens";
        return refuse(req, std::move(end));
      }
      case SubmitError::DuplicateSequence:
      default:
        return refuse(req, error_end(ErrorKind::Internal, submitted.message));
    }
  }

  void cancel(RequestId id) override {
    ReqPtr req;
    {
      auto lock = planner_counter_.acquire(planner_lock_);
      const auto it = table_.find(id);
      if (it == table_.end()) return;
      req = it->second;
      planner_->cancel(id);
      ++work_epoch_;
    }
    work_cv_.notify_one();
    send_end(req, {EndKind::Cancelled, ErrorKind::None, {}});
  }

  int32_t live_requests() const override { return live_.load(std::memory_order_acquire); }

  int cancel_all() override {
    std::vector<ReqPtr> cancelled;
    {
      auto lock = planner_counter_.acquire(planner_lock_);
      for (const auto& [id, req] : table_) {
        planner_->cancel(id);
        cancelled.push_back(req);
      }
      ++work_epoch_;
    }
    work_cv_.notify_all();
    for (const ReqPtr& req : cancelled) send_end(req, {EndKind::Cancelled, ErrorKind::None, {}});
    return int(cancelled.size());
  }

  EngineStats stats() const override {
    EngineStats stats;
    {
      auto lock = planner_counter_.acquire(planner_lock_);
      stats.planner = planner_->stats();
    }
    stats.model_generation = parts_.model->generation();
    stats.model_source = parts_.model->source();
    stats.backend = backends_.name;
    stats.running = stats.planner.running;
    stats.waiting = stats.planner.waiting;
    stats.kv = cache_->stats();
    stats.kv_bytes = backends_.kv_bytes;
    stats.gpu_memory_bytes = backends_.gpu_bytes;
    stats.requests_finished = finished_.load(std::memory_order_relaxed);
    stats.requests_cancelled = cancelled_.load(std::memory_order_relaxed);
    stats.requests_failed = failed_.load(std::memory_order_relaxed);
    stats.prompt_tokens = prompt_tokens_.load(std::memory_order_relaxed);
    stats.generated_tokens = generated_tokens_.load(std::memory_order_relaxed);
    stats.cached_tokens = cached_tokens_.load(std::memory_order_relaxed);
    stats.sharing = {{"kv_cache", cache_->sharing_stats()},
                     {"planner", to_sharing_stats(planner_counter_.snapshot())},
                     {"request_channels", to_sharing_stats(channel_counter_.snapshot())},
                     {"delivery_queue", to_sharing_stats(delivery_counter_.snapshot())}};
    for (int32_t w = 0; w < options_.workers; ++w)
      stats.worker_busy_seconds.push_back(meters_[size_t(w)].busy_seconds());
    stats.uptime_seconds = std::chrono::duration<double>(EngineClock::now() - created_).count();
    return stats;
  }

  const SharedKvCache& kv_cache() const override { return *cache_; }

  std::vector<double> take_step_gaps() override {
    std::vector<double> all;
    for (int32_t w = 0; w < options_.workers; ++w) {
      const std::vector<double> gaps = meters_[size_t(w)].take_gaps();
      all.insert(all.end(), gaps.begin(), gaps.end());
    }
    return all;
  }

 private:
  static EndEvent error_end(ErrorKind error, std::string message) {
    EndEvent end;
    end.kind = EndKind::Error;
    end.error = error;
    end.message = std::move(message);
    return end;
  }

  // ---- hand-offs to the delivery thread ----

  void refuse(const ReqPtr& req, EndEvent end) {
    req->refused = std::move(end);
    schedule(req);
  }

  // Queues requests for the delivery thread: one hold of its lock and one wake-up for all.
  void schedule(std::span<const ReqPtr> reqs) {
    if (reqs.empty()) return;
    {
      auto lock = delivery_counter_.acquire(delivery_lock_);
      delivery_queue_.insert(delivery_queue_.end(), reqs.begin(), reqs.end());
    }
    delivery_cv_.notify_one();
  }
  void schedule(const ReqPtr& req) { schedule(std::span(&req, 1)); }

  // The first end the runtime decides wins; later ones are dropped.
  void send_end(const ReqPtr& req, PendingEnd end) {
    bool wake = false;
    {
      auto lock = channel_counter_.acquire(req->channel_lock);
      if (req->closed || req->end) return;
      req->end = std::move(end);
      wake = !std::exchange(req->scheduled, true);
    }
    if (wake) schedule(req);
  }

  // Puts a step's output in the request's channel; true when the caller must schedule it
  // (a worker schedules all of a step's requests at once).
  bool send_tokens(const ReqPtr& req, const SampledOutput* outputs, std::size_t count,
                   const std::optional<Admission>& admission, bool planner_ended) {
    auto lock = channel_counter_.acquire(req->channel_lock);
    if (req->closed) return false;
    if (admission) req->admission = admission;
    req->tokens.insert(req->tokens.end(), outputs, outputs + count);
    if (planner_ended && !req->end) req->end = PendingEnd{};
    return !std::exchange(req->scheduled, true);
  }

  // ---- workers ----

  struct StepHandoff {
    ReqPtr req;
    std::optional<Admission> admission;
    std::size_t output = SIZE_MAX;  // index in the step's outputs
    bool ended = false;             // the planner ended it at complete()
  };

  void work(int32_t worker) {
    StepRunner& runner = *runners_[size_t(worker)];
    std::vector<StepHandoff> handoffs, previous;  // this step's requests, the last step's
    std::vector<SeqSampling*> samplers;
    std::vector<std::pair<ReqPtr, PendingEnd>> ends;
    std::vector<ReqPtr> wakes;  // requests to schedule for delivery after a step
    std::optional<StepResult> done_step;
    uint64_t done_batch = 0;
    bool back_to_back = false;
    uint64_t seen_epoch = 0;

    auto lock = planner_counter_.acquire(planner_lock_);
    while (!stopping_) {
      Batch batch;
      try {
        std::vector<EndedSeq> completed;
        planner_kv_->iteration([&] {
          if (done_step) completed = planner_->complete(done_batch, done_step->sampled);
          batch = planner_->plan(worker, EngineClock::now());
        });
        for (const EndedSeq& ended : completed)
          for (StepHandoff& handoff : previous)
            if (handoff.req->id == ended.seq) handoff.ended = true;
      } catch (const std::exception& error) {
        fail_everything(lock, std::string("the batch planner failed: ") + error.what());
        return;
      }
      for (const EndedSeq& ended : batch.ended) note_planner_end(ended, ends);
      handoffs.clear();
      samplers.clear();
      const EngineClock::time_point planned_at = EngineClock::now();
      for (const PlannedStep& step : batch.steps) {
        const auto it = table_.find(step.seq);
        if (it == table_.end()) continue;
        const ReqPtr& req = it->second;
        StepHandoff handoff{.req = req, .admission = {}, .output = SIZE_MAX, .ended = false};
        if (step.prefill) {
          if (!req->admitted) {
            req->admitted = true;
            handoff.admission = Admission{planned_at, step.n_past};
          }
          if (const auto info = planner_->info(step.seq)) req->preemptions = info->preemptions;
        }
        if (step.want_logits) {
          handoff.output = samplers.size();
          samplers.push_back(&*req->sampling);
        }
        if (handoff.admission || step.want_logits) handoffs.push_back(std::move(handoff));
      }
      const bool idle = batch.empty();
      if (idle && previous.empty() && ends.empty()) {
        back_to_back = false;
        done_step.reset();
        work_cv_.wait_for(lock, 50ms, [&] { return stopping_ || work_epoch_ != seen_epoch; });
        seen_epoch = work_epoch_;
        continue;
      }
      lock.unlock();

      // The last step's ends and tokens go to their requests while this step runs, where the
      // backend overlaps host work with its steps (sim), else just before it.
      auto deliver_last_step = [&] {
        for (auto& [req, end] : ends) send_end(req, std::move(end));
        ends.clear();
        for (const StepHandoff& handoff : previous) {
          const bool has_output = handoff.output != SIZE_MAX;
          if (send_tokens(handoff.req, has_output ? &done_step->outputs[handoff.output] : nullptr,
                          has_output ? 1 : 0, handoff.admission, handoff.ended))
            wakes.push_back(handoff.req);
        }
        schedule(wakes);
        wakes.clear();
        previous.clear();
      };
      if (idle) {
        deliver_last_step();
        done_step.reset();
      } else {
        meters_[size_t(worker)].starting(EngineClock::now());
        try {
          done_step = runner.run(batch, samplers, deliver_last_step);
        } catch (const std::exception& error) {
          meters_[size_t(worker)].step_failed();
          lock.lock();
          fail_worker(lock, worker, error.what());
          return;
        }
        meters_[size_t(worker)].step(done_step->started, done_step->backend_ended,
                                     back_to_back);
        back_to_back = true;
        done_batch = batch.id;
        std::swap(previous, handoffs);
      }
      lock.lock();
    }
  }

  // Planner lock held.
  void note_planner_end(const EndedSeq& ended, std::vector<std::pair<ReqPtr, PendingEnd>>& ends) {
    const auto it = table_.find(ended.seq);
    if (it == table_.end()) return;
    PendingEnd end;
    switch (ended.reason) {
      case SeqEnd::Deadline:
        end = {EndKind::Error, ErrorKind::Timeout,
               "the request did not finish before its deadline; raise its timeout or lower "
               "the load"};
        break;
      case SeqEnd::Cancelled:
        end = {EndKind::Cancelled, ErrorKind::None, {}};
        break;
      case SeqEnd::Length:
      case SeqEnd::Stop:
        end = {};
        break;
      case SeqEnd::Failed:
        end = {EndKind::Error, ErrorKind::Internal,
               "the KV cache refused the request's blocks; retry it"};
        break;
    }
    ends.emplace_back(it->second, std::move(end));
  }

  // Planner lock held on entry; released on return. This worker retires.
  void fail_worker(std::unique_lock<Lock>& lock, int32_t worker, const std::string& what) {
    std::vector<std::pair<ReqPtr, PendingEnd>> ends;
    const std::string message = "worker " + std::to_string(worker) + " failed (" + what +
                                "); the request was ended, retry it";
    for (uint64_t id : planner_->fail_worker(worker)) {
      const auto it = table_.find(id);
      if (it != table_.end())
        ends.emplace_back(it->second, PendingEnd{EndKind::Error, ErrorKind::WorkerFailed, message});
    }
    if (--alive_workers_ == 0) {
      for (const auto& [id, req] : table_) {
        planner_->cancel(id);
        ends.emplace_back(req, PendingEnd{EndKind::Error, ErrorKind::WorkerFailed,
                                          "every worker of this model has failed (" + what +
                                              "); the server needs a restart or a reload"});
      }
    }
    ++work_epoch_;
    lock.unlock();
    work_cv_.notify_all();
    for (auto& [req, end] : ends) send_end(req, std::move(end));
  }

  // Planner lock held on entry; released on return. Every worker stops.
  void fail_everything(std::unique_lock<Lock>& lock, const std::string& message) {
    std::vector<ReqPtr> failed;
    for (const auto& [id, req] : table_) failed.push_back(req);
    alive_workers_ = 0;
    stopping_ = true;
    lock.unlock();
    work_cv_.notify_all();
    for (const ReqPtr& req : failed)
      send_end(req, {EndKind::Error, ErrorKind::Internal, message});
  }

  // ---- the request side ----

  void deliver_loop() {
    std::vector<ReqPtr> batch;
    while (true) {
      {
        auto lock = delivery_counter_.acquire(delivery_lock_);
        delivery_cv_.wait(lock, [&] { return !delivery_queue_.empty() || delivery_stop_; });
        if (delivery_queue_.empty()) return;
        batch.assign(std::make_move_iterator(delivery_queue_.begin()),
                     std::make_move_iterator(delivery_queue_.end()));
        delivery_queue_.clear();
      }
      for (const ReqPtr& req : batch) deliver(req);
      batch.clear();
    }
  }

  void deliver(const ReqPtr& req) {
    if (req->done) return;
    if (req->refused) {
      EndEvent end = std::move(*req->refused);
      end.model_generation = parts_.model->generation();
      end.timings.finished = 0;
      req->done = true;
      failed_.fetch_add(1, std::memory_order_relaxed);
      call_end(*req, std::move(end));
      return;
    }
    std::vector<SampledOutput> tokens;
    std::optional<Admission> admission;
    std::optional<PendingEnd> end;
    {
      auto lock = channel_counter_.acquire(req->channel_lock);
      tokens.swap(req->tokens);
      admission = std::exchange(req->admission, std::nullopt);
      end = req->end;
      req->scheduled = false;
    }
    RequestFlow& flow = *req->flow;
    if (admission) flow.on_queued(admission->at, admission->cached_tokens);
    if (end && end->kind != EndKind::Finished) return finalize(req, std::move(*end));
    for (const SampledOutput& token : tokens) {
      RequestFlow::Step step = flow.on_token(token);
      if (step.chunk) call_chunk(*req, std::move(*step.chunk));
      if (step.done) return finalize(req, PendingEnd{});
    }
    if (end) finalize(req, PendingEnd{});  // the planner ended it (length or EOS)
  }

  void finalize(const ReqPtr& req, PendingEnd end) {
    int32_t preemptions = 0;
    bool freed = false;
    {
      auto lock = planner_counter_.acquire(planner_lock_);
      freed = planner_->cancel(req->id);
      table_.erase(req->id);
      preemptions = req->preemptions;
      if (freed) ++work_epoch_;
    }
    if (freed) work_cv_.notify_one();
    {
      auto lock = channel_counter_.acquire(req->channel_lock);
      req->closed = true;
      req->tokens.clear();
    }
    req->done = true;
    auto [last, event] = req->flow->finish(end.kind, EngineClock::now(), end.error,
                                           std::move(end.message));
    if (last) call_chunk(*req, std::move(*last));
    event.preemptions = preemptions;
    switch (event.kind) {
      case EndKind::Finished: finished_.fetch_add(1, std::memory_order_relaxed); break;
      case EndKind::Cancelled: cancelled_.fetch_add(1, std::memory_order_relaxed); break;
      case EndKind::Error: failed_.fetch_add(1, std::memory_order_relaxed); break;
    }
    prompt_tokens_.fetch_add(uint64_t(event.usage.prompt_tokens), std::memory_order_relaxed);
    generated_tokens_.fetch_add(uint64_t(event.usage.completion_tokens),
                                std::memory_order_relaxed);
    cached_tokens_.fetch_add(uint64_t(event.usage.cached_tokens), std::memory_order_relaxed);
    call_end(*req, std::move(event));
  }

  // A sink that throws loses that call only.
  static void call_chunk(Req& req, TextChunk chunk) {
    try {
      req.sink->on_chunk(std::move(chunk));
    } catch (...) {
    }
  }

  void call_end(Req& req, EndEvent end) {
    try {
      req.sink->on_end(std::move(end));
    } catch (...) {
    }
    req.sink.reset();
    live_.fetch_sub(1, std::memory_order_acq_rel);
  }

  const PipelineParts parts_;
  const EngineOptions& options_;
  const ChatTemplate chat_template_;
  const int32_t context_tokens_;
  const EngineClock::time_point created_ = EngineClock::now();
  PipelineBackends backends_;  // fixed once the backends exist

  std::vector<std::unique_ptr<StepRunner>> runners_;
  std::unique_ptr<SharedKvCache> cache_;
  std::unique_ptr<SharedPlannerKv> planner_kv_;

  // Guarded by planner_lock_.
  mutable Lock planner_lock_;
  mutable LockCounter planner_counter_;
  CondvarFor<Lock> work_cv_;
  std::unique_ptr<BatchPlanner> planner_;
  std::unordered_map<RequestId, ReqPtr> table_;
  uint64_t work_epoch_ = 0;
  int32_t alive_workers_ = 0;
  bool stopping_ = false;

  LockCounter channel_counter_;

  Lock delivery_lock_;
  LockCounter delivery_counter_;
  CondvarFor<Lock> delivery_cv_;
  std::deque<ReqPtr> delivery_queue_;
  bool delivery_stop_ = false;

  std::atomic<int32_t> live_{0};
  std::atomic<uint64_t> finished_{0}, cancelled_{0}, failed_{0};
  std::atomic<uint64_t> prompt_tokens_{0}, generated_tokens_{0}, cached_tokens_{0};
  std::unique_ptr<WorkerMeter[]> meters_;  // one per worker; measurement only

  std::thread delivery_;
  std::vector<std::thread> workers_;
};

}  // namespace

std::unique_ptr<ThreadsPipeline> make_threads_pipeline_with(PipelineParts parts) {
  if (parts.options.sync == SyncMode::Actor)
    throw std::invalid_argument(
        "--sync actor needs --runtime actors: the threads runtime has no actor to own the "
        "shared state; choose a lock (std, std-rw, parking, parking-rw, futex, spin)");
  return with_lock_type(parts.options.sync, [&]<class Lock>() -> std::unique_ptr<ThreadsPipeline> {
    return std::make_unique<ThreadsPipelineImpl<Lock>>(std::move(parts));
  });
}

std::unique_ptr<Pipeline> make_threads_pipeline(PipelineParts parts) {
  return make_threads_pipeline_with(std::move(parts));
}

}  // namespace troupe
