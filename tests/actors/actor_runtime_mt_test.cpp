// Runtime `actors` on real threads (detached scheduler and workers, request actors on CAF's
// scheduler): greedy outputs under load equal each sequence run alone, under every sync mode;
// a worker failure (an exception in its step, or its actor killed) reaches the clients of its
// sequences within a second while the other worker keeps serving; shutdown ends what is live.
// The runtime's own thread-safe parts (meters, request registry) are hammered from plain
// threads. Under ThreadSanitizer (TROUPE_TSAN) only those run: TSan cannot see into Debian's
// CAF build and reports its message passing as races (DESIGN.md); the runtime tests run in
// the other builds (ASan included).
#include <caf/all.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <atomic>
#include <functional>
#include <mutex>
#include <thread>
#include <memory>
#include <string>
#include <vector>

#include "actors/mailbox_meter.hpp"
#include "actors/worker_meter.hpp"
#include "actors/actor_pipeline.hpp"
#include "actors/actor_request_registry.hpp"
#include "tests/actors/actor_runtime_support.hpp"
#include "tests/util/gtest_name.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;
using test::RecordingSink;

TEST(ActorRuntimeMeters, MailboxMeterCountsEveryMessageFromConcurrentSenders) {
  MailboxMeter meter;
  constexpr int kSenders = 4, kMessages = 5000;
  std::vector<std::thread> senders;
  std::mutex queue_mutex;
  std::vector<EngineClock::time_point> queue;
  for (int s = 0; s < kSenders; ++s)
    senders.emplace_back([&] {
      for (int i = 0; i < kMessages; ++i) {
        const auto stamp = meter.sent();
        std::lock_guard hold(queue_mutex);
        queue.push_back(stamp);
      }
    });
  int handled = 0;
  while (handled < kSenders * kMessages) {
    std::vector<EngineClock::time_point> taken;
    {
      std::lock_guard hold(queue_mutex);
      taken.swap(queue);
    }
    for (const auto& stamp : taken) meter.handled(stamp);
    handled += int(taken.size());
    if (handled % 1000 == 0) (void)meter.stats();
  }
  for (auto& sender : senders) sender.join();
  const SharingStats stats = meter.stats();
  EXPECT_EQ(stats.calls, uint64_t(kSenders * kMessages));
  EXPECT_GE(stats.mailbox_depth_max, 1u);
  EXPECT_LE(stats.mailbox_depth_max, uint64_t(kSenders * kMessages));
  EXPECT_LE(stats.contended_calls, stats.calls);
  EXPECT_LE(stats.wait_ns_longest, stats.wait_ns_total);
}

TEST(ActorRuntimeMeters, WorkerMeterIsReadWhileTheWorkerRecords) {
  WorkerMeter meter;
  constexpr int kSteps = 5000;  // fewer gaps than the meter keeps: none is overwritten
  static_assert(size_t(kSteps) < WorkerMeter::kGapSamples);
  std::atomic<bool> done{false};
  std::thread worker([&] {
    auto last_return = EngineClock::now();
    for (int i = 0; i < kSteps; ++i) {
      const auto started = last_return + std::chrono::microseconds(10);
      last_return = started + std::chrono::microseconds(100);
      meter.step(started, last_return, /*back_to_back=*/i % 2 == 0);
    }
    done = true;
  });
  std::vector<double> gaps;
  while (!done) {
    (void)meter.busy_seconds();
    for (double gap : meter.take_gaps()) gaps.push_back(gap);
  }
  worker.join();
  for (double gap : meter.take_gaps()) gaps.push_back(gap);
  EXPECT_EQ(gaps.size(), size_t(kSteps / 2 - 1));  // back-to-back steps after the first
  for (double gap : gaps) EXPECT_NEAR(gap, 10e-6, 1e-9);  // from the end of the device work
  EXPECT_NEAR(meter.busy_seconds(), kSteps * 100e-6, 1e-6);
}

