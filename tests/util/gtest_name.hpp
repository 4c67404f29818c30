// gtest_name(text): a value parameter's name as GoogleTest accepts it in a test name
// (letters, digits and '_'): "llama-spm-f32" -> "llama_spm_f32", "parking-rw" -> "parking_rw".
#pragma once

#include <algorithm>
#include <string>
#include <string_view>

namespace troupe::test {

inline std::string gtest_name(std::string_view text) {
  std::string name(text);
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

}  // namespace troupe::test
