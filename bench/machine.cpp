#include "bench/machine.hpp"

#include <array>
#include <cstdio>
#include <fstream>
#include <memory>
#include <thread>

#ifndef TROUPE_SOURCE_DIR
#error "bench/CMakeLists.txt defines TROUPE_SOURCE_DIR"
#endif
#ifndef TROUPE_BUILD_TYPE
#define TROUPE_BUILD_TYPE "unknown"
#endif

namespace troupe {
namespace {

std::string trimmed(std::string text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return "";
  const auto last = text.find_last_not_of(" \t\r\n");
  return text.substr(first, last - first + 1);
}

std::string read_cpu_model() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) != 0) continue;
    const auto colon = line.find(':');
    if (colon != std::string::npos) return trimmed(line.substr(colon + 1));
  }
  return "unknown";
}

std::string read_git_commit() {
  const std::string command =
      "git -C '" TROUPE_SOURCE_DIR "' rev-parse --short=12 HEAD 2>/dev/null";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), pclose);
  if (!pipe) return "unknown";
  std::array<char, 128> buffer{};
  std::string output;
  while (std::fgets(buffer.data(), buffer.size(), pipe.get())) output += buffer.data();
  output = trimmed(output);
  return output.empty() ? "unknown" : output;
}

}  // namespace

MachineFacts collect_machine_facts() {
  MachineFacts facts;
  facts.cpu_model = read_cpu_model();
  facts.logical_cores = std::thread::hardware_concurrency();
  facts.git_commit = read_git_commit();
  facts.build_type = TROUPE_BUILD_TYPE;
  facts.compiler = __VERSION__;
  return facts;
}

nlohmann::json to_json(const MachineFacts& facts) {
  return {{"cpu_model", facts.cpu_model},
          {"logical_cores", facts.logical_cores},
          {"git_commit", facts.git_commit},
          {"build_type", facts.build_type},
          {"compiler", facts.compiler}};
}

}  // namespace troupe
