// troupe-kernel-bench: single-thread matmul throughput per kernel set (AVX2 vs AVX-512 VNNI,
// unpacked vs packed weights, interleaved A B C D in one run; medians and spread over rounds)
// for the SmolLM2-135M shapes at 1..32 tokens, with the weights hot in cache and streamed
// from memory (as in a decode step), decode attention from a KV pool on 2 MiB against 4 KiB
// pages, and thread-pool dispatch latency. Weights are random, well-formed blocks.
// Usage: troupe-kernel-bench [rounds] [shape label filter, e.g. ffn_up, or "attention"]
#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <sys/mman.h>

#include "gpu/attention.hpp"
#include "gpu/kv_pool.hpp"
#include "gpu/matmul.hpp"
#include "gpu/packed_matrix.hpp"
#include "gpu/thread_pool.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using namespace troupe;

std::vector<uint8_t> random_weights(GgmlType type, int64_t rows, int64_t cols) {
  const auto& traits = traits_of(type);
  std::vector<uint8_t> data(rows * ggml_row_bytes(type, cols));
  std::mt19937 rng(42);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  const int64_t n_blocks = rows * cols / traits.block_elems;
  for (int64_t b = 0; b < n_blocks; ++b) {
    uint8_t* blk = data.data() + b * traits.block_bytes;
    const uint16_t d = float_to_fp16(0.01f), m = float_to_fp16(-0.05f);
    std::memcpy(blk, &d, 2);
    if (type == GgmlType::Q4_1) std::memcpy(blk + 2, &m, 2);
  }
  return data;
}

double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double wall_seconds() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

// Seconds per call by `clock` (this thread's CPU time for single-thread kernels, so that other
// processes on a shared machine do not inflate it; wall time for the thread pool): repeats
// fn until at least min_seconds pass.
template <class Fn>
double seconds_per_call(Fn&& fn, double min_seconds, double (*clock)() = thread_cpu_seconds) {
  int64_t reps = 0;
  const double start = clock();
  double elapsed = 0.0;
  do {
    fn();
    ++reps;
    elapsed = clock() - start;
  } while (elapsed < min_seconds);
  return elapsed / static_cast<double>(reps);
}

struct Stats {
  double median, low, high;
};

Stats stats_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

struct Contender {
  KernelIsa isa;
  bool packed;
  std::string name() const { return std::string(to_string(isa)) + (packed ? "/packed" : ""); }
};