TEST(ActorRuntimeMeters, RegistryListsAndForgetsRequestsFromConcurrentThreads) {
  RequestRegistry registry;
  constexpr int kThreads = 4, kEach = 2000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        const RequestId id = RequestId(t * kEach + i + 1);
        registry.add(id, [] { return caf::actor{}; });
        EndEvent end;
        end.kind = i % 2 == 0 ? EndKind::Finished : EndKind::Cancelled;
        end.usage.completion_tokens = 3;
        registry.record_end(end);
        if (i % 7 == 0) (void)registry.live();
        registry.remove(id);
      }
    });
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(registry.live(), 0);
  EXPECT_TRUE(registry.wait_empty(EngineClock::now()));
  EngineStats stats;
  registry.fill(stats);
  EXPECT_EQ(stats.requests_finished, uint64_t(kThreads * kEach / 2));
  EXPECT_EQ(stats.requests_cancelled, uint64_t(kThreads * kEach / 2));
  EXPECT_EQ(stats.generated_tokens, uint64_t(kThreads * kEach * 3));
}

#ifndef TROUPE_TSAN

const test::TinyLoadedModel& tiny() {
  static const test::TinyLoadedModel model;
  return model;
}

std::unique_ptr<ActorPipeline> start(EngineOptions options) {
  return make_actor_pipeline({.model = tiny().model, .options = std::move(options)});
}

std::shared_ptr<RecordingSink> submit(ActorPipeline& pipeline, RequestId id,
                                      std::vector<int32_t> prompt, int32_t max_tokens) {
  auto sink = std::make_shared<RecordingSink>();
  pipeline.submit(id, test::greedy_request(std::move(prompt), max_tokens), sink);
  return sink;
}

void expect_kv_clean(const ActorPipeline& pipeline) {
  const SharedKvCache& kv = pipeline.kv_cache();
  EXPECT_EQ(kv.check(), std::nullopt);
  EXPECT_EQ(kv.stats().in_use_blocks, 0);
  EXPECT_EQ(kv.available_blocks(), kv.num_blocks());
}

class ActorRuntimeSyncTest : public ::testing::TestWithParam<SyncMode> {};

