// The serve workload on the threads runtime, built for ThreadSanitizer (this is a
// *_mt_test): the end events of concurrent requests arrive on the runtime's threads while
// the bench thread waits for them and reads the engine's stats.
#include "bench/serve_workload.hpp"

#include <gtest/gtest.h>

namespace troupe {
namespace {

TEST(ServeThreads, EveryRequestEndsOnceWithItsTokens) {
  for (SyncMode sync : {SyncMode::Std, SyncMode::Parking, SyncMode::Spin}) {
    EngineOptions options;
    options.runtime = Runtime::Threads;
    options.sync = sync;
    options.backend.name = "sim";
    options.sim_time_scale = 0.01;
    options.workers = 3;
    options.request_timeout = std::chrono::seconds(60);
    const ServeWorkload workload{.batch_size = 9, .n_prompt = 20, .n_gen = 6, .seed = 3};
    const ServeRun run = run_serve_workload(options, workload);
    ASSERT_EQ(run.requests.size(), 9u) << to_string(sync);
    for (const RequestTimes& request : run.requests) {
      EXPECT_EQ(request.completion_tokens, 6);
      EXPECT_EQ(request.token_times.size(), 6u);
    }
    EXPECT_NEAR(run.output_tok_per_s * run.wall_seconds, 54, 1e-6);
    EXPECT_GT(run.worker_utilization, 0);
  }
}

}  // namespace
}  // namespace troupe
