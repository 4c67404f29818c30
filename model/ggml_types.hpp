// Tensor element types as GGUF numbers them (ggml's enum), with their block geometry.
// A quantized row of n elements is n / block_elems blocks of block_bytes each; n must be
// a multiple of block_elems for quantized types. Float types have block_elems == 1.
// Pure data, no state: safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace troupe {

enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15, BF16 = 30,
};

struct GgmlTypeTraits {
  GgmlType type;
  std::string_view name;
  uint32_t block_elems;  // elements per block (1 for float types)
  uint32_t block_bytes;  // bytes per block
  bool quantized;
};

inline constexpr GgmlTypeTraits kGgmlTypes[] = {
    {GgmlType::F32, "F32", 1, 4, false},      {GgmlType::F16, "F16", 1, 2, false},
    {GgmlType::BF16, "BF16", 1, 2, false},    {GgmlType::Q4_0, "Q4_0", 32, 18, true},
    {GgmlType::Q4_1, "Q4_1", 32, 20, true},   {GgmlType::Q5_0, "Q5_0", 32, 22, true},
    {GgmlType::Q5_1, "Q5_1", 32, 24, true},   {GgmlType::Q8_0, "Q8_0", 32, 34, true},
    {GgmlType::Q8_1, "Q8_1", 32, 36, true},   {GgmlType::Q2_K, "Q2_K", 256, 84, true},
    {GgmlType::Q3_K, "Q3_K", 256, 110, true}, {GgmlType::Q4_K, "Q4_K", 256, 144, true},
    {GgmlType::Q5_K, "Q5_K", 256, 176, true}, {GgmlType::Q6_K, "Q6_K", 256, 210, true},
    {GgmlType::Q8_K, "Q8_K", 256, 292, true},
};

// Traits of a type this build can read; nullopt for a number it does not know.
inline std::optional<GgmlTypeTraits> ggml_type_traits(uint32_t type) {
  for (const auto& t : kGgmlTypes)
    if (static_cast<uint32_t>(t.type) == type) return t;
  return std::nullopt;
}

inline const GgmlTypeTraits& traits_of(GgmlType type) {
  for (const auto& t : kGgmlTypes)
    if (t.type == type) return t;
  return kGgmlTypes[0];  // unreachable for a valid enum value
}

// Bytes of a row of n elements; the caller has checked n % block_elems == 0.
inline uint64_t ggml_row_bytes(GgmlType type, uint64_t n) {
  const auto& t = traits_of(type);
  return n / t.block_elems * t.block_bytes;
}

}  // namespace troupe
