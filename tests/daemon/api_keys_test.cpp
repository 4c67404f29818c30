#include "daemon/api_keys.hpp"

#include <gtest/gtest.h>

namespace troupe {
namespace {

TEST(ApiKeys, AcceptsExactlyTheConfiguredBearerKeys) {
  const ApiKeys keys({"alpha-key", "beta"});
  EXPECT_TRUE(keys.enabled());
  EXPECT_TRUE(keys.accepts("Bearer alpha-key"));
  EXPECT_TRUE(keys.accepts("bearer beta"));
  EXPECT_FALSE(keys.accepts(""));
  EXPECT_FALSE(keys.accepts("alpha-key"));
  EXPECT_FALSE(keys.accepts("Bearer alpha-ke"));
  EXPECT_FALSE(keys.accepts("Bearer alpha-key2"));
  EXPECT_FALSE(keys.accepts("Bearer beta "));
  EXPECT_FALSE(keys.accepts("Basic alpha-key"));
  EXPECT_FALSE(keys.accepts("Bearer "));
}

TEST(ApiKeys, NoKeysAcceptEveryone) {
  const ApiKeys keys;
  EXPECT_FALSE(keys.enabled());
  EXPECT_TRUE(keys.accepts(""));
}

TEST(ApiKeys, ConstantTimeEqualIsEquality) {
  EXPECT_TRUE(constant_time_equal("", ""));
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("abc", "ab"));
  EXPECT_FALSE(constant_time_equal("ab", "abc"));
  EXPECT_FALSE(constant_time_equal(std::string_view("a\0", 2), "a"));
}

}  // namespace
}  // namespace troupe
