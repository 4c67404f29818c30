// ApiKeys: the configured API keys and the check of an Authorization header against them
// ("Bearer KEY"). Each comparison takes time independent of where the candidate differs
// (every byte of every key is compared; lengths compared in the same pass), so response
// timing reveals nothing about a key. No keys: every request is accepted.
// Immutable after construction; safe from any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace troupe {

class ApiKeys {
 public:
  explicit ApiKeys(std::vector<std::string> keys = {});
  bool enabled() const { return !keys_.empty(); }
  bool accepts(std::string_view authorization_header) const;

 private:
  std::vector<std::string> keys_;
};

// Equality of a and b in time that depends on their lengths only.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace troupe
