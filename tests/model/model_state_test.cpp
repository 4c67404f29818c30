#include "model/model_state.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/util/scratch_file.hpp"
#include "tests/util/tiny_model.hpp"

namespace troupe {
namespace {

using test::ScratchFile;
using test::TinyModelSpec;

TinyModelSpec spec_with_layers(uint32_t layers) {
  TinyModelSpec spec;
  spec.n_layer = layers;
  return spec;
}

// Records its own destruction and whether the model's file was still there at that moment.
struct RecordingRuntime : ModelRuntime {
  struct Log {
    int made = 0;
    int destroyed = 0;
    bool file_present_at_destruction = false;
  };
  RecordingRuntime(const LoadedModel& model, Log& log) : model(model), log(log) { ++log.made; }
  ~RecordingRuntime() override {
    ++log.destroyed;
    log.file_present_at_destruction =
        model.file() != nullptr && !model.file()->tensors().empty();
  }
  const LoadedModel& model;
  Log& log;
};

RuntimeFactory recording_factory(RecordingRuntime::Log& log) {
  return [&log](const LoadedModel& model) {
    return std::make_unique<RecordingRuntime>(model, log);
  };
}

ModelStateOptions with_factory(RuntimeFactory factory) {
  ModelStateOptions options;
  options.runtime_factory = std::move(factory);
  return options;
}

TEST(ModelStateTest, OpensTheFileAsGenerationOne) {
  const ScratchFile file(test::tiny_model_bytes(spec_with_layers(2)));
  const ModelState state = ModelState::open(file.path());
  const ModelHandle model = state.acquire();
  EXPECT_EQ(model->generation(), 1u);
  EXPECT_EQ(state.generation(), 1u);
  EXPECT_EQ(model->source(), file.path());
  EXPECT_EQ(model->desc().n_layer, 2u);
  EXPECT_EQ(model->desc().n_embd, 64u);
  EXPECT_GT(model->tokenizer().vocab().size(), 0);
  EXPECT_EQ(state.snapshot().loads, 1u);
  EXPECT_EQ(state.snapshot().live_generations, 1u);
}

TEST(ModelStateTest, ReloadKeepsTheOldGenerationForItsReaders) {
  const ScratchFile first(test::tiny_model_bytes(spec_with_layers(2)));
  const ScratchFile second(test::tiny_model_bytes(spec_with_layers(3)));
  ModelState state = ModelState::open(first.path());
  ModelHandle running = state.acquire();

  EXPECT_EQ(state.reload(second.path()), 2u);

  EXPECT_EQ(running->generation(), 1u);
  EXPECT_EQ(running->desc().n_layer, 2u);
  EXPECT_EQ(running->source(), first.path());
  const ModelHandle fresh = state.acquire();
  EXPECT_EQ(fresh->generation(), 2u);
  EXPECT_EQ(fresh->desc().n_layer, 3u);
  EXPECT_EQ(state.snapshot().live_generations, 2u);
  EXPECT_EQ(state.snapshot().source, second.path());
}

TEST(ModelStateTest, OldModelIsReleasedExactlyWhenItsLastSequenceEnds) {
  RecordingRuntime::Log first_log;
  const ScratchFile file(test::tiny_model_bytes(spec_with_layers(2)));
  ModelState state(LoadedModel::open(file.path(), recording_factory(first_log)));
  std::vector<ModelHandle> sequences = {state.acquire(), state.acquire(), state.acquire()};
  const std::weak_ptr<const LoadedModel> old = sequences.front();

  // The same file again: a reload need not change the path.
  state.reload(file.path());
  EXPECT_EQ(state.generation(), 2u);

  sequences.pop_back();
  sequences.pop_back();
  EXPECT_FALSE(old.expired());
  EXPECT_EQ(first_log.destroyed, 0);
  EXPECT_EQ(state.snapshot().live_generations, 2u);

  sequences.pop_back();
  EXPECT_TRUE(old.expired());
  EXPECT_EQ(first_log.destroyed, 1);
  EXPECT_TRUE(first_log.file_present_at_destruction);
  EXPECT_EQ(state.snapshot().live_generations, 1u);
}

TEST(ModelStateTest, TheRuntimeFactoryRunsOncePerGeneration) {
  RecordingRuntime::Log log;
  const ScratchFile file(test::tiny_model_bytes(spec_with_layers(2)));
  ModelState state = ModelState::open(file.path(), with_factory(recording_factory(log)));
  EXPECT_EQ(log.made, 1);
  ASSERT_NE(state.acquire()->runtime<RecordingRuntime>(), nullptr);
  EXPECT_EQ(&state.acquire()->runtime<RecordingRuntime>()->model, state.acquire().get());

  state.reload(file.path());
  state.reload(file.path());
  EXPECT_EQ(log.made, 3);
  EXPECT_EQ(log.destroyed, 2);  // nobody held generations 1 and 2
}

TEST(ModelStateTest, AFailedReloadLeavesTheCurrentModelInService) {
  const ScratchFile good(test::tiny_model_bytes(spec_with_layers(2)));
  std::vector<uint8_t> bytes = test::tiny_model_bytes(spec_with_layers(2));
  bytes.resize(bytes.size() / 2);
  const ScratchFile truncated(bytes);
  ModelState state = ModelState::open(good.path());
  const ModelHandle before = state.acquire();

  for (const std::string& bad : {truncated.path(), std::string("/nonexistent/model.gguf")}) {
    try {
      state.reload(bad);
      FAIL() << "reload of " << bad << " succeeded";
    } catch (const ModelLoadError& error) {
      const std::string message = error.what();
      EXPECT_NE(message.find("cannot load model '" + bad + "'"), std::string::npos) << message;
      EXPECT_NE(message.find("generation 1 ('" + good.path() + "') stays in service"),
                std::string::npos)
          << message;
    }
  }
  EXPECT_EQ(state.acquire(), before);
  EXPECT_EQ(state.snapshot().loads, 1u);
}

TEST(ModelStateTest, AThrowingRuntimeFactoryFailsTheReload) {
  const ScratchFile file(test::tiny_model_bytes(spec_with_layers(2)));
  int calls = 0;
  ModelState state = ModelState::open(
      file.path(), with_factory([&calls](const LoadedModel&) -> std::unique_ptr<ModelRuntime> {
        if (++calls > 1) throw std::runtime_error("no memory for the backend");
        return nullptr;
      }));
  try {
    state.reload(file.path());
    FAIL() << "reload succeeded";
  } catch (const ModelLoadError& error) {
    EXPECT_NE(std::string(error.what()).find("no memory for the backend"), std::string::npos);
  }
  EXPECT_EQ(state.generation(), 1u);
}

TEST(ModelStateTest, OpeningAMissingFileNamesIt) {
  try {
    LoadedModel::open("/nonexistent/missing.gguf");
    FAIL() << "open succeeded";
  } catch (const ModelLoadError& error) {
    EXPECT_NE(std::string(error.what()).find("cannot load model '/nonexistent/missing.gguf'"),
              std::string::npos)
        << error.what();
  }
}

TEST(ModelStateTest, CountersSplitIntoCurrentGenerationAndTotal) {
  const ScratchFile file(test::tiny_model_bytes(spec_with_layers(2)));
  ModelState state = ModelState::open(file.path());
  state.record_usage(1, {.requests = 2, .prompt_tokens = 30, .generated_tokens = 7});
  state.reload(file.path());
  state.record_usage(1, {.requests = 1, .prompt_tokens = 5, .generated_tokens = 4});  // old one
  state.record_usage(2, {.requests = 1, .prompt_tokens = 10, .generated_tokens = 3});

  const ModelStateSnapshot snapshot = state.snapshot();
  EXPECT_EQ(snapshot.current.requests, 1u);
  EXPECT_EQ(snapshot.current.prompt_tokens, 10u);
  EXPECT_EQ(snapshot.current.generated_tokens, 3u);
  EXPECT_EQ(snapshot.total.requests, 4u);
  EXPECT_EQ(snapshot.total.prompt_tokens, 45u);
  EXPECT_EQ(snapshot.total.generated_tokens, 14u);
}

TEST(ModelStateTest, SamplingDefaultsAreValidated) {
  const ScratchFile file(test::tiny_model_bytes(spec_with_layers(2)));
  SamplingParams greedy;
  greedy.temperature = 0;
  ModelStateOptions options;
  options.sampling_defaults = greedy;
  ModelState state = ModelState::open(file.path(), options);
  EXPECT_EQ(state.sampling_defaults().temperature, 0.0f);

  SamplingParams bad;
  bad.top_p = 1.5f;
  EXPECT_THROW(state.set_sampling_defaults(bad), std::invalid_argument);
  EXPECT_EQ(state.sampling_defaults().temperature, 0.0f);

  SamplingParams warm;
  warm.temperature = 0.7f;
  warm.top_k = 40;
  state.set_sampling_defaults(warm);
  EXPECT_EQ(state.snapshot().sampling_defaults.top_k, 40);
}

TEST(ModelStateTest, InstallRefusesAMissingModel) {
  const ScratchFile file(test::tiny_model_bytes(spec_with_layers(2)));
  ModelState state = ModelState::open(file.path());
  EXPECT_THROW(state.install(nullptr), std::invalid_argument);
  EXPECT_THROW(ModelState(nullptr), std::invalid_argument);
  EXPECT_EQ(state.generation(), 1u);
}

}  // namespace
}  // namespace troupe
