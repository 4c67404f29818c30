#include "bench/lock_contention.hpp"

#include <algorithm>
#include <chrono>
#include <latch>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#include "locks/concepts.hpp"
#include "locks/counted.hpp"

namespace troupe {
namespace contention_detail {

ReadChooser::ReadChooser(double read_ratio, int thread_index)
    : read_ratio_(read_ratio),
      state_(0x9E3779B97F4A7C15ull * static_cast<std::uint64_t>(thread_index + 1)) {}

ContentionRun drive_threads(
    int threads, double seconds,
    const std::function<std::uint64_t(int, const std::atomic<bool>&)>& body) {
  ContentionRun run;
  run.loops_per_thread.assign(static_cast<std::size_t>(threads), 0);
  std::atomic<bool> running{true};
  std::latch ready(threads);
  std::latch start(1);
  std::vector<std::thread> workers;
  workers.reserve(static_cast<std::size_t>(threads));
  try {
    for (int index = 0; index < threads; ++index) {
      workers.emplace_back([&, index] {
        ready.count_down();
        start.wait();
        run.loops_per_thread[static_cast<std::size_t>(index)] = body(index, running);
      });
    }
  } catch (const std::system_error& error) {
    running.store(false, std::memory_order_relaxed);
    start.count_down();
    for (std::thread& worker : workers) worker.join();
    throw std::runtime_error("cannot start " + std::to_string(threads) +
                             " threads (started " + std::to_string(workers.size()) +
                             "): " + error.what());
  }
  ready.wait();
  const auto started = std::chrono::steady_clock::now();
  start.count_down();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  running.store(false, std::memory_order_relaxed);
  const auto stopped = std::chrono::steady_clock::now();
  for (std::thread& worker : workers) worker.join();
  run.elapsed_seconds = std::chrono::duration<double>(stopped - started).count();
  return run;
}

}  // namespace contention_detail

namespace {

using contention_detail::ReadChooser;
using contention_detail::work_units;

// The lock and the value it guards share a cache line, as a Mutex<f64> does in Rust; the
// alignment keeps neighbouring heap data off that line.
template <class Lock>
struct alignas(128) GuardedValue {
  Lock lock;
  double value = 1.0;
};

template <class Lock>
void read_section(GuardedValue<Lock>& shared, double& carried, int units) {
  if constexpr (SharedLockable<Lock>) {
    shared.lock.lock_shared();
    double seen = shared.value;
    work_units(seen, carried, units);
    shared.lock.unlock_shared();
  } else {
    shared.lock.lock();
    double seen = shared.value;
    work_units(seen, carried, units);
    shared.lock.unlock();
  }
}

template <class Lock>
ContentionRun run_lock_contention(const ContentionConfig& config) {
  auto shared = std::make_unique<GuardedValue<Lock>>();
  ContentionRun run = contention_detail::drive_threads(
      config.threads, config.seconds,
      [&](int thread_index, const std::atomic<bool>& running) -> std::uint64_t {
        ReadChooser reads(config.read_ratio, thread_index);
        double carried = 1.0;
        double local = 1.0;
        std::uint64_t loops = 0;
        while (running.load(std::memory_order_relaxed)) {
          if (reads.next_is_read()) {
            read_section(*shared, carried, config.work_inside);
          } else {
            shared->lock.lock();
            work_units(shared->value, carried, config.work_inside);
            shared->lock.unlock();
          }
          work_units(local, carried, config.work_outside);
          ++loops;
        }
        return loops;
      });
  if constexpr (requires { shared->lock.snapshot(); })
    run.longest_wait_ns = static_cast<double>(shared->lock.snapshot().longest_wait_ns);
  return run;
}

}  // namespace

std::uint64_t ContentionRun::total_loops() const {
  return std::accumulate(loops_per_thread.begin(), loops_per_thread.end(), std::uint64_t{0});
}

double ContentionRun::ops_per_second() const {
  return static_cast<double>(total_loops()) / elapsed_seconds;
}

namespace {

double share_of(std::uint64_t loops, std::uint64_t total_loops, std::size_t threads) {
  if (total_loops == 0) return 0;
  return static_cast<double>(loops) * static_cast<double>(threads) /
         static_cast<double>(total_loops);
}

}  // namespace

double ContentionRun::min_share() const {
  return share_of(*std::min_element(loops_per_thread.begin(), loops_per_thread.end()),
                  total_loops(), loops_per_thread.size());
}

double ContentionRun::max_share() const {
  return share_of(*std::max_element(loops_per_thread.begin(), loops_per_thread.end()),
                  total_loops(), loops_per_thread.size());
}

std::size_t bytes_per_lock(SyncMode mode) {
  if (mode == SyncMode::Actor) return contention_detail::actor_bytes();
  return with_lock_type(mode, []<class Lock>() { return sizeof(Lock); });
}

ContentionRun run_contention(SyncMode mode, const ContentionConfig& config) {
  if (mode == SyncMode::Actor) return contention_detail::run_actor_contention(config);
  return with_lock_type(mode, [&]<class Lock>() {
    ContentionRun run = config.counters ? run_lock_contention<Counted<Lock>>(config)
                                        : run_lock_contention<Lock>(config);
    run.bytes_per_lock = sizeof(Lock);
    return run;
  });
}

}  // namespace troupe
