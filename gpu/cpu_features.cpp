#include "gpu/cpu_features.hpp"

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace troupe {

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = [] {
    CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    f.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    f.avx512f = __builtin_cpu_supports("avx512f");
    f.avx512bw = __builtin_cpu_supports("avx512bw");
    f.avx512vl = __builtin_cpu_supports("avx512vl");
    f.avx512dq = __builtin_cpu_supports("avx512dq");
    f.avx512vnni = __builtin_cpu_supports("avx512vnni");
#endif
    return f;
  }();
  return features;
}

KernelIsa best_supported_isa() {
  const CpuFeatures& f = cpu_features();
  if (f.avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512vnni)
    return KernelIsa::avx512;
  if (f.avx2) return KernelIsa::avx2;
  return KernelIsa::scalar;
}

KernelIsa parse_kernel_isa(std::string_view name) {
  if (name == "scalar") return KernelIsa::scalar;
  if (name == "avx2") return KernelIsa::avx2;
  if (name == "avx512") return KernelIsa::avx512;
  throw std::invalid_argument("unknown CPU kernel set '" + std::string(name) +
                              "' (TROUPE_CPU_KERNELS must be scalar, avx2 or avx512)");
}

std::string_view to_string(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::scalar: return "scalar";
    case KernelIsa::avx2: return "avx2";
    case KernelIsa::avx512: return "avx512";
  }
  return "scalar";
}

KernelIsa active_isa() {
  const KernelIsa best = best_supported_isa();
  const char* env = std::getenv("TROUPE_CPU_KERNELS");
  if (env == nullptr || *env == '\0') return best;
  const KernelIsa wanted = parse_kernel_isa(env);
  return wanted < best ? wanted : best;
}

}  // namespace troupe
