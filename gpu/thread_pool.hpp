// A fixed pool of compute threads for the CPU backend.
// - ThreadPool(n): n threads in all; the thread calling run() is thread 0 and works too, so
//   n - 1 threads are started. n == 1 runs everything on the caller.
// - run(n_tasks, fn) calls fn(task, thread) once for every task in [0, n_tasks) and returns
//   when all have run. Tasks are claimed dynamically, so which thread runs a task varies;
//   results must depend only on the task index (use split() for a static partition). The
//   `thread` index (0..size()-1) is stable for the pool's life: use it for per-thread scratch.
// - Cost: no allocation per call. Idle workers spin for `spin_us` microseconds after their
//   last task (so back-to-back dispatches cost about a microsecond), then sleep on a futex
//   (std::atomic::wait) and cost nothing until the next run().
// - Thread safety: run() may be called from any thread; concurrent calls are serialized.
//   fn must not call run() on the same pool. If tasks throw, the remaining tasks are skipped
//   and run() rethrows the first exception once no task is running. At most 2^32 - 1 tasks
//   per call (std::invalid_argument beyond).
// - run() returns as soon as every task has finished: it never waits for a worker that
//   claimed nothing (one descheduled on a busy machine costs nothing).
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "locks/function_ref.hpp"

namespace troupe {

// [begin, end) of part i when [0, n) is cut into `parts` contiguous ranges of nearly equal
// size; with align > 1 every boundary but n is a multiple of align. Deterministic.
struct IndexRange {
  int64_t begin;
  int64_t end;
};
IndexRange split(int64_t n, int64_t parts, int64_t i, int64_t align = 1);

class ThreadPool {
 public:
  static constexpr int kDefaultSpinMicros = 50;

  // Throws std::invalid_argument when n_threads < 1.
  explicit ThreadPool(int n_threads, int spin_us = kDefaultSpinMicros);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void run(int64_t n_tasks, FunctionRef<void(int64_t task, int thread)> fn);

 private:
  void worker_loop(int thread);
  // Claims and runs tasks of the current run() until none is left.
  void claim_tasks(int thread);
  void record_error();

  const int spin_us_;
  std::mutex run_mutex_;
  // Written by run() before it publishes the cursor; read only by a thread that has claimed a
  // task of that run, which run() waits for.
  const FunctionRef<void(int64_t, int)>* job_ = nullptr;
  // (n_tasks << 32) | next task: claiming is a CAS that needs next < n_tasks, so a thread that
  // looked at a finished run can never claim anything of it.
  alignas(64) std::atomic<uint64_t> cursor_{0};
  alignas(64) std::atomic<uint32_t> done_tasks_{0};
  std::atomic<bool> caller_sleeping_{false};
  alignas(64) std::atomic<uint32_t> generation_{0};  // bumped by every run(): wakes workers
  std::atomic<int> sleeping_workers_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> failed_{false};
  std::mutex error_mutex_;
  std::exception_ptr error_;
  std::vector<std::thread> workers_;
};

}  // namespace troupe
