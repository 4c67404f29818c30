#pragma once
// Test support for the sharing wrappers: a randomized but reproducible script of KV-cache
// work per thread, grouped in steps (reserves, appends, frees, prefix peeks, a stats read),
// whose final statistics do not depend on how the threads interleave:
// - every prompt starts with a common warm prefix that one sequence, live for the whole run,
//   keeps cached (so threads really share blocks), then continues with tokens only its own
//   thread uses, so prefix hits beyond the warm part come from the thread's own history;
// - the cache is large enough that nothing is ever evicted or refused.
// The expected figures come from running the same scripts one after another on a plain
// KvCacheCore (the wrappers' dependency, tested on its own), never from a wrapper.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <span>
#include <thread>
#include <vector>

#include "actors/shared_kv_cache.hpp"
#include "actors/sharing_granularity.hpp"
#include "model/kv_cache_core.hpp"
#include "model/sampler.hpp"

namespace troupe::test {

inline constexpr int32_t kScriptBlockSize = 4;
inline constexpr int32_t kScriptBlocks = 65536;
inline constexpr uint64_t kWarmSeq = 1;

inline KvCacheConfig script_cache_config() {
  return {.num_blocks = kScriptBlocks, .block_size = kScriptBlockSize, .hasher = nullptr};
}

inline std::vector<int32_t> warm_prefix() { return {1, 2, 3, 4, 5, 6, 7, 8}; }

struct ScriptStep {
  std::vector<uint64_t> reserve_seqs;
  std::vector<std::vector<int32_t>> reserve_prompts;
  std::vector<KvAppend> appends;
  std::vector<uint64_t> frees;
  std::vector<std::vector<int32_t>> peeks;
};

// What one thread saw; equal for equal scripts whatever the interleaving.
struct ScriptOutcome {
  int64_t reserved = 0;
  int64_t cached_tokens = 0;
  int64_t appended = 0;
  int64_t positions = 0;
  int64_t freed = 0;
  int64_t peeked_tokens = 0;
  bool operator==(const ScriptOutcome&) const = default;
};

inline std::vector<ScriptStep> make_script(int thread, int steps, uint64_t seed) {
  SplitMix64 random(seed * 7919 + static_cast<uint64_t>(thread) * 104729 + 1);
  auto below = [&](uint64_t n) { return static_cast<int32_t>(random.next() % n); };
  const int32_t own_tokens = 1000 * (thread + 1);  // this thread's token range
  std::vector<std::vector<int32_t>> system_prompts;
  for (int32_t p = 0; p < 4; ++p) {
    std::vector<int32_t> prompt = warm_prefix();
    for (int32_t i = 0; i < 2 * kScriptBlockSize; ++i) prompt.push_back(own_tokens + 10 * p + i);
    system_prompts.push_back(prompt);
  }
  auto make_prompt = [&] {
    std::vector<int32_t> prompt = system_prompts[static_cast<std::size_t>(below(4))];
    const int32_t user_tokens = 1 + below(10);
    for (int32_t i = 0; i < user_tokens; ++i) prompt.push_back(own_tokens + 100 + below(20));
    return prompt;
  };

  std::vector<uint64_t> live;
  uint64_t next_seq = 1'000'000ull * static_cast<uint64_t>(thread + 1);
  std::vector<ScriptStep> script(static_cast<std::size_t>(steps));
  for (ScriptStep& step : script) {
    const int32_t new_sequences = live.size() < 6 ? below(3) : 0;
    for (int32_t i = 0; i < new_sequences; ++i) {
      step.reserve_seqs.push_back(next_seq);
      step.reserve_prompts.push_back(make_prompt());
      live.push_back(next_seq++);
    }
    for (uint64_t seq : live)
      if (below(5) != 0) step.appends.push_back({seq, own_tokens + 200 + below(30)});
    if (!live.empty() && below(6) == 0) {
      const auto victim = live.begin() + below(live.size());
      step.frees.push_back(*victim);
      live.erase(victim);
    }
    const int32_t peeks = below(3);
    for (int32_t i = 0; i < peeks; ++i) step.peeks.push_back(make_prompt());
  }
  ScriptStep last;  // everything but the warm sequence ends
  last.frees = live;
  script.push_back(last);
  return script;
}

// Runs one step's work through the given calls (the wrapper's or the core's).
template <class Reserve, class Append, class Free, class Peek>
void run_step(const ScriptStep& step, ScriptOutcome& outcome, Reserve reserve, Append append,
              Free free, Peek peek) {
  std::vector<KvReserve> requests;
  for (std::size_t i = 0; i < step.reserve_seqs.size(); ++i)
    requests.push_back({step.reserve_seqs[i], step.reserve_prompts[i]});
  std::vector<KvReserveResult> reserved(requests.size());
  outcome.reserved += reserve(std::span<const KvReserve>(requests), std::span(reserved));
  for (const KvReserveResult& result : reserved) outcome.cached_tokens += result.cached_tokens;

  std::vector<KvAppendResult> appended(step.appends.size());
  outcome.appended += append(std::span<const KvAppend>(step.appends), std::span(appended));
  for (const KvAppendResult& result : appended) outcome.positions += result.position;

  outcome.freed += free(std::span<const uint64_t>(step.frees));

  std::vector<std::span<const int32_t>> prompts(step.peeks.begin(), step.peeks.end());
  std::vector<int32_t> cached(prompts.size());
  peek(std::span<const std::span<const int32_t>>(prompts), std::span(cached));
  for (int32_t tokens : cached) outcome.peeked_tokens += tokens;
}

inline ScriptOutcome run_script(SharedKvCache& cache, KvGranularity granularity,
                                std::span<const ScriptStep> script) {
  ScriptOutcome outcome;
  for (const ScriptStep& step : script) {
    run_step(
        step, outcome,
        [&](auto requests, auto results) { return reserve_step(cache, granularity, requests, results); },
        [&](auto appends, auto results) { return append_step(cache, granularity, appends, results); },
        [&](auto seqs) { return free_step(cache, granularity, seqs); },
        [&](auto prompts, auto cached) { peek_step(cache, granularity, prompts, cached); });
    cache.stats();
  }
  return outcome;
}

inline ScriptOutcome run_script_on_core(KvCacheCore& core, std::span<const ScriptStep> script) {
  ScriptOutcome outcome;
  for (const ScriptStep& step : script)
    run_step(
        step, outcome,
        [&](auto requests, auto results) { return core.reserve(requests, results); },
        [&](auto appends, auto results) { return core.append_slots(appends, results); },
        [&](auto seqs) { return core.free(seqs); },
        [&](auto prompts, auto cached) {
          for (std::size_t i = 0; i < prompts.size(); ++i) cached[i] = core.peek_prefix(prompts[i]);
        });
  return outcome;
}

// The warm sequence: its prompt's full blocks are registered by one append.
template <class Cache>
void start_warm_sequence(Cache& cache) {
  std::vector<int32_t> prompt = warm_prefix();
  prompt.push_back(9);
  cache.reserve(kWarmSeq, prompt);
  cache.append_slot(kWarmSeq, 10);
}

// Final statistics that do not depend on the interleaving (the peak does).
struct FinalStats {
  int32_t free_blocks, in_use_blocks, cached_idle_blocks;
  int64_t sequences;
  uint64_t lookup_tokens, hit_tokens, lookup_blocks, hit_blocks, evictions;
  bool operator==(const FinalStats&) const = default;
};

inline FinalStats final_stats(const KvStats& stats) {
  return {stats.free_blocks,   stats.in_use_blocks, stats.cached_idle_blocks,
          stats.sequences,     stats.lookup_tokens, stats.hit_tokens,
          stats.lookup_blocks, stats.hit_blocks,    stats.evictions};
}

// A meeting point inside the cache: the first hash the cache computes after arm() (so inside
// the lock, or inside the owner actor) waits until `callers` calls are in flight, then keeps
// them waiting `hold` longer, so the others really queue behind it. Calls count themselves
// in flight with a CallInFlight. One meeting at a time per process.
struct MeetingPoint {
  std::atomic<bool> armed{false};
  std::atomic<bool> holder_inside{false};
  std::atomic<int> in_flight{0};
  std::atomic<int> max_in_flight{0};
  std::atomic<int> callers{3};
  std::atomic<int64_t> hold_ms{100};

