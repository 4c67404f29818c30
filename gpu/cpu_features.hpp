// Which SIMD kernels this CPU can run, detected once at run time (cpuid via
// __builtin_cpu_supports). The env var TROUPE_CPU_KERNELS=scalar|avx2|avx512 caps the choice
// (for tests and benchmarks); asking for more than the CPU has falls back to what it has.
// Thread-safe: the result is computed once and immutable afterwards.
#pragma once

#include <string_view>

namespace troupe {

enum class KernelIsa { scalar = 0, avx2 = 1, avx512 = 2 };  // avx512 means F+BW+VL+DQ+VNNI

struct CpuFeatures {
  bool avx2 = false;  // AVX2 + FMA + F16C
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512dq = false;
  bool avx512vnni = false;
};

// What the hardware reports, ignoring the env override.
const CpuFeatures& cpu_features();

// The best ISA the hardware supports (no override).
KernelIsa best_supported_isa();

// The ISA kernels use: best_supported_isa() capped by TROUPE_CPU_KERNELS when it is set.
// Throws std::invalid_argument when TROUPE_CPU_KERNELS holds an unknown name.
KernelIsa active_isa();

// Parses "scalar", "avx2" or "avx512"; throws std::invalid_argument naming the valid values.
KernelIsa parse_kernel_isa(std::string_view name);
std::string_view to_string(KernelIsa isa);

}  // namespace troupe
