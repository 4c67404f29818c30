// troupe-planner-probe: what BatchPlanner::complete + plan cost per decode step, the work a
// runtime does between two steps of one worker. W workers x S decoding sequences on a
// KvCacheCore (through CorePlannerKv); each step completes the worker's last batch and plans
// its next one, the workers in turn. After a warm-up that admits and prefills every
// sequence, two contenders, interleaved in blocks of 20 rounds (the first 2 of each block not
// counted): "hot" (the planner's data stays in cache) and "cold"
// (--touch-mb of other memory is read and written before each step, as a runtime's other
// work does between two steps of one worker).
// Prints the median and p90 of each call per contender.
// Usage: troupe-planner-probe [--workers 8] [--seqs 256] [--prompt 512] [--rounds 400]
//                             [--touch-mb 4]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/statistics.hpp"
#include "model/batch_planner.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using namespace troupe;

// Contenders alternate by block of rounds; a block's first rounds settle the caches. At least
// two blocks, so that each contender has samples.
constexpr int kBlockRounds = 20, kSettleRounds = 2, kMinRounds = 2 * kBlockRounds;

struct Options {
  int workers = 8;
  int seqs = 256;
  int prompt = 512;
  int rounds = 400;
  int touch_mb = 4;
};

bool parse(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) return false;
    const int value = std::atoi(argv[++i]);
    if (value < 1) return false;
    if (arg == "--workers") o.workers = value;
    else if (arg == "--seqs") o.seqs = value;
    else if (arg == "--prompt") o.prompt = value;
    else if (arg == "--rounds") o.rounds = value;
    else if (arg == "--touch-mb") o.touch_mb = value;
    else return false;
  }
  return o.seqs >= o.workers && o.rounds >= kMinRounds;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, o)) {
    std::fprintf(stderr,
                 "usage: troupe-planner-probe [--workers 8] [--seqs 256] [--prompt 512] "
                 "[--rounds 400] [--touch-mb 4]\n  (every value a positive integer; seqs >= "
                 "workers; rounds >= %d)\n",
                 kMinRounds);
    return 2;
  }
  const int per_worker = (o.seqs + o.workers - 1) / o.workers;
  PlannerConfig config;
  config.max_batch_tokens = std::max(512, per_worker);
  config.max_seqs = per_worker;
  config.max_queued = o.seqs;
  config.workers = o.workers;
  // Each plan admits about one prompt per worker: a bound on the rounds until all decode.
  const int warm_up_limit = per_worker * (o.prompt / config.max_batch_tokens + 2) + 4;
  const int max_new = warm_up_limit + o.rounds + 8;  // nobody finishes during the run
  const int blocks_per_seq = (o.prompt + max_new) / 16 + 2;
  KvCacheCore core({.num_blocks = blocks_per_seq * o.seqs, .block_size = 16});
  CorePlannerKv kv(core);
  BatchPlanner planner(config, kv);
  const auto now = PlannerClock::now();
  for (int s = 0; s < o.seqs; ++s) {
    SeqRequest request;
    request.seq = uint64_t(s) + 1;
    request.max_new_tokens = max_new;
    for (int i = 0; i < o.prompt; ++i) request.prompt.push_back((s * 131 + i * 7) % 32000);
    if (!planner.submit(std::move(request)).ok()) {
      std::fprintf(stderr, "troupe-planner-probe: submit refused\n");
      return 1;
    }
  }

  std::vector<Batch> batches(size_t(o.workers));
  std::vector<SampledToken> sampled;
  std::vector<uint8_t> other(size_t(o.touch_mb) << 20, 1);
  std::vector<double> complete_us[2], plan_us[2];
  int32_t token = 0;
  // One round: each worker in turn completes its last batch and plans its next; timed when
  // `record` (into the cold or hot samples).
  const auto round = [&](bool cold, bool record) {
    for (int w = 0; w < o.workers; ++w) {
      Batch& batch = batches[size_t(w)];
      sampled.clear();
      for (const PlannedStep& step : batch.steps)
        if (step.want_logits) sampled.push_back({step.seq, ++token % 32000, false});
      if (cold) {
        for (size_t i = 0; i < other.size(); i += 64) other[i] = uint8_t(other[i] + 1);
        asm volatile("" : : "r"(other.data()) : "memory");
      }
      const auto t0 = Clock::now();
      if (batch.id != 0) planner.complete(batch.id, sampled);
      const auto t1 = Clock::now();
      batch = planner.plan(w, now);
      const auto t2 = Clock::now();
      if (!record) continue;
      complete_us[cold].push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      plan_us[cold].push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
    }
  };
  // Warm-up until every sequence is admitted and every batch is decodes alone.
  const auto all_decoding = [&] {
    if (planner.stats().waiting > 0) return false;
    for (const Batch& batch : batches)
      if (batch.prefill_tokens > 0 || batch.empty()) return false;
    return true;
  };
  for (int warm = 0; !all_decoding(); ++warm) {
    if (warm == warm_up_limit) {
      std::fprintf(stderr, "troupe-planner-probe: not every sequence decodes after %d rounds\n",
                   warm);
      return 1;
    }
    round(false, false);
  }
  for (int timed = 0; timed < o.rounds; ++timed)
    round((timed / kBlockRounds) % 2 == 1, timed % kBlockRounds >= kSettleRounds);
  size_t decoding = 0;
  for (const Batch& batch : batches) decoding += batch.steps.size();
  std::printf("planner: %d workers, %zu sequences decoding (prompt %d), %d rounds, cold = %d MiB "
              "touched before each step\n",
              o.workers, decoding, o.prompt, o.rounds, o.touch_mb);
  std::printf("%-6s %14s %14s %14s %14s\n", "", "complete p50", "p90", "plan p50", "p90");
  for (int cold = 0; cold < 2; ++cold) {
    std::printf("%-6s %11.2f us %11.2f us %11.2f us %11.2f us\n", cold ? "cold" : "hot",
                percentile(complete_us[cold], 50), percentile(complete_us[cold], 90),
                percentile(plan_us[cold], 50), percentile(plan_us[cold], 90));
  }
  return 0;
}
