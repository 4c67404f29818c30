#include "gpu/thread_pool.hpp"

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>

namespace troupe {

namespace {

// Spins until pred() holds or spin_us elapse; true when pred() held.
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
    stopping_ = true;
    busy_workers_.store(static_cast<int>(workers_.size()));
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
  const auto& fn = *job_;
  const int64_t n = n_tasks_;
  for (;;) {
    if (failed_.load(std::memory_order_relaxed)) return;
    const int64_t task = next_task_.fetch_add(1, std::memory_order_relaxed);
    if (task >= n) return;
    try {
      fn(task, thread);
    } catch (...) {
      record_error();
    }
  }
}

void ThreadPool::worker_loop(int thread) {
  uint32_t seen = 0;
  for (;;) {
    const auto changed = [&] { return generation_.load(std::memory_order_acquire) != seen; };
    if (!spin_until(spin_us_, changed)) {
      sleeping_workers_.fetch_add(1);
      while (generation_.load() == seen) generation_.wait(seen);
      sleeping_workers_.fetch_sub(1);
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stopping_) return;
    claim_tasks(thread);
    if (busy_workers_.fetch_sub(1) == 1 && caller_sleeping_.load()) busy_workers_.notify_one();
  }
}

void ThreadPool::run(int64_t n_tasks, FunctionRef<void(int64_t, int)> fn) {
  if (n_tasks <= 0) return;
  std::lock_guard lock(run_mutex_);
  if (workers_.empty() || n_tasks == 1) {
    for (int64_t task = 0; task < n_tasks; ++task) fn(task, 0);
    return;
  }
  job_ = &fn;
  n_tasks_ = n_tasks;
  failed_.store(false, std::memory_order_relaxed);
  next_task_.store(0, std::memory_order_relaxed);
  busy_workers_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  generation_.fetch_add(1);
  if (sleeping_workers_.load() > 0) generation_.notify_all();

  claim_tasks(0);

  const auto done = [&] { return busy_workers_.load(std::memory_order_acquire) == 0; };
  if (!spin_until(spin_us_, done)) {
    caller_sleeping_.store(true);
    for (int busy; (busy = busy_workers_.load()) != 0;) busy_workers_.wait(busy);
    caller_sleeping_.store(false);
  }
  job_ = nullptr;
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
