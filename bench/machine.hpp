#pragma once
// Facts about the machine and the build that every result file records, so that figures
// from different machines or commits are never compared by accident. Reading them spawns
// `git` once; call from one thread, once per run.

#include <string>

#include <nlohmann/json.hpp>

namespace troupe {

struct MachineFacts {
  std::string cpu_model;      // /proc/cpuinfo "model name", or "unknown"
  unsigned logical_cores = 0; // std::thread::hardware_concurrency()
  std::string git_commit;     // of the source tree this binary was built from, or "unknown"
  std::string build_type;     // CMAKE_BUILD_TYPE
  std::string compiler;
};

MachineFacts collect_machine_facts();
nlohmann::json to_json(const MachineFacts& facts);

}  // namespace troupe
