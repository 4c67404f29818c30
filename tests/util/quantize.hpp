// Reference quantizers for test data: float arrays to the bytes ggml stores for F32, F16,
// BF16 (round to nearest even), Q8_0, Q4_0 and Q4_1 (ggml's reference rounding: the scale is
// computed in float, stored as fp16, and the quants use the unrounded float scale), and
// back. Test utilities, independent of the kernels under test. Pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "model/ggml_types.hpp"

namespace troupe::test {

uint16_t fp32_to_fp16(float value);
float fp16_to_fp32(uint16_t bits);
uint16_t fp32_to_bf16(float value);
float bf16_to_fp32(uint16_t bits);

// values.size() must be a multiple of the type's block size; other types or sizes throw
// std::invalid_argument.
std::vector<uint8_t> quantize(GgmlType type, std::span<const float> values);
std::vector<float> dequantize(GgmlType type, std::span<const uint8_t> bytes);

}  // namespace troupe::test
