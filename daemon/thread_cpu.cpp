#include "daemon/thread_cpu.hpp"

namespace troupe {
namespace {

bool read_clock(clockid_t clock, double& seconds) {
  timespec time{};
  if (clock_gettime(clock, &time) != 0) return false;
  seconds = double(time.tv_sec) + double(time.tv_nsec) * 1e-9;
  return true;
}

}  // namespace

void ThreadCpuClocks::add_current_thread() {
  clockid_t clock{};
  if (pthread_getcpuclockid(pthread_self(), &clock) != 0) return;
  std::lock_guard lock(mutex_);
  entries_.push_back({clock});
}

double ThreadCpuClocks::seconds() const {
  std::lock_guard lock(mutex_);
  double total = 0;
  for (const Entry& entry : entries_) {
    read_clock(entry.clock, entry.last_seconds);
    total += entry.last_seconds;
  }
  return total;
}

double process_cpu_seconds() {
  double seconds = 0;
  read_clock(CLOCK_PROCESS_CPUTIME_ID, seconds);
  return seconds;
}

double current_thread_cpu_seconds() {
  double seconds = 0;
  read_clock(CLOCK_THREAD_CPUTIME_ID, seconds);
  return seconds;
}

}  // namespace troupe
