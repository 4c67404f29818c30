#pragma once
// One run of the kvcache benchmark: the shared state of an inference server under load, with
// no model file. `threads` client threads work on ONE SharedKvCache, made for the run's sync
// mode, in steps of kStepOps operations drawn from the mix:
//   lookup  a prefix peek of a prompt (a shared system prompt plus a user suffix): a read
//   append  one generated token for one of the client's live sequences: a write
//   free    a sequence ends and a new one is admitted in its place (free + reserve): writes
// With granularity `step` each kind of work of a step is one batched call; with `token`,
// one call per operation. Each step also reads the model (acquire) from a SharedModelState
// under the same sync mode, and records usage there when sequences ended. Alongside, a
// metrics reader takes a snapshot of both states every millisecond, and the model is
// reloaded (an in-memory model, installed through the wrapper) once per second, the first
// time at min(0.5 s, seconds / 2).
// Latencies are call round trips, sampled (every 8th call of a kind), per operation kind: a
// lookup's or append's is the call that carried it (a batched call when granularity is step);
// a free's is its free and reserve together.
// Runs are meant to be called one at a time from one thread; each blocks for `seconds`.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "actors/sharing.hpp"
#include "actors/sharing_granularity.hpp"
#include "locks/sync_mode.hpp"
#include "model/kv_cache_core.hpp"

namespace troupe {

// Relative weights of the three operations.
struct KvMix {
  double lookup = 70;
  double append = 25;
  double free = 5;
};

// "lookup:70,append:25,free:5": each kind at most once, absent kinds weigh 0, weights are
// non-negative numbers and not all 0. Throws OptionsError naming --option.
KvMix parse_kv_mix(std::string_view option, std::string_view text);
std::string kv_mix_text(const KvMix& mix);

struct KvWorkloadConfig {
  SyncMode sync = SyncMode::Std;
  KvGranularity granularity = KvGranularity::Step;
  int threads = 1;
  double seconds = 1;
  KvMix mix;
};

inline constexpr int kStepOps = 8;             // operations per client step
inline constexpr int kLiveSequences = 4;       // per client
inline constexpr int kBlockTokens = 16;
inline constexpr int kLatencyStride = 8;       // every 8th call of a kind is timed

struct KvWorkloadRun {
  uint64_t lookups = 0;
  uint64_t appends = 0;
  uint64_t frees = 0;
  uint64_t failed = 0;             // operations the cache refused (none with this sizing)
  double elapsed_seconds = 0;
  std::vector<double> lookup_ns;   // sampled call latencies
  std::vector<double> append_ns;
  std::vector<double> free_ns;
  SharingStats kv_sharing;
  SharingStats model_sharing;
  uint64_t snapshots = 0;          // taken by the metrics reader
  uint64_t reloads = 0;
  KvStats kv_stats;                // at the end
  std::optional<std::string> check_failure;  // KvCacheCore::check() at the end

  uint64_t operations() const { return lookups + appends + frees; }
  double ops_per_second() const;
};

// Throws std::runtime_error when a call fails (an actor owner that does not answer).
KvWorkloadRun run_kv_workload(const KvWorkloadConfig& config);

}  // namespace troupe
