// troupe-kernel-bench: single-thread matmul throughput per kernel set (AVX2 vs AVX-512 VNNI,
// interleaved A B A B in one run; medians and spread over rounds), and thread-pool dispatch
// latency. Weights are random, well-formed blocks. Usage: troupe-kernel-bench [rounds]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <vector>

#include "gpu/matmul.hpp"
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

void bench_matmul(const char* label, GgmlType type, int64_t rows, int64_t cols, int rounds) {
  const auto data = random_weights(type, rows, cols);
  const WeightView w{type, data.data(), rows, cols, ggml_row_bytes(type, cols)};
  const double weight_bytes = static_cast<double>(data.size());
  const int64_t max_tokens = 32;
  std::vector<float> x(max_tokens * cols);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (auto& v : x) v = dist(rng);
  std::vector<BlockQ8> xq(max_tokens * cols / 32);
  for (int64_t t = 0; t < max_tokens; ++t) quantize_row_q8(&x[t * cols], &xq[t * cols / 32], cols);
  std::vector<float> out(max_tokens * rows);

  std::vector<KernelIsa> isas{KernelIsa::avx2};
  if (best_supported_isa() >= KernelIsa::avx512) isas.push_back(KernelIsa::avx512);
  std::printf("\n%s: %s %lld rows x %lld cols, %.2f MB of weights, 1 thread (CPU time)\n", label,
              std::string(traits_of(type).name).c_str(), static_cast<long long>(rows),
              static_cast<long long>(cols), weight_bytes / 1e6);
  std::printf("  %-7s %6s %12s %10s %10s %14s %14s\n", "kernels", "tokens", "us/call", "GB/s",
              "GOP/s", "us/token", "spread(us)");
  for (int64_t n_tokens : {1, 8, 32}) {
    std::vector<std::vector<double>> samples(isas.size());
    for (int round = 0; round < rounds; ++round)
      for (size_t i = 0; i < isas.size(); ++i)
        samples[i].push_back(seconds_per_call(
            [&] { matmul_with_isa(isas[i], w, x.data(), xq.data(), n_tokens, out.data(), rows, 0, rows); },
            0.03));
    for (size_t i = 0; i < isas.size(); ++i) {
      const Stats s = stats_of(samples[i]);
      const double ops = 2.0 * static_cast<double>(rows * cols * n_tokens);
      std::printf("  %-7s %6lld %12.1f %10.2f %10.1f %14.2f %6.1f-%-7.1f\n",
                  std::string(to_string(isas[i])).c_str(), static_cast<long long>(n_tokens),
                  s.median * 1e6, weight_bytes / s.median / 1e9, ops / s.median / 1e9,
                  s.median * 1e6 / static_cast<double>(n_tokens), s.low * 1e6, s.high * 1e6);
    }
  }
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
  std::printf("CPU kernels available: %s\n", std::string(to_string(best_supported_isa())).c_str());
  bench_matmul("ffn_up/gate", GgmlType::Q4_1, 1536, 576, rounds);
  bench_matmul("ffn_down", GgmlType::Q4_1, 576, 1536, rounds);
  bench_matmul("output (tied embedding)", GgmlType::Q8_0, 49152, 576, rounds);
  std::printf("\n");
  bench_dispatch(2, rounds);
  return 0;
}
