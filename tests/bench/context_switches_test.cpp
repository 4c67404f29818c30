// context_switches(): the process's voluntary and involuntary switches from getrusage, every
// thread's included (ended ones too).
#include "bench/context_switches.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace troupe {
namespace {

TEST(ContextSwitches, ASleepingThreadAddsVoluntarySwitches) {
  const std::optional<ContextSwitches> before = context_switches();
  ASSERT_TRUE(before.has_value());
  // Each sleep blocks its thread: at least one voluntary switch apiece, counted after the
  // thread has ended.
  std::thread sleeper([] {
    for (int i = 0; i < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  sleeper.join();
  const std::optional<ContextSwitches> after = context_switches();
  ASSERT_TRUE(after.has_value());
  EXPECT_GE(after->voluntary, before->voluntary + 3);
  EXPECT_GE(after->involuntary, before->involuntary);  // cumulative: never goes back
}

}  // namespace
}  // namespace troupe
