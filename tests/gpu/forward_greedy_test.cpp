// The cpu backend's greedy picking inside the step (Backend::step_greedy): the same tokens as
// the highest logit (lowest id on ties) of the rows step() writes, for mixed prefill and
// decode batches, at one and several threads; and its argument check.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpu/backend.hpp"
#include "model/gguf.hpp"
#include "model/model_desc.hpp"
#include "tests/util/scratch_file.hpp"
#include "tests/util/tiny_model.hpp"
#include "tests/util/gtest_name.hpp"

namespace troupe {
namespace {

using TinyModel = test::OpenedTinyModel;

std::unique_ptr<Backend> make(const ModelDesc& desc, int threads) {
  BackendOptions o;
  o.threads = threads;
  o.kv_blocks = 32;
  o.max_batch_tokens = 128;
  return make_backend(desc, o);
}

// Sequence i owns blocks [4i, 4i + 4) (64 positions at 16 per block).
std::vector<int32_t> blocks_of(int i) { return {4 * i, 4 * i + 1, 4 * i + 2, 4 * i + 3}; }

class ForwardGreedy : public ::testing::TestWithParam<std::string> {};

TEST_P(ForwardGreedy, PicksTheHighestLogitOfEveryRowStepWrites) {
  TinyModel model(GetParam());
  const int32_t n_vocab = int32_t(model.desc.n_vocab);
  for (int threads : {1, 2, 3}) {
    SCOPED_TRACE("threads " + std::to_string(threads));
    std::unique_ptr<Backend> logits_backend = make(model.desc, threads);
    std::unique_ptr<Backend> greedy_backend = make(model.desc, threads);
    ASSERT_TRUE(greedy_backend->picks_greedy());
    // Three sequences: prompts of 9, 1 and 20 tokens (the last in two chunks, the first of
    // which wants no logits), then decode steps that feed back the picked tokens.
    std::vector<std::vector<int32_t>> tokens = {{}, {}, {}};
    for (int i = 0; i < 9; ++i) tokens[0].push_back((5 + 13 * i) % n_vocab);
    tokens[1].push_back(7 % n_vocab);
    for (int i = 0; i < 20; ++i) tokens[2].push_back((3 + 29 * i) % n_vocab);
    std::vector<std::vector<int32_t>> tables = {blocks_of(0), blocks_of(1), blocks_of(2)};
    std::vector<int32_t> n_past = {0, 0, 0};
    for (int step = 0; step < 6; ++step) {
      std::vector<SeqStep> batch;
      for (int s = 0; s < 3; ++s) {
        const int32_t pending = int32_t(tokens[size_t(s)].size()) - n_past[size_t(s)];
        const int32_t n = step == 0 && s == 2 ? 12 : pending;  // the first chunk of 12
        batch.push_back({.seq_id = uint64_t(s),
                         .tokens = std::span<const int32_t>(tokens[size_t(s)])
                                       .subspan(size_t(n_past[size_t(s)]), size_t(n)),
                         .n_past = n_past[size_t(s)],
                         .block_table = tables[size_t(s)],
                         .want_logits = n == pending});
      }
      const auto wanting = size_t(std::count_if(batch.begin(), batch.end(),
                                                [](const SeqStep& s) { return s.want_logits; }));
      std::vector<float> logits(wanting * size_t(n_vocab));
      logits_backend->step(batch, logits.data());
      std::vector<int32_t> picked(wanting, -1);
      greedy_backend->step_greedy(batch, picked);
      size_t row = 0;
      for (size_t s = 0; s < batch.size(); ++s) {
        n_past[s] += int32_t(batch[s].tokens.size());
        if (!batch[s].want_logits) continue;
        const float* first = logits.data() + row * size_t(n_vocab);
        const auto expected = int32_t(std::max_element(first, first + n_vocab) - first);
        EXPECT_EQ(picked[row], expected) << "step " << step << " sequence " << s;
        tokens[s].push_back(picked[row]);
        ++row;
      }
    }
  }
}

TEST_P(ForwardGreedy, RefusesRoomForAnotherNumberOfTokens) {
  TinyModel model(GetParam());
  std::unique_ptr<Backend> backend = make(model.desc, 2);
  const std::vector<int32_t> prompt = {1, 2, 3};
  const std::vector<int32_t> table = blocks_of(0);
  const std::vector<SeqStep> batch = {
      {.seq_id = 0, .tokens = prompt, .n_past = 0, .block_table = table, .want_logits = true}};
  std::vector<int32_t> none, two(2);
  EXPECT_THROW(backend->step_greedy(batch, none), std::invalid_argument);
  EXPECT_THROW(backend->step_greedy(batch, two), std::invalid_argument);
  std::vector<int32_t> one(1, -1);
  backend->step_greedy(batch, one);
  EXPECT_GE(one[0], 0);
  EXPECT_LT(one[0], int32_t(model.desc.n_vocab));
}

INSTANTIATE_TEST_SUITE_P(TinyModels, ForwardGreedy,
                         ::testing::Values("llama-spm-f32", "llama-gpt2-q4_1", "qwen2-gpt2-q8_0"),
                         [](const auto& info) { return test::gtest_name(info.param); });

}  // namespace
}  // namespace troupe
