#include "bench/kvcache_workload.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <latch>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include "actors/options.hpp"
#include "actors/shared_kv_cache.hpp"
#include "actors/shared_model_state.hpp"
#include "actors/sharing_actor_system.hpp"
#include "model/model_state.hpp"
#include "model/vocab.hpp"

namespace troupe {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kSystemPrompts = 8;
constexpr int kSystemPromptTokens = 4 * kBlockTokens;
constexpr int kMaxUserTokens = 32;
constexpr std::size_t kReservoirSize = 4096;
constexpr auto kSnapshotInterval = std::chrono::milliseconds(1);
constexpr auto kReloadInterval = std::chrono::seconds(1);

class Xorshift {
 public:
  explicit Xorshift(uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    return state_;
  }
  uint64_t below(uint64_t n) { return next() % n; }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t state_;
};

// Times every kLatencyStride-th call and keeps a uniform sample of at most kReservoirSize.
class LatencySampler {
 public:
  template <class F>
  void call(F&& f, Xorshift& random) {
    if (++calls_ % kLatencyStride != 0) return f();
    const auto start = Clock::now();
    f();
    add(std::chrono::duration<double, std::nano>(Clock::now() - start).count(), random);
  }
  std::vector<double>& samples() { return samples_; }

 private:
  void add(double nanoseconds, Xorshift& random) {
    ++timed_;
    if (samples_.size() < kReservoirSize) return samples_.push_back(nanoseconds);
    const uint64_t slot = random.below(timed_);
    if (slot < kReservoirSize) samples_[slot] = nanoseconds;
  }

  uint64_t calls_ = 0;
  uint64_t timed_ = 0;
  std::vector<double> samples_;
};

std::vector<std::vector<int32_t>> make_system_prompts() {
  std::vector<std::vector<int32_t>> prompts(kSystemPrompts);
  for (int p = 0; p < kSystemPrompts; ++p)
    for (int i = 0; i < kSystemPromptTokens; ++i) prompts[p].push_back(1000 * (p + 1) + i);
  return prompts;
}

// A model with a five-token vocabulary and no tensors: what a reload swaps in, built in
// memory so the bench needs no model file.
std::unique_ptr<LoadedModel> make_synthetic_model() {
  VocabSpec spec;
  spec.kind = VocabKind::Llama;
  spec.tokens = {"<unk>", "<s>", "</s>", "\xe2\x96\x81" "a", "\xe2\x96\x81" "b"};
  spec.types = {TokenType::Unknown, TokenType::Control, TokenType::Control, TokenType::Normal,
                TokenType::Normal};
  spec.unk_id = 0;
  spec.bos_id = 1;
  spec.eos_id = 2;
  ModelDesc desc;
  desc.architecture = "llama";
  desc.n_vocab = static_cast<uint32_t>(spec.tokens.size());
  desc.n_ctx_train = 4096;
  return std::make_unique<LoadedModel>("synthetic in-memory model", nullptr, std::move(desc),
                                       Tokenizer(Vocab::from_spec(std::move(spec))));
}

struct ClientTally {
  uint64_t lookups = 0;
  uint64_t appends = 0;
  uint64_t frees = 0;
  uint64_t failed = 0;
  LatencySampler lookup;
  LatencySampler append;
  LatencySampler free;
};

// One client thread's sequences and buffers; step() does one step of the mix.
class Client {
 public:
  Client(int index, const KvWorkloadConfig& config, SharedKvCache& cache,
         SharedModelState& model, const std::vector<std::vector<int32_t>>& system_prompts)
      : config_(config),
        cache_(cache),
        model_(model),
        system_prompts_(system_prompts),
        random_(static_cast<uint64_t>(index) + 1),
        next_seq_((static_cast<uint64_t>(index) + 1) << 32),
        prompts_(kStepOps),
        prompt_views_(kStepOps),
        cached_(kStepOps),
        appends_(kStepOps),
        append_results_(kStepOps),
        retired_(kStepOps),
        admitted_(kStepOps),
        reserve_results_(kStepOps) {
    const double total = config.mix.lookup + config.mix.append + config.mix.free;
    lookup_below_ = config.mix.lookup / total;
    append_below_ = (config.mix.lookup + config.mix.append) / total;
  }

