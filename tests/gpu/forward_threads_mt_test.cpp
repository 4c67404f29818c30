// The cpu backend's compute threads: steps mixing prefill chunks and decode tokens of several
// sequences give bit-identical logits with 1, 2 and 3 threads. Labelled `concurrency`, so it
// also runs under ThreadSanitizer, which checks the hand-offs between the forward pass's
// stages (K/V written by one thread and read by another, rows split across threads).
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <numeric>
#include <vector>

#include "gpu/backend.hpp"
#include "model/gguf.hpp"
#include "model/model_desc.hpp"
#include "tests/util/scratch_file.hpp"
#include "tests/util/tiny_model.hpp"

namespace troupe {
namespace {

// Three sequences over four steps: A prefills 11 tokens then decodes, B joins with a prompt
// of 19 tokens in two chunks, C arrives last; every step has logits for some of them.
std::vector<float> run_script(const ModelDesc& desc, int threads) {
  BackendOptions options;
  options.threads = threads;
  options.kv_block_tokens = 4;
  options.kv_blocks = 24;
  const auto backend = make_backend(desc, options);
  const int32_t n_vocab = int32_t(desc.n_vocab);
  std::vector<int32_t> tokens(40);
  for (int i = 0; i < 40; ++i) tokens[size_t(i)] = (5 + 31 * i) % n_vocab;
  std::vector<int32_t> table_a = {3, 10, 17, 20, 1}, table_b = {0, 8, 9, 2, 23, 12},
                       table_c = {5, 6, 7};
  auto span = [&](int first, int n) { return std::span(tokens).subspan(size_t(first), size_t(n)); };
  const std::vector<std::vector<SeqStep>> script = {
      {{0, span(0, 11), 0, table_a, true}},
      {{0, span(11, 1), 11, table_a, true}, {1, span(20, 12), 0, table_b, false}},
      {{1, span(32, 7), 12, table_b, true}, {0, span(12, 1), 12, table_a, true},
       {2, span(3, 9), 0, table_c, true}},
      {{2, span(12, 1), 9, table_c, true}, {1, span(39, 1), 19, table_b, true},
       {0, span(13, 1), 13, table_a, false}},
  };
  std::vector<float> all_logits;
  std::vector<float> logits(3 * desc.n_vocab);
  for (const auto& step : script) {
    backend->step(step, logits.data());
    size_t rows = 0;
    for (const SeqStep& s : step) rows += s.want_logits ? 1 : 0;
    all_logits.insert(all_logits.end(), logits.begin(),
                      logits.begin() + ptrdiff_t(rows * desc.n_vocab));
  }
  return all_logits;
}

TEST(ForwardThreads, StepsAreBitIdenticalWithOneTwoAndThreeThreads) {
  for (const char* preset : {"llama-gpt2-q4_1", "qwen2-gpt2-f16", "llama-spm-f32"}) {
    test::ScratchFile file(test::tiny_model_bytes(test::tiny_model_preset(preset)));
    const GgufFile gguf = GgufFile::open(file.path());
    const ModelDesc desc = ModelDesc::from_gguf(gguf);
    const std::vector<float> one = run_script(desc, 1);
    ASSERT_EQ(one.size(), 7 * desc.n_vocab);
    for (int threads : {2, 3}) {
      const std::vector<float> many = run_script(desc, threads);
      ASSERT_EQ(many.size(), one.size());
      EXPECT_EQ(std::memcmp(many.data(), one.data(), one.size() * sizeof(float)), 0)
          << preset << " with " << threads << " threads";
    }
  }
}

}  // namespace
}  // namespace troupe
