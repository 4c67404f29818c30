// CPU time of a chosen set of threads (the HTTP threads) and of the whole process, read from
// the kernel's per-thread clocks (pthread_getcpuclockid), so /metrics can show what share of
// the process's CPU the HTTP side takes. Units: seconds.
// Thread safety: every member may be called from any thread. A registered thread's time is
// kept at its last reading once it has exited.
#pragma once

#include <mutex>
#include <vector>

#include <pthread.h>
#include <time.h>

namespace troupe {

class ThreadCpuClocks {
 public:
  // Adds the calling thread to the set.
  void add_current_thread();
  // CPU time of the registered threads together.
  double seconds() const;

 private:
  struct Entry {
    clockid_t clock;
    mutable double last_seconds = 0;
  };
  mutable std::mutex mutex_;
  std::vector<Entry> entries_;
};

double process_cpu_seconds();
double current_thread_cpu_seconds();

}  // namespace troupe