  // Admits the first sequences, before the clock starts.
  void start() {
    for (int i = 0; i < kLiveSequences; ++i) {
      fill_prompt(prompts_[0]);
      const uint64_t seq = next_seq_++;
      if (!cache_.reserve(seq, prompts_[0]).ok()) ++tally_.failed;
      live_.push_back({seq, static_cast<int32_t>(prompts_[0].size()), 0});
    }
  }

  void step() {
    const ModelHandle model = model_.acquire();
    int lookups = 0, appends = 0, frees = 0;
    for (int i = 0; i < kStepOps; ++i) {
      const double draw = random_.uniform();
      if (draw < lookup_below_)
        ++lookups;
      else if (draw < append_below_)
        ++appends;
      else
        ++frees;
    }
    frees = std::min(frees, kLiveSequences);
    if (lookups > 0) look_up(lookups);
    if (appends > 0) append(appends);
    if (frees > 0) retire_and_admit(frees, model->generation());
  }

  ClientTally& tally() { return tally_; }

 private:
  struct Live {
    uint64_t seq;
    int32_t prompt_tokens;
    int32_t generated_tokens;
  };

  bool per_token() const { return config_.granularity == KvGranularity::Token; }

  void fill_prompt(std::vector<int32_t>& prompt) {
    const auto& system = system_prompts_[random_.below(system_prompts_.size())];
    prompt.assign(system.begin(), system.end());
    const auto user_tokens = 1 + random_.below(kMaxUserTokens);
    for (uint64_t i = 0; i < user_tokens; ++i)
      prompt.push_back(100'000 + static_cast<int32_t>(random_.below(50'000)));
  }

  void look_up(int count) {
    for (int i = 0; i < count; ++i) {
      fill_prompt(prompts_[i]);
      prompt_views_[i] = prompts_[i];
    }
    if (per_token()) {
      for (int i = 0; i < count; ++i)
        tally_.lookup.call([&] { cached_[i] = cache_.peek_prefix(prompt_views_[i]); }, random_);
    } else {
      tally_.lookup.call(
          [&] {
            cache_.peek_prefixes(std::span(prompt_views_.data(), count),
                                 std::span(cached_.data(), count));
          },
          random_);
    }
    tally_.lookups += static_cast<uint64_t>(count);
  }

  void append(int count) {
    for (int i = 0; i < count; ++i) {
      Live& target = live_[next_append_++ % live_.size()];
      appends_[i] = {target.seq, 100'000 + static_cast<int32_t>(random_.below(50'000))};
      ++target.generated_tokens;
    }
    int64_t succeeded = 0;
    if (per_token()) {
      for (int i = 0; i < count; ++i)
        tally_.append.call(
            [&] { succeeded += cache_.append_slot(appends_[i].seq, appends_[i].token).ok(); },
            random_);
    } else {
      tally_.append.call(
          [&] {
            succeeded = cache_.append_slots(std::span(appends_.data(), count),
                                            std::span(append_results_.data(), count));
          },
          random_);
    }
    tally_.appends += static_cast<uint64_t>(count);
    tally_.failed += static_cast<uint64_t>(count - succeeded);
  }

  // Each free ends the oldest-served live sequence and admits a new one in its place.
  void retire_and_admit(int count, uint64_t generation) {
    ModelCounters usage;
    for (int i = 0; i < count; ++i) {
      Live& slot = live_[next_retire_++ % live_.size()];
      retired_[i] = slot.seq;
      usage.requests += 1;
      usage.prompt_tokens += static_cast<uint64_t>(slot.prompt_tokens);
      usage.generated_tokens += static_cast<uint64_t>(slot.generated_tokens);
      fill_prompt(prompts_[i]);
      slot = {next_seq_++, static_cast<int32_t>(prompts_[i].size()), 0};
      admitted_[i] = {slot.seq, prompts_[i]};
    }
    int64_t admitted = 0;
    if (per_token()) {
      for (int i = 0; i < count; ++i)
        tally_.free.call(
            [&] {
              cache_.free(retired_[i]);
              admitted += cache_.reserve(admitted_[i].seq, admitted_[i].prompt).ok();
            },
            random_);
    } else {
      tally_.free.call(
          [&] {
            cache_.free(std::span(retired_.data(), count));
            admitted = cache_.reserve(std::span(admitted_.data(), count),
                                      std::span(reserve_results_.data(), count));
          },
          random_);
    }
    model_.record_usage(generation, usage);
    tally_.frees += static_cast<uint64_t>(count);
    tally_.failed += static_cast<uint64_t>(count - admitted);
  }

  const KvWorkloadConfig& config_;
  SharedKvCache& cache_;
  SharedModelState& model_;
  const std::vector<std::vector<int32_t>>& system_prompts_;
  Xorshift random_;
  double lookup_below_ = 0;
  double append_below_ = 0;
  uint64_t next_seq_;
  std::vector<Live> live_;
  std::size_t next_append_ = 0;
  std::size_t next_retire_ = 0;
  std::vector<std::vector<int32_t>> prompts_;
  std::vector<std::span<const int32_t>> prompt_views_;
  std::vector<int32_t> cached_;
  std::vector<KvAppend> appends_;
  std::vector<KvAppendResult> append_results_;
  std::vector<uint64_t> retired_;
  std::vector<KvReserve> admitted_;
  std::vector<KvReserveResult> reserve_results_;
  ClientTally tally_;
};