// copies > 1: the matrix is stored `copies` times and successive calls use successive copies,
// so that, as in a decode step over all layers, the weights come from memory, not the cache.
void bench_matmul(const char* label, GgmlType type, int64_t rows, int64_t cols, int copies,
                  int rounds) {
  const auto one = random_weights(type, rows, cols);
  std::vector<uint8_t> data(one.size() * static_cast<size_t>(copies));
  std::vector<WeightView> plain, packed_views;
  std::vector<PackedMatrix> packed;
  packed.reserve(static_cast<size_t>(copies));
  for (int c = 0; c < copies; ++c) {
    uint8_t* copy = data.data() + one.size() * static_cast<size_t>(c);
    std::memcpy(copy, one.data(), one.size());
    plain.push_back({type, copy, rows, cols, ggml_row_bytes(type, cols)});
    packed.push_back(pack(plain.back()));
    packed_views.push_back(plain.back());
    packed_views.back().packed = &packed.back();
  }
  const double weight_bytes = static_cast<double>(one.size());
  const std::vector<int64_t> token_counts{1, 4, 8, 16, 32};
  const int64_t max_tokens = token_counts.back();
  std::vector<float> x(max_tokens * cols);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (auto& v : x) v = dist(rng);
  std::vector<BlockQ8> xq(max_tokens * cols / 32);
  for (int64_t t = 0; t < max_tokens; ++t) quantize_row_q8(&x[t * cols], &xq[t * cols / 32], cols);
  std::vector<float> out(max_tokens * rows);

  std::vector<Contender> contenders{{KernelIsa::avx2, false}, {KernelIsa::avx2, true}};
  if (best_supported_isa() >= KernelIsa::avx512) {
    contenders.push_back({KernelIsa::avx512, false});
    contenders.push_back({KernelIsa::avx512, true});
  }
  std::printf("\n%s: %s %lld rows x %lld cols, %.2f MB of weights (packed %.2f MB), %s, 1 thread (CPU time)\n",
              label, std::string(traits_of(type).name).c_str(), static_cast<long long>(rows),
              static_cast<long long>(cols), weight_bytes / 1e6, static_cast<double>(packed[0].bytes()) / 1e6,
              copies > 1 ? ("streamed from memory (" + std::to_string(copies) + " copies)").c_str()
                         : "hot in cache");
  std::printf("  %-14s %6s %12s %10s %10s %12s %16s\n", "kernels", "tokens", "us/call", "GB/s",
              "GOP/s", "us/token", "spread(us/call)");
  // median us/token per (contender, token count), for the summary.
  std::vector<std::vector<double>> per_token(contenders.size());
  for (int64_t n_tokens : token_counts) {
    std::vector<std::vector<double>> samples(contenders.size());
    for (int round = 0; round < rounds; ++round)
      for (size_t i = 0; i < contenders.size(); ++i) {
        const std::vector<WeightView>& views = contenders[i].packed ? packed_views : plain;
        size_t next = 0;
        samples[i].push_back(seconds_per_call(
            [&] {
              matmul_with_isa(contenders[i].isa, views[next], x.data(), xq.data(), n_tokens, out.data(),
                              rows, 0, rows);
              next = (next + 1) % views.size();
            },
            0.03));
      }
    for (size_t i = 0; i < contenders.size(); ++i) {
      const Stats s = stats_of(samples[i]);
      const double ops = 2.0 * static_cast<double>(rows * cols * n_tokens);
      per_token[i].push_back(s.median * 1e6 / static_cast<double>(n_tokens));
      std::printf("  %-14s %6lld %12.1f %10.2f %10.1f %12.2f %8.1f-%-8.1f\n",
                  contenders[i].name().c_str(), static_cast<long long>(n_tokens), s.median * 1e6,
                  weight_bytes / s.median / 1e9, ops / s.median / 1e9, per_token[i].back(),
                  s.low * 1e6, s.high * 1e6);
    }
  }
  std::printf("  per-token cost at 1 token / at N tokens (batching gain), and packed speed-up:\n");
  for (size_t i = 0; i < contenders.size(); ++i) {
    std::printf("  %-14s gain", contenders[i].name().c_str());
    for (size_t n = 1; n < token_counts.size(); ++n)
      std::printf("  %lld:%5.2fx", static_cast<long long>(token_counts[n]), per_token[i][0] / per_token[i][n]);
    if (contenders[i].packed) {
      std::printf("   vs unpacked");
      for (size_t n = 0; n < token_counts.size(); ++n)
        std::printf("  %lld:%5.2fx", static_cast<long long>(token_counts[n]), per_token[i - 1][n] / per_token[i][n]);
    }
    std::printf("\n");
  }
}

