// Incremental detokenization on small hand-made vocabularies: a sentencepiece one with byte
// tokens (<0xNN> = id 3 + NN) and a gpt2 one whose ids 0..255 are the byte symbols.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "model/bpe_byte_map.hpp"
#include "model/detokenizer.hpp"
#include "model/tokenizer.hpp"
#include "model/unicode.hpp"

namespace troupe {
namespace {

constexpr int32_t kBos = 1, kEos = 2;
constexpr int32_t byte_token(uint8_t b) { return 3 + b; }
constexpr int32_t kSpHello = 259, kWorld = 260, kSp = 261;

Tokenizer spm_tokenizer() {
  VocabSpec spec;
  spec.tokens = {"<unk>", "<s>", "</s>"};
  spec.types = {TokenType::Unknown, TokenType::Control, TokenType::Control};
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) {
    spec.tokens.push_back(std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">");
    spec.types.push_back(TokenType::Byte);
  }
  for (const char* piece : {"\u2581hello", "world", "\u2581"}) {
    spec.tokens.emplace_back(piece);
    spec.types.push_back(TokenType::Normal);
  }
  return Tokenizer(Vocab::from_spec(std::move(spec)));
}

constexpr int32_t kImEnd = 256;

Tokenizer gpt2_tokenizer() {
  VocabSpec spec;
  spec.kind = VocabKind::Gpt2;
  spec.pre = "gpt-2";
  for (int b = 0; b < 256; ++b) spec.tokens.emplace_back(bpe_symbol_of_byte(static_cast<uint8_t>(b)));
  spec.tokens.emplace_back("<|im_end|>");
  spec.types.assign(spec.tokens.size(), TokenType::Normal);
  spec.types[kImEnd] = TokenType::Control;
  return Tokenizer(Vocab::from_spec(std::move(spec)));
}

std::vector<std::string> stream(Detokenizer& d, std::initializer_list<int32_t> ids) {
  std::vector<std::string> out;
  for (int32_t id : ids) out.push_back(d.push(id));
  return out;
}

using Chunks = std::vector<std::string>;

TEST(Detokenizer, ByteTokensCompleteACharacter) {
  const Tokenizer tok = spm_tokenizer();
  Detokenizer d(tok);
  // € is E2 82 AC.
  EXPECT_EQ(stream(d, {byte_token(0xE2), byte_token(0x82)}), (Chunks{"", ""}));
  EXPECT_EQ(d.pending_bytes(), 2u);
  EXPECT_EQ(d.push(byte_token(0xAC)), "\u20AC");
  EXPECT_EQ(d.pending_bytes(), 0u);
  EXPECT_EQ(d.flush(), "");
}

TEST(Detokenizer, Gpt2ByteSymbolsCombineAcrossTokens) {
  const Tokenizer tok = gpt2_tokenizer();
  Detokenizer d(tok);
  EXPECT_EQ(stream(d, {'a', 0xF0, 0x9F, 0x98, 0x80, 'b'}), (Chunks{"a", "", "", "", "\U0001F600", "b"}));
}

TEST(Detokenizer, IllFormedBytesBecomeReplacementCharacters) {
  const Tokenizer tok = gpt2_tokenizer();
  Detokenizer d(tok);
  EXPECT_EQ(d.push(0xFF), "\uFFFD");                  // can never start a character
  EXPECT_EQ(d.push(0xE2), "");                        // may still complete...
  EXPECT_EQ(d.push('a'), "\uFFFD" "a");               // ...but does not
  EXPECT_EQ(stream(d, {0xE2, 0x82}), (Chunks{"", ""}));
  EXPECT_EQ(d.flush(), "\uFFFD");                     // an incomplete tail at the end
  EXPECT_EQ(d.push('z'), "z");                        // usable after flush
}

TEST(Detokenizer, DropsTheSentencepieceSpaceAfterBos) {
  const Tokenizer tok = spm_tokenizer();
  Detokenizer d(tok);
  EXPECT_EQ(stream(d, {kBos, kSpHello, kSp, kWorld, kEos}), (Chunks{"", "hello", " ", "world", ""}));
  Detokenizer at_start(tok);
  EXPECT_EQ(at_start.push(kSpHello), "hello");
  Detokenizer continuing(tok, {.starts_text = false});
  EXPECT_EQ(stream(continuing, {kSpHello, kSpHello}), (Chunks{" hello", " hello"}));
  Detokenizer rendered(tok, {.render_special = true});
  EXPECT_EQ(stream(rendered, {kBos, kSpHello, kEos}), (Chunks{"<s>", "hello", "</s>"}));
}

TEST(Detokenizer, ControlTokensOnlyWhenRendered) {
  const Tokenizer tok = gpt2_tokenizer();
  Detokenizer hidden(tok);
  EXPECT_EQ(stream(hidden, {'o', 'k', kImEnd}), (Chunks{"o", "k", ""}));
  Detokenizer shown(tok, {.render_special = true});
  EXPECT_EQ(shown.push(kImEnd), "<|im_end|>");
}

TEST(Detokenizer, BadIdThrowsAndKeepsState) {
  const Tokenizer tok = gpt2_tokenizer();
  Detokenizer d(tok);
  EXPECT_EQ(d.push(0xC3), "");
  EXPECT_THROW(d.push(100000), TokenizerError);
  EXPECT_THROW(d.push(-1), TokenizerError);
  EXPECT_EQ(d.push(0xA9), "\u00E9");
}

TEST(Detokenizer, StreamEqualsWholeDecode) {
  // Random id sequences (bytes included, so characters are cut anywhere): the streamed
  // chunks, concatenated, equal decode() made well-formed, and each chunk is well-formed.
  const Tokenizer tok = spm_tokenizer();
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> pick(0, tok.vocab().size() - 1);
  for (int round = 0; round < 300; ++round) {
    std::vector<int32_t> ids(rng() % 12);
    for (int32_t& id : ids) id = pick(rng);
    Detokenizer d(tok);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string chunk = d.push(id);
      std::string check;
      EXPECT_EQ(append_valid_utf8(chunk, true, check), chunk.size());
      EXPECT_EQ(check, chunk);
      streamed += chunk;
    }
    streamed += d.flush();
    std::string expected;
    append_valid_utf8(tok.decode(ids), true, expected);
    EXPECT_EQ(streamed, expected);
  }
}

}  // namespace
}  // namespace troupe
