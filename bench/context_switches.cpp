#include "bench/context_switches.hpp"

#include <sys/resource.h>

namespace troupe {

std::optional<ContextSwitches> context_switches() {
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return std::nullopt;
  return ContextSwitches{.voluntary = static_cast<uint64_t>(usage.ru_nvcsw),
                         .involuntary = static_cast<uint64_t>(usage.ru_nivcsw)};
}

}  // namespace troupe
