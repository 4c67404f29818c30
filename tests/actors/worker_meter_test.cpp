// WorkerMeter: busy time, each step's device work (a step in progress counted up to the reader's
// moment) and the gaps between back-to-back steps; all with explicit times.
#include "actors/worker_meter.hpp"

#include <gtest/gtest.h>

namespace troupe {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

const EngineClock::time_point kT0 = EngineClock::time_point{} + std::chrono::hours(1);

TEST(WorkerMeter, CountsTheStepInProgressUpToTheReadersMoment) {
  WorkerMeter meter;
  EXPECT_DOUBLE_EQ(meter.busy_seconds(kT0), 0.0);
  meter.starting(kT0);
  EXPECT_NEAR(meter.busy_seconds(kT0 + milliseconds(4)), 0.004, 1e-12);
  // The step ends: its device work took 5 ms; nothing is in progress after.
  meter.step(kT0, kT0 + milliseconds(5), false);
  EXPECT_NEAR(meter.busy_seconds(kT0 + milliseconds(50)), 0.005, 1e-12);
  // A step that throws stops counting at once.
  meter.starting(kT0 + milliseconds(10));
  meter.step_failed();
  EXPECT_NEAR(meter.busy_seconds(kT0 + milliseconds(90)), 0.005, 1e-12);
}

TEST(WorkerMeter, RecordsGapsOnlyBetweenBackToBackSteps) {
  WorkerMeter meter;
  EngineClock::time_point t = kT0;
  meter.step(t, t + milliseconds(1), false);  // first: no gap
  t += milliseconds(1) + microseconds(40);
  meter.step(t, t + milliseconds(1), true);  // 40 us after the first
  t += milliseconds(1) + microseconds(900);
  meter.step(t, t + milliseconds(1), false);  // waited for work: none
  t += milliseconds(1) + microseconds(70);
  meter.step(t, t + milliseconds(1), true);
  const std::vector<double> gaps = meter.take_gaps();
  ASSERT_EQ(gaps.size(), 2u);
  EXPECT_NEAR(gaps[0], 40e-6, 1e-12);
  EXPECT_NEAR(gaps[1], 70e-6, 1e-12);
  EXPECT_TRUE(meter.take_gaps().empty());
}

TEST(WorkerMeter, KeepsTheLastGapsOldestFirst) {
  WorkerMeter meter;
  EngineClock::time_point t = kT0;
  meter.step(t, t, false);
  const size_t n = WorkerMeter::kGapSamples + 3;
  for (size_t i = 1; i <= n; ++i) {
    t += microseconds(i);  // gap i us
    meter.step(t, t, true);
  }
  const std::vector<double> gaps = meter.take_gaps();
  ASSERT_EQ(gaps.size(), WorkerMeter::kGapSamples);
  EXPECT_NEAR(gaps.front(), 4e-6, 1e-12);  // gaps 1..3 us were overwritten
  EXPECT_NEAR(gaps.back(), double(n) * 1e-6, 1e-12);
}

}  // namespace
}  // namespace troupe
