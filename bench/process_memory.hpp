#pragma once
// The process's peak resident set size (VmHWM in /proc/self/status) and its reset (writing
// 5 to /proc/self/clear_refs), so that a run's peak can be told apart from an earlier run's.
// Linux only; both affect and read the whole process: call from the thread that runs the
// measurements, with no other measurement running.

#include <cstdint>
#include <optional>

namespace troupe {

// Bytes; nullopt when /proc/self/status cannot be read.
std::optional<uint64_t> peak_rss_bytes();
// Returns false when the kernel refused (the next peak then includes earlier runs).
bool reset_peak_rss();

}  // namespace troupe