TEST_P(ActorRuntimeSyncTest, GreedyOutputsEqualEachSequenceRunAlone) {
  EngineOptions options = test::tiny_options(GetParam(), 2);
  options.planner.max_seqs = 3;
  auto pipeline = start(options);
  constexpr int kRequests = 8;
  constexpr int32_t kNew = 10;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  for (int i = 0; i < kRequests; ++i) {
    prompts.push_back(test::tiny_prompt(3 + 4 * i, 20 + i));
    sinks.push_back(submit(*pipeline, RequestId(100 + i), prompts.back(), kNew));
  }
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_TRUE(sinks[size_t(i)]->wait_end()) << "request " << i;
    const EndEvent end = sinks[size_t(i)]->end();
    EXPECT_EQ(end.kind, EndKind::Finished) << end.message;
    EXPECT_EQ(sinks[size_t(i)]->ends(), 1);
    EXPECT_EQ(sinks[size_t(i)]->tokens(), test::greedy_alone(*tiny().model, prompts[size_t(i)], kNew))
        << "request " << i;
  }
  const auto deadline = EngineClock::now() + 5s;
  while (pipeline->live_requests() > 0 && EngineClock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  EXPECT_EQ(pipeline->live_requests(), 0);
  const EngineStats stats = pipeline->stats();
  EXPECT_EQ(stats.requests_finished, uint64_t(kRequests));
  EXPECT_EQ(stats.generated_tokens, uint64_t(kRequests * kNew));
  const auto mailbox = std::find_if(stats.sharing.begin(), stats.sharing.end(),
                                    [](const auto& named) { return named.first == "scheduler_mailbox"; });
  ASSERT_NE(mailbox, stats.sharing.end());
  EXPECT_GE(mailbox->second.calls, uint64_t(kRequests));  // a submit from each at least
  // The blocks of the last sequences are freed by the plan that follows their last step.
  while (pipeline->kv_cache().stats().in_use_blocks > 0 && EngineClock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  expect_kv_clean(*pipeline);
}

INSTANTIATE_TEST_SUITE_P(SyncModes, ActorRuntimeSyncTest, ::testing::ValuesIn(all_sync_modes),
                         [](const auto& info) {
                           return test::gtest_name(to_string(info.param));
                         });

// Worker 1 runs slow steps; `fail` makes it fail. Its client must hear within a second,
// while a request on worker 0 finishes. One sequence per worker, and the first one still
// running: the second request can only go to worker 1.
void expect_failure_surfaces(const std::function<void(ActorPipeline&)>& fail,
                             std::shared_ptr<test::StepScript> worker1_script) {
  EngineOptions options = test::tiny_options(SyncMode::Parking, 2);
  options.planner.max_seqs = 1;
  auto trace = std::make_shared<test::StepTrace>();
  auto worker0_script = std::make_shared<test::StepScript>();
  worker0_script->delay = 1ms;
  test::trace_steps(options, trace, {worker0_script, worker1_script});
  auto pipeline = start(options);
  auto on_worker0 = submit(*pipeline, 1, test::tiny_prompt(4, 40), 150);
  auto deadline = EngineClock::now() + 10s;
  while (trace->of(1).empty() && EngineClock::now() < deadline) std::this_thread::sleep_for(1ms);
  auto on_worker1 = submit(*pipeline, 2, test::tiny_prompt(4, 41), 100);
  while (trace->of(2).size() < 2 && EngineClock::now() < deadline) std::this_thread::sleep_for(1ms);
  ASSERT_FALSE(trace->of(2).empty());
  ASSERT_EQ(trace->of(2).front().worker, 1);

  const auto failed = EngineClock::now();
  fail(*pipeline);
  ASSERT_TRUE(on_worker1->wait_end(5s));
  const auto heard = EngineClock::now();
  EXPECT_LT(heard - failed, 1s);
  const EndEvent end = on_worker1->end();
  EXPECT_EQ(end.kind, EndKind::Error);
  EXPECT_EQ(end.error, ErrorKind::WorkerFailed);
  EXPECT_NE(end.message.find("worker 1"), std::string::npos) << end.message;

  ASSERT_TRUE(on_worker0->wait_end(10s));
  EXPECT_EQ(on_worker0->end().kind, EndKind::Finished);
  auto later = submit(*pipeline, 3, test::tiny_prompt(4, 42), 4);
  ASSERT_TRUE(later->wait_end(10s));
  EXPECT_EQ(later->end().kind, EndKind::Finished);
}

TEST(ActorRuntimeFailureTest, ExceptionInAStepReachesTheClientWithinASecond) {
  auto script = std::make_shared<test::StepScript>();
  script->delay = 2ms;
  expect_failure_surfaces([&](ActorPipeline&) { script->fail_from = 0; }, script);
}

TEST(ActorRuntimeFailureTest, KilledWorkerActorReachesTheClientWithinASecond) {
  auto script = std::make_shared<test::StepScript>();
  script->delay = 2ms;
  expect_failure_surfaces(
      [](ActorPipeline& pipeline) {
        caf::anon_send_exit(pipeline.worker(1), caf::exit_reason::kill);
      },
      script);
}

TEST(ActorRuntimeShutdownTest, DestructorEndsEveryLiveRequestOnce) {
  EngineOptions options = test::tiny_options(SyncMode::Actor, 2);
  auto trace = std::make_shared<test::StepTrace>();
  auto slow = std::make_shared<test::StepScript>();
  slow->delay = 1ms;
  test::trace_steps(options, trace, {slow, slow});
  auto pipeline = start(options);
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  for (int i = 0; i < 12; ++i) sinks.push_back(submit(*pipeline, RequestId(i + 1), test::tiny_prompt(6, i), 200));
  const auto deadline = EngineClock::now() + 10s;
  while (trace->size() < 4 && EngineClock::now() < deadline) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(pipeline->live_requests(), 12);
  pipeline.reset();
  for (const auto& sink : sinks) {
    ASSERT_TRUE(sink->ended());
    EXPECT_EQ(sink->ends(), 1);
    EXPECT_EQ(sink->calls_after_end(), 0);
    EXPECT_EQ(sink->end().kind, EndKind::Cancelled);
  }
}

#endif  // TROUPE_TSAN

}  // namespace
}  // namespace troupe
