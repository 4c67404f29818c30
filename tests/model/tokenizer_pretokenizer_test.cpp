// BPE pre-tokenizers: the words each regex sequence cuts a text into. Expected words are
// worked out by hand from the regexes (leftmost-first alternation; each later regex of a
// sequence refines the pieces of the earlier ones; text between matches is a piece too).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "model/bpe_pretokenizer.hpp"
#include "model/unicode.hpp"

namespace troupe {
namespace {

using Words = std::vector<std::string>;

Words words(BpePreTokenizer kind, std::string_view text) {
  const std::vector<char32_t> cpts = decode_utf8_lenient(text);
  Words out;
  std::size_t begin = 0;
  for (std::size_t len : split_words(kind, cpts)) {
    std::string word;
    for (std::size_t i = begin; i < begin + len; ++i) append_utf8(word, cpts[i]);
    out.push_back(word);
    begin += len;
  }
  EXPECT_EQ(begin, cpts.size());
  return out;
}

TEST(PreTokenizerGpt2, LettersNumbersOthersAndSpaces) {
  const auto k = BpePreTokenizer::Gpt2;
  EXPECT_EQ(words(k, "Hello world"), (Words{"Hello", " world"}));
  EXPECT_EQ(words(k, "123abc 456"), (Words{"123", "abc", " 456"}));
  EXPECT_EQ(words(k, "Hi!!! ok?"), (Words{"Hi", "!!!", " ok", "?"}));
  EXPECT_EQ(words(k, "caf\u00E9 \u65E5\u672C"), (Words{"caf\u00E9", " \u65E5\u672C"}));
  EXPECT_EQ(words(k, ""), Words{});
}

TEST(PreTokenizerGpt2, WhitespaceRunsLeaveOneSpaceForTheNextWord) {
  const auto k = BpePreTokenizer::Gpt2;
  EXPECT_EQ(words(k, "a  b"), (Words{"a", " ", " b"}));
  EXPECT_EQ(words(k, "a \n b"), (Words{"a", " \n", " b"}));
  EXPECT_EQ(words(k, "a\tb"), (Words{"a", "\t", "b"}));
  EXPECT_EQ(words(k, "end   "), (Words{"end", "   "}));
  EXPECT_EQ(words(k, "x\u00A0y"), (Words{"x", "\u00A0", "y"}));  // NBSP is White_Space
}

TEST(PreTokenizerGpt2, ContractionsAreCaseSensitive) {
  const auto k = BpePreTokenizer::Gpt2;
  EXPECT_EQ(words(k, "don't we'll"), (Words{"don", "'t", " we", "'ll"}));
  EXPECT_EQ(words(k, "DON'T"), (Words{"DON", "'", "T"}));
  EXPECT_EQ(words(k, "'x"), (Words{"'", "x"}));
}

TEST(PreTokenizerDigitsGpt2, EveryDigitAlone) {
  const auto k = BpePreTokenizer::DigitsGpt2;
  EXPECT_EQ(words(k, "abc 123"), (Words{"abc", " ", "1", "2", "3"}));
  EXPECT_EQ(words(k, "v2.0"), (Words{"v", "2", ".", "0"}));
  EXPECT_EQ(words(k, "\u0663\u0664\u00BD"), (Words{"\u0663", "\u0664", "\u00BD"}));  // ٣٤½ are \p{N}
}

TEST(PreTokenizerLlama3, NumbersInThreesAndNewlinesKept) {
  const auto k = BpePreTokenizer::Llama3;
  EXPECT_EQ(words(k, "Hello world"), (Words{"Hello", " world"}));
  EXPECT_EQ(words(k, "1234567"), (Words{"123", "456", "7"}));
  EXPECT_EQ(words(k, "x!!\n\ny"), (Words{"x", "!!\n\n", "y"}));
  EXPECT_EQ(words(k, "  \n  x"), (Words{"  \n", " ", " x"}));
  EXPECT_EQ(words(k, "$100"), (Words{"$", "100"}));
  EXPECT_EQ(words(k, "(hello)"), (Words{"(hello", ")"}));  // one non-letter may lead a word
  EXPECT_EQ(words(k, "I'M DON'T"), (Words{"I", "'M", " DON", "'T"}));
  EXPECT_EQ(words(k, "a \n"), (Words{"a", " \n"}));
}

TEST(PreTokenizerQwen2, SingleDigits) {
  const auto k = BpePreTokenizer::Qwen2;
  EXPECT_EQ(words(k, "ab1234"), (Words{"ab", "1", "2", "3", "4"}));
  EXPECT_EQ(words(k, "I'M"), (Words{"I", "'M"}));
}

TEST(PreTokenizerDefault, PunctuationRunsThenNumbersInThrees) {
  const auto k = BpePreTokenizer::Default;
  EXPECT_EQ(words(k, "Hello, world! 12345"), (Words{"Hello", ",", " world", "!", " ", "123", "45"}));
  EXPECT_EQ(words(k, "a+b"), (Words{"a", "+", "b"}));
  EXPECT_EQ(words(k, " ``"), (Words{" ``"}));  // the backtick is not in the first regex
}

TEST(PreTokenizerFalcon, BacktickIsPunctuation) {
  EXPECT_EQ(words(BpePreTokenizer::Falcon, " ``"), (Words{" ", "``"}));
  EXPECT_EQ(words(BpePreTokenizer::Falcon, "x 12345"), (Words{"x", " ", "123", "45"}));
}

TEST(PreTokenizerSettings, NamesAsLlamaCppReadsThem) {
  const auto smollm = bpe_pretokenizer_settings("smollm");
  ASSERT_TRUE(smollm);
  EXPECT_EQ(smollm->kind, BpePreTokenizer::DigitsGpt2);
  EXPECT_FALSE(smollm->ignore_merges);
  const auto llama3 = bpe_pretokenizer_settings("llama-bpe");
  ASSERT_TRUE(llama3);
  EXPECT_EQ(llama3->kind, BpePreTokenizer::Llama3);
  EXPECT_TRUE(llama3->ignore_merges);
  EXPECT_TRUE(llama3->adds_bos);
  EXPECT_EQ(bpe_pretokenizer_settings("dbrx")->kind, BpePreTokenizer::Llama3);
  EXPECT_FALSE(bpe_pretokenizer_settings("dbrx")->ignore_merges);
  EXPECT_EQ(bpe_pretokenizer_settings("qwen2")->kind, BpePreTokenizer::Qwen2);
  EXPECT_EQ(bpe_pretokenizer_settings("gpt-2")->kind, BpePreTokenizer::Gpt2);
  EXPECT_EQ(bpe_pretokenizer_settings("gpt2")->kind, BpePreTokenizer::Gpt2);
  EXPECT_EQ(bpe_pretokenizer_settings("")->kind, BpePreTokenizer::Default);
  EXPECT_EQ(bpe_pretokenizer_settings("default")->kind, BpePreTokenizer::Default);
  EXPECT_FALSE(bpe_pretokenizer_settings("no-such-pre"));
  EXPECT_NE(known_bpe_pretokenizer_names().find("smollm"), std::string_view::npos);
}

}  // namespace
}  // namespace troupe
