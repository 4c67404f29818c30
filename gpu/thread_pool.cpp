#include "gpu/thread_pool.hpp"

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>

namespace troupe {

namespace {

// Spins until pred() holds or spin_us elapse; true when pred() held. (No sched_yield: on a
// loaded machine it hands whole time slices to other processes and costs milliseconds.)
template <class Pred>
bool spin_until(int spin_us, Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_us);
  for (;;) {
    for (int i = 0; i < 32; ++i) {
      if (pred()) return true;
      _mm_pause();
    }
    if (std::chrono::steady_clock::now() >= deadline) return pred();
  }
}

}  // namespace

IndexRange split(int64_t n, int64_t parts, int64_t i, int64_t align) {
  if (parts < 1 || i < 0 || i >= parts || align < 1 || n < 0)
    throw std::invalid_argument("split: needs n >= 0, parts >= 1, 0 <= i < parts, align >= 1");
  const int64_t units = (n + align - 1) / align;
  const int64_t base = units / parts;
  const int64_t extra = units % parts;
  const int64_t begin = i * base + std::min(i, extra);
  const int64_t end = begin + base + (i < extra ? 1 : 0);
  return {std::min(n, begin * align), std::min(n, end * align)};
}

ThreadPool::ThreadPool(int n_threads, int spin_us) : spin_us_(std::max(0, spin_us)) {
  if (n_threads < 1)
    throw std::invalid_argument("thread pool: needs at least 1 thread, got " +
                                std::to_string(n_threads));
  workers_.reserve(static_cast<size_t>(n_threads - 1));
  for (int i = 1; i < n_threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(run_mutex_);
    stopping_.store(true);
    generation_.fetch_add(1);
    generation_.notify_all();
  }
  for (auto& worker : workers_) worker.join();
}

void ThreadPool::record_error() {
  {
    std::lock_guard lock(error_mutex_);
    if (!error_) error_ = std::current_exception();
  }
  failed_.store(true, std::memory_order_relaxed);
}

void ThreadPool::claim_tasks(int thread) {
  uint64_t cursor = cursor_.load(std::memory_order_acquire);
  for (;;) {
    const uint64_t n_tasks = cursor >> 32;
    const uint64_t task = cursor & 0xFFFFFFFFu;
    if (task >= n_tasks) return;
    if (!cursor_.compare_exchange_weak(cursor, cursor + 1, std::memory_order_acq_rel,
                                       std::memory_order_acquire))
      continue;
    if (!failed_.load(std::memory_order_relaxed)) {
      try {
        (*job_)(static_cast<int64_t>(task), thread);
      } catch (...) {
        record_error();
      }
    }
    if (done_tasks_.fetch_add(1) + 1 == n_tasks && caller_sleeping_.load())
      done_tasks_.notify_one();
    cursor = cursor_.load(std::memory_order_acquire);
  }
}

void ThreadPool::worker_loop(int thread) {
  uint32_t seen = 0;  // the value at construction: a worker that starts late still sees every bump
  for (;;) {
    const auto changed = [&] { return generation_.load(std::memory_order_acquire) != seen; };
    if (!spin_until(spin_us_, changed)) {
      sleeping_workers_.fetch_add(1);
      while (generation_.load() == seen) generation_.wait(seen);
      sleeping_workers_.fetch_sub(1);
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stopping_.load()) return;
    claim_tasks(thread);
  }
}

void ThreadPool::run(int64_t n_tasks, FunctionRef<void(int64_t, int)> fn) {
  if (n_tasks <= 0) return;
  if (n_tasks > 0xFFFFFFFFll)
    throw std::invalid_argument("thread pool: at most 4294967295 tasks per run, got " +
                                std::to_string(n_tasks));
  std::lock_guard lock(run_mutex_);
  if (workers_.empty() || n_tasks == 1) {
    for (int64_t task = 0; task < n_tasks; ++task) fn(task, 0);
    return;
  }
  const auto n = static_cast<uint32_t>(n_tasks);
  job_ = &fn;
  failed_.store(false, std::memory_order_relaxed);
  done_tasks_.store(0, std::memory_order_relaxed);
  cursor_.store(static_cast<uint64_t>(n) << 32, std::memory_order_release);
  generation_.fetch_add(1);
  if (sleeping_workers_.load() > 0) generation_.notify_all();

  claim_tasks(0);

  const auto done = [&] { return done_tasks_.load(std::memory_order_acquire) == n; };
  if (!spin_until(spin_us_, done)) {
    caller_sleeping_.store(true);
    for (uint32_t finished; (finished = done_tasks_.load()) != n;) done_tasks_.wait(finished);
    caller_sleeping_.store(false);
  }
  if (failed_.load(std::memory_order_relaxed)) {
    std::exception_ptr error;
    {
      std::lock_guard error_lock(error_mutex_);
      std::swap(error, error_);
    }
    std::rethrow_exception(error);
  }
}

}  // namespace troupe