  void arm(int expected_callers, std::chrono::milliseconds hold) {
    holder_inside = false;
    in_flight = 0;
    max_in_flight = 0;
    callers = expected_callers;
    hold_ms = hold.count();
    armed = true;
  }
  void wait_for_holder() const {
    while (!holder_inside.load()) std::this_thread::yield();
  }
};
inline MeetingPoint meeting;

class CallInFlight {
 public:
  CallInFlight() {
    const int now = meeting.in_flight.fetch_add(1) + 1;
    int seen = meeting.max_in_flight.load();
    while (now > seen && !meeting.max_in_flight.compare_exchange_weak(seen, now)) {
    }
  }
  ~CallInFlight() { meeting.in_flight.fetch_sub(1); }
  CallInFlight(const CallInFlight&) = delete;
  CallInFlight& operator=(const CallInFlight&) = delete;
};

inline uint64_t meeting_hash(uint64_t parent_hash, std::span<const int32_t> tokens) {
  if (meeting.armed.exchange(false)) {
    meeting.holder_inside = true;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (meeting.in_flight.load() < meeting.callers.load() &&
           std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    std::this_thread::sleep_for(std::chrono::milliseconds(meeting.hold_ms.load()));
  }
  uint64_t hash = parent_hash ^ 0x9e3779b97f4a7c15ull;
  for (int32_t token : tokens) hash = (hash ^ static_cast<uint32_t>(token)) * 0x100000001b3ull;
  return hash;
}

inline KvCacheConfig meeting_cache_config() {
  return {.num_blocks = 64, .block_size = kScriptBlockSize, .hasher = meeting_hash};
}

// A prompt with two full blocks before its last one, so reserving it hashes.
inline std::vector<int32_t> hashing_prompt() { return {1, 2, 3, 4, 5, 6, 7, 8, 9}; }

// Three callers meet inside one cache: a holder stays in the core's hash (held for hold) until
// a reader (stats) and a writer (reserve) are in flight too. Returns whether both reserves
// succeeded; the caller checks meeting.max_in_flight and the cache's SharingStats.
inline bool three_callers_meet(SharedKvCache& cache, std::chrono::milliseconds hold) {
  meeting.arm(3, hold);
  std::atomic<int> reserved{0};
  std::thread holder([&] {
    CallInFlight in_flight;
    reserved += cache.reserve(100, hashing_prompt()).ok();
  });
  meeting.wait_for_holder();
  std::thread reader([&] {
    CallInFlight in_flight;
    cache.stats();
  });
  std::thread writer([&] {
    CallInFlight in_flight;
    const std::vector<int32_t> prompt = {42};
    reserved += cache.reserve(101, prompt).ok();
  });
  holder.join();
  reader.join();
  writer.join();
  return reserved.load() == 2;
}

}  // namespace troupe::test
