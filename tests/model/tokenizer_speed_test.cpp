// Encoding cost grows about linearly with the text: a text 10x longer must not take more
// than 30x the time (a quadratic tokenizer takes ~100x). Both tokenizers, with the tiny test
// vocabularies and SmolLM2's when it is there. Each size is timed in thread CPU time, best of
// a few runs, so a busy machine does not decide the outcome. The texts mix words, numbers,
// punctuation, Unicode, special-token text, one long word and one long run of spaces.
#include <gtest/gtest.h>

#include "model/default_model.hpp"

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <string>

#include "model/gguf.hpp"
#include "model/tokenizer.hpp"
#include "tests/util/scratch_file.hpp"
#include "tests/util/tiny_model.hpp"

namespace troupe {
namespace {

std::string mixed_text(std::size_t bytes) {
  static const char* const kParts[] = {
      "The quick brown fox ", "jumps over 12345 lazy dogs. ", "caf\u00E9 na\u00EFve ", "\u65E5\u672C\u8A9E\u3002",
      "\U0001F600\U0001F389 ", "don't stop!!! ", "x = f(a, b) + 3.14159;\n", "\n\n\t", "<|im_start|>", "<s> "};
  std::string text;
  text.reserve(bytes + 64);
  uint64_t state = 42;
  while (text.size() < bytes * 8 / 10) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    text += kParts[(state >> 33) % std::size(kParts)];
  }
  text.append((bytes - text.size()) / 2, 'a');  // one long word
  text.append(bytes - text.size(), ' ');        // one long whitespace run
  return text;
}

// CPU time of this thread, so that other processes on the machine do not count.
double thread_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double best_seconds(const Tokenizer& tok, const std::string& text, int runs) {
  double best = 1e9;
  for (int i = 0; i < runs; ++i) {
    const double start = thread_seconds();
    const std::vector<int32_t> ids = tok.encode(text, true, true);
    best = std::min(best, thread_seconds() - start);
    EXPECT_FALSE(ids.empty());
  }
  return best;
}

void expect_near_linear(const Tokenizer& tok) {
  const std::string small = mixed_text(50'000);
  const std::string large = mixed_text(500'000);
  const double t_small = best_seconds(tok, small, 5);
  const double t_large = best_seconds(tok, large, 2);
  EXPECT_LT(t_large, 30.0 * t_small) << "50 kB: " << t_small << " s, 500 kB: " << t_large << " s";
  std::cout << "encode 500 kB: " << t_large << " s (50 kB: " << t_small << " s)\n";
}

Tokenizer tiny_tokenizer(test::TinyVocab kind) {
  test::TinyModelSpec spec;
  spec.vocab = kind;
  const test::ScratchFile file(test::tiny_model_bytes(spec));
  return Tokenizer::from_gguf(GgufFile::open(file.path()));
}

TEST(TokenizerSpeed, Gpt2IsNearLinear) { expect_near_linear(tiny_tokenizer(test::TinyVocab::Gpt2)); }

TEST(TokenizerSpeed, SentencepieceIsNearLinear) { expect_near_linear(tiny_tokenizer(test::TinyVocab::Spm)); }

TEST(TokenizerSpeed, SmolLM2IsNearLinear) {
  const std::string path = default_model_path().string();
  if (!std::filesystem::exists(path)) FAIL() << path << " absent: run scripts/fetch-model (make test does)";
  expect_near_linear(Tokenizer::from_gguf(GgufFile::open(path)));
}

}  // namespace
}  // namespace troupe
