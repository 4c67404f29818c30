#pragma once
// cpu_relax() and SpinBackoff: the bounded busy-wait shared by the locks.
//
// SpinBackoff never yields to the scheduler and never sleeps: each step is a run of `pause`
// instructions that doubles up to a cap, and `spin()` returns false once the budget is used
// up, at which point the caller parks (or, for SpinLock, keeps spinning at the capped step).
// The budget is about 2^limit_log2 pauses in total (a few microseconds), far below a time
// slice, so a waiter whose lock holder was preempted gives its core back by sleeping, not by
// calling sched_yield in a loop. Not thread-safe: one instance per waiting call.

#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace troupe {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

class SpinBackoff {
 public:
  // limit_log2: the step that ends the budget; steps pause 1, 2, 4, ... 2^(limit_log2-1) times.
  explicit constexpr SpinBackoff(unsigned limit_log2 = 7) noexcept : limit_log2_(limit_log2) {}

  // Pauses for the current step and moves to the next; false (without pausing) when the budget
  // is spent.
  bool spin() noexcept {
    if (step_ >= limit_log2_) return false;
    for (std::uint32_t i = 0, n = std::uint32_t{1} << step_; i < n; ++i) cpu_relax();
    ++step_;
    return true;
  }

  // Pauses for the current step, growing it up to the cap and never giving up.
  void spin_capped() noexcept {
    for (std::uint32_t i = 0, n = std::uint32_t{1} << step_; i < n; ++i) cpu_relax();
    if (step_ + 1 < limit_log2_) ++step_;
  }

  void reset() noexcept { step_ = 0; }

 private:
  unsigned limit_log2_;
  unsigned step_ = 0;
};

}  // namespace troupe
