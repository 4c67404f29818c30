#include "daemon/api_keys.hpp"

#include <algorithm>

namespace troupe {

bool constant_time_equal(std::string_view a, std::string_view b) {
  const std::size_t length = std::max(a.size(), b.size());
  unsigned difference = a.size() == b.size() ? 0u : 1u;
  for (std::size_t i = 0; i < length; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    difference |= unsigned(x ^ y);
  }
  // A volatile read keeps the compiler from ending the loop early on a difference.
  volatile unsigned result = difference;
  return result == 0;
}

ApiKeys::ApiKeys(std::vector<std::string> keys) : keys_(std::move(keys)) {}

bool ApiKeys::accepts(std::string_view authorization_header) const {
  if (keys_.empty()) return true;
  constexpr std::string_view scheme = "Bearer ";
  if (authorization_header.size() < scheme.size()) return false;
  std::string_view prefix = authorization_header.substr(0, scheme.size());
  if (!std::equal(prefix.begin(), prefix.end(), scheme.begin(), [](char x, char y) {
        return (x | 0x20) == (y | 0x20);
      }))
    return false;
  const std::string_view candidate = authorization_header.substr(scheme.size());
  bool accepted = false;
  for (const std::string& key : keys_) accepted |= constant_time_equal(candidate, key);
  return accepted;
}

}  // namespace troupe
