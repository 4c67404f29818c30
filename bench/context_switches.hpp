#pragma once
// The process's context switches so far, from getrusage(RUSAGE_SELF): the sum over all its
// threads, ended ones included. Voluntary: a thread blocked (a lock, a condition variable, a
// sleep, a mailbox). Involuntary: a thread was preempted, or yielded and another ran. A
// runtime's hand-offs between threads show up here: each wake-up of a sleeping thread is a
// voluntary switch of that thread, each fight for a core an involuntary one.
// Linux; thread-safe (a system call). Counts are cumulative: take differences.

#include <cstdint>
#include <optional>

namespace troupe {

struct ContextSwitches {
  uint64_t voluntary = 0;
  uint64_t involuntary = 0;
};

// nullopt when getrusage fails.
std::optional<ContextSwitches> context_switches();

}  // namespace troupe
