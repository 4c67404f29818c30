#include "tests/util/quantize.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

namespace troupe::test {
namespace {

constexpr std::size_t kBlock = 32;

uint32_t bits_of(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

float float_of(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

template <class T>
void append(std::vector<uint8_t>& out, T value) {
  const std::size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &value, sizeof(T));
}

template <class T>
T load(const uint8_t* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

void quantize_q8_0(const float* x, std::vector<uint8_t>& out) {
  float amax = 0.0f;
  for (std::size_t j = 0; j < kBlock; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  append(out, fp32_to_fp16(d));
  for (std::size_t j = 0; j < kBlock; ++j) append(out, static_cast<int8_t>(std::round(x[j] * id)));
}

void quantize_q4_0(const float* x, std::vector<uint8_t>& out) {
  float amax = 0.0f, signed_max = 0.0f;
  for (std::size_t j = 0; j < kBlock; ++j) {
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      signed_max = x[j];
    }
  }
  const float d = signed_max / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  append(out, fp32_to_fp16(d));
  for (std::size_t j = 0; j < kBlock / 2; ++j) {
    const int lo = std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f)));
    const int hi = std::min(15, static_cast<int>(static_cast<int8_t>(x[j + 16] * id + 8.5f)));
    append(out, static_cast<uint8_t>(lo | (hi << 4)));
  }
}

void quantize_q4_1(const float* x, std::vector<uint8_t>& out) {
  float lowest = FLT_MAX, highest = -FLT_MAX;
  for (std::size_t j = 0; j < kBlock; ++j) {
    lowest = std::min(lowest, x[j]);
    highest = std::max(highest, x[j]);
  }
  const float d = (highest - lowest) / 15.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  append(out, fp32_to_fp16(d));
  append(out, fp32_to_fp16(lowest));
  for (std::size_t j = 0; j < kBlock / 2; ++j) {
    const int lo = std::min(15, static_cast<int>(static_cast<int8_t>((x[j] - lowest) * id + 0.5f)));
    const int hi =
        std::min(15, static_cast<int>(static_cast<int8_t>((x[j + 16] - lowest) * id + 0.5f)));
    append(out, static_cast<uint8_t>(lo | (hi << 4)));
  }
}

const GgmlTypeTraits& supported(GgmlType type) {
  switch (type) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16:
    case GgmlType::Q8_0: case GgmlType::Q4_0: case GgmlType::Q4_1:
      return traits_of(type);
    default:
      throw std::invalid_argument("test quantizer: unsupported type " +
                                  std::string(traits_of(type).name));
  }
}

}  // namespace

uint16_t fp32_to_fp16(float value) {
  const uint32_t x = bits_of(value);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t magnitude = x & 0x7FFFFFFF;
  if (magnitude > 0x7F800000) return sign | 0x7E00;   // NaN
  if (magnitude >= 0x477FF000) return sign | 0x7C00;  // rounds to 65536 or more: inf
  if (magnitude < 0x38800000) {                       // below 2^-14: subnormal half or zero
    if (magnitude < 0x33000000) return sign;          // below 2^-25 (2^-25 itself ties to 0)
    const uint32_t exponent = magnitude >> 23;
    const uint32_t mantissa = (magnitude & 0x7FFFFF) | 0x800000;
    const uint32_t shift = 126 - exponent;
    uint32_t half = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1);
    const uint32_t tie = 1u << (shift - 1);
    if (rest > tie || (rest == tie && (half & 1))) ++half;
    return sign | static_cast<uint16_t>(half);
  }
  uint32_t half = ((((magnitude >> 23) - 127 + 15)) << 10) | ((magnitude & 0x7FFFFF) >> 13);
  const uint32_t rest = magnitude & 0x1FFF;
  if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) ++half;
  return sign | static_cast<uint16_t>(half);
}

float fp16_to_fp32(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1F;
  const uint32_t mantissa = bits & 0x3FF;
  if (exponent == 0x1F) return float_of(sign | 0x7F800000 | (mantissa << 13));
  if (exponent == 0) {
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  return float_of(sign | ((exponent - 15 + 127) << 23) | (mantissa << 13));
}

uint16_t fp32_to_bf16(float value) {
  const uint32_t x = bits_of(value);
  if ((x & 0x7FFFFFFF) > 0x7F800000) return static_cast<uint16_t>((x >> 16) | 0x40);  // quiet NaN
  return static_cast<uint16_t>((x + 0x7FFF + ((x >> 16) & 1)) >> 16);
}

float bf16_to_fp32(uint16_t bits) { return float_of(static_cast<uint32_t>(bits) << 16); }

std::vector<uint8_t> quantize(GgmlType type, std::span<const float> values) {
  const auto& traits = supported(type);
  if (values.size() % traits.block_elems != 0)
    throw std::invalid_argument("test quantizer: " + std::to_string(values.size()) +
                                " values are not a whole number of " +
                                std::string(traits.name) + " blocks");
  std::vector<uint8_t> out;
  out.reserve(values.size() / traits.block_elems * traits.block_bytes);
  for (std::size_t i = 0; i < values.size(); i += traits.block_elems) {
    const float* x = values.data() + i;
    switch (type) {
      case GgmlType::F32: append(out, *x); break;
      case GgmlType::F16: append(out, fp32_to_fp16(*x)); break;
      case GgmlType::BF16: append(out, fp32_to_bf16(*x)); break;
      case GgmlType::Q8_0: quantize_q8_0(x, out); break;
      case GgmlType::Q4_0: quantize_q4_0(x, out); break;
      default: quantize_q4_1(x, out); break;
    }
  }
  return out;
}

std::vector<float> dequantize(GgmlType type, std::span<const uint8_t> bytes) {
  const auto& traits = supported(type);
  if (bytes.size() % traits.block_bytes != 0)
    throw std::invalid_argument("test dequantizer: " + std::to_string(bytes.size()) +
                                " bytes are not a whole number of " +
                                std::string(traits.name) + " blocks");
  std::vector<float> out;
  out.reserve(bytes.size() / traits.block_bytes * traits.block_elems);
  for (std::size_t i = 0; i < bytes.size(); i += traits.block_bytes) {
    const uint8_t* p = bytes.data() + i;
    switch (type) {
      case GgmlType::F32: out.push_back(load<float>(p)); break;
      case GgmlType::F16: out.push_back(fp16_to_fp32(load<uint16_t>(p))); break;
      case GgmlType::BF16: out.push_back(bf16_to_fp32(load<uint16_t>(p))); break;
      case GgmlType::Q8_0: {
        const float d = fp16_to_fp32(load<uint16_t>(p));
        for (std::size_t j = 0; j < kBlock; ++j) out.push_back(d * static_cast<int8_t>(p[2 + j]));
        break;
      }
      case GgmlType::Q4_0: {
        const float d = fp16_to_fp32(load<uint16_t>(p));
        for (std::size_t j = 0; j < kBlock; ++j) {
          const uint8_t packed = p[2 + j % 16];
          const int q = j < 16 ? (packed & 0x0F) : (packed >> 4);
          out.push_back(d * static_cast<float>(q - 8));
        }
        break;
      }
      default: {
        const float d = fp16_to_fp32(load<uint16_t>(p));
        const float m = fp16_to_fp32(load<uint16_t>(p + 2));
        for (std::size_t j = 0; j < kBlock; ++j) {
          const uint8_t packed = p[4 + j % 16];
          const int q = j < 16 ? (packed & 0x0F) : (packed >> 4);
          out.push_back(d * static_cast<float>(q) + m);
        }
        break;
      }
    }
  }
  return out;
}

}  // namespace troupe::test