// Decode attention (one token, 3 query heads per KV head: SmolLM2's shape) of 8 sequences at
// `context` positions over all 30 layers, from a KV pool on 2 MiB pages (as KvPool maps it)
// against the same values in a pool held to 4 KiB pages (madvise NOHUGEPAGE before the first
// write), interleaved; blocks scattered through a 700-block pool and the caches flushed
// before each pass, as when a step's weights have streamed through them. A third contender
// makes the same calls on the K/V of one sequence and one layer, which stay in cache: the
// part of the time that is not memory.
void bench_attention_pages(int context, int rounds) {
  const KvShape shape{30, 3, 64, 16};
  const int seqs = 8, per_seq = (context + shape.block_tokens - 1) / shape.block_tokens;
  const int64_t n_blocks = 700;
  KvPool huge(shape, n_blocks), small(shape, n_blocks);
  {
    const auto base = reinterpret_cast<uintptr_t>(small.k_rows(0, 0, 0));
    madvise(reinterpret_cast<void*>(base), small.bytes(), MADV_NOHUGEPAGE);
  }
  std::vector<int32_t> blocks(static_cast<size_t>(n_blocks));
  std::iota(blocks.begin(), blocks.end(), 0);
  std::mt19937 rng(1);
  std::shuffle(blocks.begin(), blocks.end(), rng);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> k(3 * 64), v(3 * 64);
  const auto table = [&](int seq) {
    return std::span<const int32_t>(blocks).subspan(size_t(seq * per_seq), size_t(per_seq));
  };
  for (int seq = 0; seq < seqs; ++seq)
    for (int layer = 0; layer < shape.n_layer; ++layer)
      for (int32_t pos = 0; pos < context; ++pos) {
        for (float& x : k) x = dist(rng);
        for (float& x : v) x = dist(rng);
        huge.store(layer, table(seq), pos, k.data(), v.data());
        small.store(layer, table(seq), pos, k.data(), v.data());
      }
  std::vector<float> q(9 * 64, 0.1f), out(9 * 64), scratch(attention_scratch_floats(shape, 3));
  std::vector<uint8_t> flush(64 << 20, 1);
  const auto pass = [&](const KvPool& pool, bool in_cache) {
    uint64_t sum = 0;
    for (size_t i = 0; i < flush.size(); i += 64) sum += flush[i];
    asm volatile("" : : "r"(sum));
    const double start = thread_cpu_seconds();
    for (int layer = 0; layer < shape.n_layer; ++layer)
      for (int seq = 0; seq < seqs; ++seq)
        for (int head = 0; head < 3; ++head)
          attend(pool, in_cache ? 0 : layer, head, table(in_cache ? 0 : seq), context - 1, 1, 3,
                 q.data() + head * 192, 9 * 64, 0.125f, out.data() + head * 192, scratch.data());
    return thread_cpu_seconds() - start;
  };
  std::vector<double> huge_s, small_s, cached_s;
  for (int round = 0; round < rounds; ++round) {
    huge_s.push_back(pass(huge, false));
    small_s.push_back(pass(small, false));
    cached_s.push_back(pass(huge, true));
  }
  const Stats h = stats_of(huge_s), l = stats_of(small_s), c = stats_of(cached_s);
  std::printf("decode attention, 8 seqs x 30 layers at %d positions: 2 MiB pages %.3f ms (%.3f-%.3f), "
              "4 KiB pages %.3f ms (%.3f-%.3f): %.2fx; K/V in cache %.3f ms (%.3f-%.3f): %.0f%% of "
              "2 MiB pages\n",
              context, h.median * 1e3, h.low * 1e3, h.high * 1e3, l.median * 1e3, l.low * 1e3,
              l.high * 1e3, l.median / h.median, c.median * 1e3, c.low * 1e3, c.high * 1e3,
              100.0 * c.median / h.median);
}

void bench_dispatch(int threads, int rounds) {
  ThreadPool pool(threads);
  std::vector<double> samples;
  for (int round = 0; round < rounds; ++round)
    samples.push_back(
        seconds_per_call([&] { pool.run(threads, [](int64_t, int) {}); }, 0.02, wall_seconds));
  const Stats s = stats_of(samples);
  std::printf("thread pool, %d threads: run() of %d empty tasks: median %.2f us (%.2f-%.2f)\n",
              threads, threads, s.median * 1e6, s.low * 1e6, s.high * 1e6);
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
  const std::string only = argc > 2 ? argv[2] : "";
  std::printf("CPU kernels available: %s\n", std::string(to_string(best_supported_isa())).c_str());
  struct Shape {
    const char* label;
    GgmlType type;
    int64_t rows, cols;
  };
  // Streamed runs cycle through about 128 MB of copies (more than the last-level cache);
  // matrices of 8 MB or more run streamed only.
  constexpr double kStreamBytes = 128e6;
  for (const Shape& s : {Shape{"ffn_up/gate", GgmlType::Q4_1, 1536, 576},
                         Shape{"ffn_down", GgmlType::Q4_1, 576, 1536},
                         Shape{"attn_q/attn_output", GgmlType::Q4_1, 576, 576},
                         Shape{"output (tied embedding)", GgmlType::Q8_0, 49152, 576}}) {
    if (!only.empty() && std::string(s.label).find(only) == std::string::npos) continue;
    const double bytes = static_cast<double>(s.rows * ggml_row_bytes(s.type, s.cols));
    if (bytes < 8e6) bench_matmul(s.label, s.type, s.rows, s.cols, 1, rounds);
    bench_matmul(s.label, s.type, s.rows, s.cols, static_cast<int>(std::ceil(kStreamBytes / bytes)), rounds);
  }
  if (only.empty() || only == "attention") {
    std::printf("\n");
    for (int context : {80, 200}) bench_attention_pages(context, std::max(rounds, 9));
  }
  if (only.empty()) {
    bench_dispatch(2, rounds);
  }
  return 0;
}