// Enough blocks for every live sequence's prompt and generated tokens several times over,
// so no operation is refused; released blocks stay cached for prefix hits until evicted.
int32_t cache_blocks(int threads) {
  return std::max(2048, threads * kLiveSequences * 24) + kSystemPrompts * 4;
}

// Collects the first failure of any thread; the run stops at it.
class FirstFailure {
 public:
  void record(const char* what) {
    std::lock_guard hold(mutex_);
    if (message_.empty()) message_ = what;
  }
  void throw_if_any() const {
    if (!message_.empty()) throw std::runtime_error("kvcache run failed: " + message_);
  }

 private:
  std::mutex mutex_;
  std::string message_;
};

}  // namespace

KvMix parse_kv_mix(std::string_view option, std::string_view text) {
  struct Weight {
    std::string kind;
    double value;
    bool operator==(const Weight& other) const { return kind == other.kind; }
  };
  const std::vector<Weight> weights =
      parse_list<Weight>(option, text, [](std::string_view element) {
        const std::size_t colon = element.find(':');
        if (colon == std::string_view::npos)
          throw std::invalid_argument("expected KIND:WEIGHT (kinds: lookup, append, free)");
        std::string kind(element.substr(0, colon));
        if (kind != "lookup" && kind != "append" && kind != "free")
          throw std::invalid_argument("unknown kind '" + kind + "' (use lookup, append, free)");
        const std::string number(element.substr(colon + 1));
        std::size_t used = 0;
        double value = -1;
        try {
          value = std::stod(number, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used == 0 || used != number.size() || !std::isfinite(value) || value < 0)
          throw std::invalid_argument("the weight must be a non-negative number");
        return Weight{std::move(kind), value};
      });
  KvMix mix{0, 0, 0};
  for (const Weight& weight : weights)
    (weight.kind == "lookup" ? mix.lookup : weight.kind == "append" ? mix.append : mix.free) =
        weight.value;
  if (mix.lookup + mix.append + mix.free <= 0)
    throw OptionsError("--" + std::string(option) + ": '" + std::string(text) +
                       "': the weights add up to 0; give at least one kind a positive weight");
  return mix;
}

std::string kv_mix_text(const KvMix& mix) {
  return fmt::format("lookup:{:g},append:{:g},free:{:g}", mix.lookup, mix.append, mix.free);
}

double KvWorkloadRun::ops_per_second() const {
  return elapsed_seconds > 0 ? static_cast<double>(operations()) / elapsed_seconds : 0.0;
}

KvWorkloadRun run_kv_workload(const KvWorkloadConfig& config) {
  std::unique_ptr<SharingActorSystem> actors;
  if (config.sync == SyncMode::Actor) actors = std::make_unique<SharingActorSystem>();
  caf::actor_system* system = actors ? &actors->system() : nullptr;

  const auto cache = make_shared_kv_cache(
      config.sync, {.num_blocks = cache_blocks(config.threads), .block_size = kBlockTokens,
                    .hasher = nullptr},
      system);
  const auto model = make_shared_model_state(config.sync, ModelState(make_synthetic_model()),
                                             system);
  const auto system_prompts = make_system_prompts();

  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < config.threads; ++i)
    clients.push_back(std::make_unique<Client>(i, config, *cache, *model, system_prompts));

  FirstFailure failure;
  std::atomic<bool> running{true};
  std::atomic<bool> go{false};
  std::latch ready(config.threads + 1);
  std::atomic<uint64_t> snapshots{0};
  auto guarded = [&](auto&& body) {
    try {
      body();
    } catch (const std::exception& error) {
      failure.record(error.what());
      running = false;
    }
  };

  std::vector<std::thread> threads;
  for (auto& client : clients)
    threads.emplace_back([&, client = client.get()] {
      guarded([&] { client->start(); });
      ready.count_down();
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      guarded([&] {
        while (running.load(std::memory_order_relaxed)) client->step();
      });
    });
  threads.emplace_back([&] {
    ready.count_down();
    while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
    guarded([&] {
      while (running.load(std::memory_order_relaxed)) {
        cache->stats();
        cache->sharing_stats();
        model->snapshot();
        model->sharing_stats();
        snapshots.fetch_add(1, std::memory_order_relaxed);
        std::this_thread::sleep_for(kSnapshotInterval);
      }
    });
  });

  KvWorkloadRun run;
  ready.wait();
  const auto duration = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(config.seconds));
  const auto start = Clock::now();
  const auto end = start + duration;
  go.store(true, std::memory_order_release);
  auto next_reload =
      start + std::min<Clock::duration>(std::chrono::milliseconds(500), duration / 2);
  guarded([&] {
    while (running.load() && Clock::now() < end) {
      std::this_thread::sleep_until(std::min(next_reload, end));
      if (Clock::now() >= next_reload && Clock::now() < end && running.load()) {
        model->install(make_synthetic_model());
        ++run.reloads;
        next_reload += kReloadInterval;
      }
    }
  });
  running = false;
  run.elapsed_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (std::thread& thread : threads) thread.join();
  failure.throw_if_any();

  for (auto& client : clients) {
    ClientTally& tally = client->tally();
    run.lookups += tally.lookups;
    run.appends += tally.appends;
    run.frees += tally.frees;
    run.failed += tally.failed;
    auto append_samples = [](std::vector<double>& to, std::vector<double>& from) {
      to.insert(to.end(), from.begin(), from.end());
    };
    append_samples(run.lookup_ns, tally.lookup.samples());
    append_samples(run.append_ns, tally.append.samples());
    append_samples(run.free_ns, tally.free.samples());
  }
  run.kv_sharing = cache->sharing_stats();
  run.model_sharing = model->sharing_stats();
  run.snapshots = snapshots.load();
  run.kv_stats = cache->stats();
  run.check_failure = cache->check();
  return run;
}

}  // namespace troupe
