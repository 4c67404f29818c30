// The daemon's metrics and their Prometheus text rendering (text format 0.0.4, every name
// prefixed troupe_). ServerMetrics counts HTTP answers by route and status and keeps the
// latency histograms, computed from each request's EndEvent timings (seconds from arrival):
// queue time, time to first token, inter-token latency, end-to-end latency. render() adds
// the engine's snapshot and the CPU split between HTTP threads and the process.
// Thread safety: every member may be called from any thread (one mutex).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "actors/engine.hpp"

namespace troupe {

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);  // ascending, +Inf implied
  void observe(double value);
  // # HELP, # TYPE and the _bucket / _sum / _count lines.
  void render(std::string& out, std::string_view name, std::string_view help) const;
  uint64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; last: above every bound
  double sum_ = 0;
  uint64_t count_ = 0;
};

struct CpuSplit {
  double http_seconds = 0;     // the HTTP (io) threads
  double process_seconds = 0;  // every thread of the process
};

class ServerMetrics {
 public:
  ServerMetrics();
  // One answered HTTP request; route is one of the known routes or "other".
  void record_response(std::string_view route, int status);
  // A generation's terminal event (any kind); histograms use what happened.
  void record_end(const EndEvent& end);
  void connection_opened();
  void connection_closed();

  // The whole exposition; stats is null while the model is loading.
  std::string render(const EngineStats* stats, const CpuSplit& cpu) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, uint64_t> responses_;
  Histogram queue_time_, first_token_, inter_token_, end_to_end_;
  int64_t connections_open_ = 0;
  uint64_t connections_total_ = 0;
};

}  // namespace troupe
