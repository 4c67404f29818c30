// One Tokenizer shared by several threads: encode and decode concurrently give the results
// they give alone (run under ThreadSanitizer with the concurrency label).
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "model/gguf.hpp"
#include "model/tokenizer.hpp"
#include "tests/util/scratch_file.hpp"
#include "tests/util/tiny_model.hpp"

namespace troupe {
namespace {

Tokenizer tiny_tokenizer(test::TinyVocab kind) {
  test::TinyModelSpec spec;
  spec.vocab = kind;
  const test::ScratchFile file(test::tiny_model_bytes(spec));
  return Tokenizer::from_gguf(GgufFile::open(file.path()));
}

void expect_same_from_threads(const Tokenizer& tok) {
  std::vector<std::string> texts;
  for (int i = 0; i < 16; ++i)
    texts.push_back("Hello world " + std::to_string(i * 7919) + " <|im_start|>caf\u00E9 \U0001F600 the end\n");
  std::vector<std::vector<int32_t>> alone;
  for (const std::string& text : texts) alone.push_back(tok.encode(text, true, true));

  constexpr int kThreads = 4;
  std::vector<std::vector<std::vector<int32_t>>> got(kThreads);
  std::vector<std::vector<std::string>> decoded(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round) {
        for (const std::string& text : texts) {
          got[t].push_back(tok.encode(text, true, true));
          decoded[t].push_back(tok.decode(got[t].back(), {.render_special = true}));
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(got[t].size(), 20 * texts.size());
    for (std::size_t i = 0; i < got[t].size(); ++i) {
      EXPECT_EQ(got[t][i], alone[i % texts.size()]);
      EXPECT_EQ(decoded[t][i], tok.decode(alone[i % texts.size()], {.render_special = true}));
    }
  }
}

TEST(TokenizerThreads, Gpt2SharedBetweenThreads) { expect_same_from_threads(tiny_tokenizer(test::TinyVocab::Gpt2)); }

TEST(TokenizerThreads, SentencepieceSharedBetweenThreads) {
  expect_same_from_threads(tiny_tokenizer(test::TinyVocab::Spm));
}

}  // namespace
}  // namespace troupe
