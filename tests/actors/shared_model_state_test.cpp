// SharedModelState's own behaviour on top of ModelState: reload failures name the generation
// that stays, and a replaced model is released outside the lock or the owning actor.

#include "actors/shared_model_state.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "actors/sharing_actor_system.hpp"
#include "tests/util/scratch_file.hpp"
#include "tests/util/tiny_model.hpp"

namespace troupe {
namespace {

class SharedModelStateTest : public ::testing::TestWithParam<SyncMode> {
 protected:
  std::unique_ptr<SharedModelState> make_state(ModelState state) {
    return make_shared_model_state(GetParam(), std::move(state), &actors.system());
  }

  SharingActorSystem actors;
  const test::ScratchFile file{test::tiny_model_bytes(test::TinyModelSpec{})};
};

TEST_P(SharedModelStateTest, AFailedReloadNamesTheGenerationThatStays) {
  const auto state = make_state(ModelState::open(file.path()));
  state->reload(file.path());
  try {
    state->reload("/nonexistent/next.gguf");
    FAIL() << "reload succeeded";
  } catch (const ModelLoadError& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("cannot load model '/nonexistent/next.gguf'"), std::string::npos)
        << message;
    EXPECT_NE(message.find("generation 2 ('" + file.path() + "') stays in service"),
              std::string::npos)
        << message;
  }
  EXPECT_EQ(state->snapshot().generation, 2u);
  EXPECT_EQ(state->mode(), GetParam());
}

// The runtime of a replaced model reads the state from its destructor, on another thread:
// that only finishes in time when the release happens after the lock (or the owner's
// handler) has let go.
struct ProbingRuntime : ModelRuntime {
  explicit ProbingRuntime(SharedModelState*& state, bool& readable)
      : state(state), readable(readable) {}
  ~ProbingRuntime() override {
    if (!state) return;
    // Detached: when the read is blocked, the destructor must still return to let it go.
    auto done = std::make_shared<std::promise<void>>();
    std::future<void> read = done->get_future();
    std::thread([shared = state, done] {
      shared->snapshot();
      done->set_value();
    }).detach();
    readable = read.wait_for(std::chrono::seconds(2)) == std::future_status::ready;
  }
  SharedModelState*& state;
  bool& readable;
};

TEST_P(SharedModelStateTest, AReplacedModelIsReleasedOutsideTheSharing) {
  SharedModelState* shared = nullptr;
  bool readable = false;
  ModelStateOptions options;
  options.runtime_factory = [&](const LoadedModel&) {
    return std::make_unique<ProbingRuntime>(shared, readable);
  };
  const auto state = make_state(ModelState::open(file.path(), options));
  shared = state.get();
  state->reload(file.path());
  EXPECT_TRUE(readable);
  shared = nullptr;
}

TEST_P(SharedModelStateTest, SamplingDefaultsAreCheckedThroughTheWrapper) {
  const auto state = make_state(ModelState::open(file.path()));
  SamplingParams bad;
  bad.temperature = -1;
  EXPECT_THROW(state->set_sampling_defaults(bad), std::invalid_argument);
  SamplingParams greedy;
  greedy.temperature = 0;
  state->set_sampling_defaults(greedy);
  EXPECT_EQ(state->sampling_defaults().temperature, 0.0f);
}

INSTANTIATE_TEST_SUITE_P(SomeModes, SharedModelStateTest,
                         ::testing::Values(SyncMode::Std, SyncMode::ParkingRw, SyncMode::Actor),
                         [](const auto& info) {
                           std::string name(to_string(info.param));
                           std::erase(name, '-');
                           return name;
                         });

}  // namespace
}  // namespace troupe
