// Vocab loading and both tokenizers on small hand-made vocabularies, where the expected ids
// follow from the merge ranks / scores by working the algorithm by hand:
// - gpt2: ids 0..255 are the byte symbols in byte order (so a lone byte b is id b), then a
//   few merged tokens and special tokens;
// - llama: <unk> <s> </s>, the 256 byte tokens <0x00>..<0xFF> (id 3 + byte), then pieces
//   with scores.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "model/bpe_byte_map.hpp"
#include "model/gguf.hpp"
#include "model/tokenizer.hpp"
#include "model/vocab.hpp"
#include "tests/util/gguf_writer.hpp"
#include "tests/util/scratch_file.hpp"

namespace troupe {
namespace {

using Ids = std::vector<int32_t>;

constexpr int32_t kHe = 256, kGt = 257, kGthe = 258, kCa = 259, kAt = 260, kGc = 261, kAa = 262, kImStart = 263,
                  kImEnd = 264, kTool = 265, kGcat = 266;

VocabSpec gpt2_spec(std::string pre = "gpt-2") {
  VocabSpec spec;
  spec.kind = VocabKind::Gpt2;
  spec.pre = std::move(pre);
  for (int b = 0; b < 256; ++b) spec.tokens.emplace_back(bpe_symbol_of_byte(static_cast<uint8_t>(b)));
  for (const char* t : {"he", "\u0120t", "\u0120the", "ca", "at", "\u0120c", "aa"}) spec.tokens.emplace_back(t);
  spec.tokens.insert(spec.tokens.end(), {"<|im_start|>", "<|im_end|>", "<tool>", "\u0120cat"});
  spec.types.assign(spec.tokens.size(), TokenType::Normal);
  spec.types[kImStart] = TokenType::Control;
  spec.types[kImEnd] = TokenType::Control;
  spec.types[kTool] = TokenType::UserDefined;
  // "x y" merges into a text that is not a token.
  spec.merges = {"h e", "\u0120 t", "\u0120t he", "a t", "c a", "\u0120 c", "a a", "x y"};
  spec.bos_id = kImStart;
  spec.eos_id = kImEnd;
  return spec;
}

Ids bytes_of(std::string_view text) {
  Ids ids;
  for (char c : text) ids.push_back(static_cast<uint8_t>(c));
  return ids;
}

TEST(Gpt2Tokenizer, LowestRankMergesFirst) {
  const Tokenizer tok(Vocab::from_spec(gpt2_spec()));
  EXPECT_EQ(tok.encode(" the", false, false), (Ids{kGthe}));      // he, then Ġt, then Ġt+he
  EXPECT_EQ(tok.encode(" cat", false, false), (Ids{kGc, kAt}));   // "a t" (3) beats "c a" (4)
  EXPECT_EQ(tok.encode("aaa", false, false), (Ids{kAa, 'a'}));    // a tie merges leftmost
  EXPECT_EQ(tok.encode("the cat", false, false), (Ids{'t', kHe, kGc, kAt}));
  EXPECT_EQ(tok.encode("", false, false), Ids{});
}

TEST(Gpt2Tokenizer, BytesOfNonAsciiText) {
  const Tokenizer tok(Vocab::from_spec(gpt2_spec()));
  EXPECT_EQ(tok.encode("\u00E9", false, false), (Ids{0xC3, 0xA9}));
  EXPECT_EQ(tok.encode("\xF0\x9F\x98\x80", false, false), (Ids{0xF0, 0x9F, 0x98, 0x80}));
  // An invalid byte is read as U+FFFD, as llama.cpp reads it.
  EXPECT_EQ(tok.encode("\xFF", false, false), (Ids{0xEF, 0xBF, 0xBD}));
}

TEST(Gpt2Tokenizer, MergedTextThatIsNoTokenFallsBackToSingleBytes) {
  const Tokenizer tok(Vocab::from_spec(gpt2_spec()));
  EXPECT_EQ(tok.encode("xy", false, false), (Ids{'x', 'y'}));
}

TEST(Gpt2Tokenizer, SymbolMissingFromTheVocabularyIsDropped) {
  VocabSpec spec = gpt2_spec();
  spec.tokens['\n'] = "<newline-missing>";  // Ċ is no longer a token
  const Tokenizer tok(Vocab::from_spec(std::move(spec)));
  EXPECT_EQ(tok.encode("a\nb", false, false), (Ids{'a', 'b'}));
}

TEST(Gpt2Tokenizer, SpecialTokens) {
  const Tokenizer tok(Vocab::from_spec(gpt2_spec()));
  EXPECT_EQ(tok.encode("<|im_start|>hi<tool>", false, true), (Ids{kImStart, 'h', 'i', kTool}));
  // Control tokens are text without parse_special; user-defined ones are split out anyway.
  Ids as_text = bytes_of("<|im_start|>hi");
  as_text.push_back(kTool);
  EXPECT_EQ(tok.encode("<|im_start|>hi<tool>", false, false), as_text);
  EXPECT_EQ(tok.encode("<|im_end|><|im_end|>", false, true), (Ids{kImEnd, kImEnd}));
}

TEST(Gpt2Tokenizer, IgnoreMergesTakesWholeWordTokens) {
  EXPECT_EQ(Tokenizer(Vocab::from_spec(gpt2_spec("gpt-2"))).encode(" cat", false, false), (Ids{kGc, kAt}));
  EXPECT_EQ(Tokenizer(Vocab::from_spec(gpt2_spec("llama-bpe"))).encode(" cat", false, false), (Ids{kGcat}));
}

TEST(Gpt2Tokenizer, AddSpecialFollowsTheVocabulary) {
  const Tokenizer plain(Vocab::from_spec(gpt2_spec("gpt-2")));
  EXPECT_FALSE(plain.vocab().add_bos());
  EXPECT_EQ(plain.encode("hi", true, false), (Ids{'h', 'i'}));
  const Tokenizer llama3(Vocab::from_spec(gpt2_spec("llama-bpe")));  // llama3 adds BOS by default
  EXPECT_TRUE(llama3.vocab().add_bos());
  EXPECT_EQ(llama3.encode("hi", true, false), (Ids{kImStart, 'h', 'i'}));
  VocabSpec with_eos = gpt2_spec();
  with_eos.add_eos = true;
  with_eos.add_bos = true;
  EXPECT_EQ(Tokenizer(Vocab::from_spec(std::move(with_eos))).encode("", true, false), (Ids{kImStart, kImEnd}));
}

TEST(Gpt2Tokenizer, DecodeMapsSymbolsBackToBytes) {
  const Tokenizer tok(Vocab::from_spec(gpt2_spec()));
  EXPECT_EQ(tok.decode(Ids{kGthe, kGc, kAt, 0xC3, 0xA9}), " the cat\u00E9");
  EXPECT_EQ(tok.piece(' '), " ");
  EXPECT_EQ(tok.piece(kGthe), " the");
  EXPECT_EQ(tok.decode(Ids{kImStart, 'h', 'i', kImEnd}), "hi");
  EXPECT_EQ(tok.decode(Ids{kImStart, 'h', 'i', kImEnd}, {.render_special = true}), "<|im_start|>hi<|im_end|>");
  EXPECT_EQ(tok.decode(Ids{kTool}), "<tool>");  // user-defined tokens are always written
  EXPECT_EQ(tok.decode(Ids{0xC3}), "\xC3");    // raw bytes: half a character stays half
  EXPECT_THROW(tok.decode(Ids{kGcat + 1}), TokenizerError);
  EXPECT_THROW(tok.piece(-1), TokenizerError);
}

TEST(Gpt2Tokenizer, RoundTrips) {
  const Tokenizer tok(Vocab::from_spec(gpt2_spec()));
  for (std::string text : {"the cat sat on the mat", "  spaces\t\tand\nnewlines\n", "\u65E5\u672C\u8A9E \U0001F600!",
                           "don't 123 4.5"})
    EXPECT_EQ(tok.decode(tok.encode(text, true, false)), text) << text;
}

TEST(Gpt2Vocab, DefaultsAndEndOfGeneration) {
  VocabSpec spec = gpt2_spec();
  spec.bos_id.reset();
  spec.eos_id.reset();
  const Vocab vocab = Vocab::from_spec(std::move(spec));
  // llama.cpp's gpt2 defaults: BOS = EOS = 11, no unknown token, no BOS added.
  EXPECT_EQ(vocab.bos(), 11);
  EXPECT_EQ(vocab.eos(), 11);
  EXPECT_EQ(vocab.unk(), kNoToken);
  EXPECT_FALSE(vocab.add_bos());
  EXPECT_FALSE(vocab.add_space_prefix());
  // <|im_end|> ends a generation by its text; EOS does too.
  EXPECT_TRUE(vocab.is_eog(kImEnd));
  EXPECT_TRUE(vocab.is_eog(11));
  EXPECT_FALSE(vocab.is_eog(kImStart));
  EXPECT_FALSE(vocab.is_eog(-1));
  EXPECT_EQ(vocab.eog_ids(), (Ids{11, kImEnd}));
  EXPECT_EQ(vocab.merge_rank("h", "e"), 0);
  EXPECT_EQ(vocab.merge_rank("x", "y"), 7);
  EXPECT_EQ(vocab.merge_rank("e", "h"), -1);
  EXPECT_EQ(vocab.find("\u0120the"), kGthe);
  EXPECT_FALSE(vocab.find("nope"));
}

TEST(Gpt2Vocab, EndOfGenerationTextBecomesControl) {
  VocabSpec spec = gpt2_spec();
  spec.tokens.push_back("<|eot_id|>");  // normal in the file
  spec.types.push_back(TokenType::Normal);
  spec.tokens.push_back("<fim_pad>");
  spec.types.push_back(TokenType::Normal);
  const Vocab vocab = Vocab::from_spec(std::move(spec));
  EXPECT_EQ(vocab.type(kGcat + 1), TokenType::Control);
  EXPECT_TRUE(vocab.is_eog(kGcat + 1));
  EXPECT_EQ(vocab.type(kGcat + 2), TokenType::Control);
  EXPECT_TRUE(vocab.is_eog(kGcat + 2));
  // Special tokens, longest text first (12, 10, 10, 9 and 6 bytes), then lower id.
  EXPECT_EQ(vocab.special_ids_by_length(), (Ids{kImStart, kImEnd, kGcat + 1, kGcat + 2, kTool}));
}

// --- llama (sentencepiece) ---

constexpr int32_t kUnk = 0, kBos = 1, kEos = 2;
constexpr int32_t byte_token(uint8_t b) { return 3 + b; }
constexpr int32_t kSp = 259, kSpH = 260, kHeP = 261, kLl = 262, kLo = 263, kLlo = 264, kSpHe = 265, kA = 266,
                  kAaP = 267, kH = 268;

VocabSpec spm_spec() {
  VocabSpec spec;
  spec.kind = VocabKind::Llama;
  spec.tokens = {"<unk>", "<s>", "</s>"};
  spec.types = {TokenType::Unknown, TokenType::Control, TokenType::Control};
  spec.scores = {0, 0, 0};
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) {
    spec.tokens.push_back(std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">");
    spec.types.push_back(TokenType::Byte);
    spec.scores.push_back(0);
  }
  const std::vector<std::pair<std::string, float>> pieces = {
      {"\u2581", -1}, {"\u2581h", -5}, {"he", -1}, {"ll", -2}, {"lo", -3}, {"llo", -4}, {"\u2581he", -6},
      {"a", -7},      {"aa", -1},      {"h", -8},  {"e", -8},  {"l", -8},  {"o", -8},   {"i", -8}};
  for (const auto& [text, score] : pieces) {
    spec.tokens.push_back(text);
    spec.types.push_back(TokenType::Normal);
    spec.scores.push_back(score);
  }
  return spec;
}

int32_t id_of(const Tokenizer& tok, std::string_view text) { return *tok.vocab().find(text); }

TEST(SpmTokenizer, HighestScoreMergesFirst) {
  const Tokenizer tok(Vocab::from_spec(spm_spec()));
  // ▁hello: he (-1), then ll (-2), then llo (-4; lo went stale), then ▁he (-6).
  EXPECT_EQ(tok.encode("hello", false, false), (Ids{kSpHe, kLlo}));
  EXPECT_EQ(tok.encode("hello", true, false), (Ids{kBos, kSpHe, kLlo}));
  EXPECT_EQ(tok.encode("", true, false), (Ids{kBos}));
  EXPECT_EQ(tok.encode("", false, false), Ids{});
}

TEST(SpmTokenizer, TiesMergeLeftmost) {
  VocabSpec spec = spm_spec();
  spec.add_space_prefix = false;
  const Tokenizer tok(Vocab::from_spec(std::move(spec)));
  EXPECT_EQ(tok.encode("aaa", false, false), (Ids{kAaP, kA}));
  EXPECT_EQ(tok.encode("hi", false, false), (Ids{kH, id_of(tok, "i")}));  // no space prefix
}

TEST(SpmTokenizer, ByteFallback) {
  const Tokenizer tok(Vocab::from_spec(spm_spec()));
  // "▁hé": ▁h merges; é has no piece and goes out as its two bytes.
  EXPECT_EQ(tok.encode("h\u00E9", false, false), (Ids{kSpH, byte_token(0xC3), byte_token(0xA9)}));
  EXPECT_EQ(tok.decode(Ids{byte_token(0xC3), byte_token(0xA9)}), "\u00E9");
}

TEST(SpmTokenizer, UnknownWhenNoByteToken) {
  VocabSpec spec = spm_spec();
  spec.tokens[byte_token('z')] = "<0xZZ-gone>";
  const Tokenizer tok(Vocab::from_spec(std::move(spec)));
  EXPECT_EQ(tok.encode("z", false, false), (Ids{kSp, kUnk}));
}

TEST(SpmTokenizer, SpacePrefixAfterEverySpecialToken) {
  const Tokenizer tok(Vocab::from_spec(spm_spec()));
  EXPECT_EQ(tok.encode("<s>hello</s>hello", false, true), (Ids{kBos, kSpHe, kLlo, kEos, kSpHe, kLlo}));
  // Without parse_special, control text is plain text (and <unk> too).
  const Ids as_text = tok.encode("<s>", false, false);
  EXPECT_EQ(as_text.front(), kSp);
  EXPECT_EQ(tok.encode("<unk>", false, true), (Ids{kUnk}));
}

TEST(SpmTokenizer, DecodeDropsThePrefixSpace) {
  const Tokenizer tok(Vocab::from_spec(spm_spec()));
  EXPECT_EQ(tok.decode(Ids{kSpHe, kLlo}), "hello");
  EXPECT_EQ(tok.decode(Ids{kBos, kSpHe, kLlo}), "hello");
  EXPECT_EQ(tok.decode(Ids{kBos, kSpHe, kLlo}, {.render_special = true}), "<s>hello");
  EXPECT_EQ(tok.decode(Ids{kSpHe, kLlo}, {.starts_text = false}), " hello");
  EXPECT_EQ(tok.decode(Ids{kSpHe, kSpHe}), "he he");
  EXPECT_EQ(tok.piece(kSpHe), " he");
  for (std::string text : {"hello", " hello  hello ", "hi\n\u00E9\U0001F600", "aaa"})
    EXPECT_EQ(tok.decode(tok.encode(text, true, false)), text) << text;
}

TEST(SpmVocab, Defaults) {
  VocabSpec spec = spm_spec();
  const Vocab vocab = Vocab::from_spec(std::move(spec));
  EXPECT_EQ(vocab.kind(), VocabKind::Llama);
  EXPECT_EQ(vocab.bos(), kBos);
  EXPECT_EQ(vocab.eos(), kEos);
  EXPECT_EQ(vocab.unk(), kUnk);
  EXPECT_TRUE(vocab.add_bos());
  EXPECT_FALSE(vocab.add_eos());
  EXPECT_TRUE(vocab.add_space_prefix());
  EXPECT_EQ(vocab.eog_ids(), (Ids{kEos}));
  EXPECT_FLOAT_EQ(vocab.score(kHeP), -1.0f);
}

// --- loading from GGUF ---

test::GgufWriter spm_writer() {
  const VocabSpec spec = spm_spec();
  test::GgufWriter w;
  w.add("general.architecture", test::meta_string("llama"));
  w.add("tokenizer.ggml.model", test::meta_string("llama"));
  w.add("tokenizer.ggml.tokens", test::meta_string_array(spec.tokens));
  w.add("tokenizer.ggml.scores", test::meta_f32_array(spec.scores));
  std::vector<int32_t> types;
  for (TokenType t : spec.types) types.push_back(static_cast<int32_t>(t));
  w.add("tokenizer.ggml.token_type", test::meta_i32_array(types));
  w.add("tokenizer.ggml.bos_token_id", test::meta_u32(kBos));
  w.add("tokenizer.ggml.eos_token_id", test::meta_u32(kEos));
  w.add("tokenizer.chat_template", test::meta_string("{{ messages }}"));
  return w;
}

Vocab load(const test::GgufWriter& w) {
  const test::ScratchFile file(w.bytes());
  return Vocab::from_gguf(GgufFile::open(file.path()));
}

std::string load_error(const test::GgufWriter& w) {
  try {
    load(w);
  } catch (const TokenizerError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(VocabFromGguf, ReadsTheTokenizerKeys) {
  test::GgufWriter w = spm_writer();
  w.add("tokenizer.ggml.add_bos_token", test::meta_bool(false));
  w.add("tokenizer.ggml.add_space_prefix", test::meta_bool(false));
  w.add("tokenizer.ggml.padding_token_id", test::meta_u32(kUnk));
  const Vocab vocab = load(w);
  EXPECT_EQ(vocab.size(), 3 + 256 + 14);
  EXPECT_EQ(vocab.text(kSpHe), "\u2581he");
  EXPECT_EQ(vocab.type(byte_token(7)), TokenType::Byte);
  EXPECT_FLOAT_EQ(vocab.score(kSpH), -5.0f);
  EXPECT_FALSE(vocab.add_bos());
  EXPECT_FALSE(vocab.add_space_prefix());
  EXPECT_EQ(vocab.pad(), kUnk);
  EXPECT_EQ(vocab.chat_template(), "{{ messages }}");
}

TEST(VocabFromGguf, OutOfRangeIdKeepsTheDefault) {
  test::GgufWriter w = spm_writer();
  w.set("tokenizer.ggml.bos_token_id", test::meta_u32(100000));
  EXPECT_EQ(load(w).bos(), 1);
}

TEST(VocabFromGguf, RefusesWhatItCannotUse) {
  auto expect_error = [](const test::GgufWriter& w, std::string_view fragment) {
    const std::string message = load_error(w);
    EXPECT_NE(message.find(fragment), std::string::npos) << "expected '" << fragment << "' in: " << message;
  };
  expect_error(spm_writer().remove("tokenizer.ggml.model"), "tokenizer.ggml.model");
  expect_error(spm_writer().set("tokenizer.ggml.model", test::meta_string("bert")), "'bert'");
  expect_error(spm_writer().remove("tokenizer.ggml.tokens"), "tokenizer.ggml.tokens");
  expect_error(spm_writer().set("tokenizer.ggml.tokens", test::meta_string_array({})), "tokenizer.ggml.tokens is empty");
  expect_error(spm_writer().set("tokenizer.ggml.token_type", test::meta_i32_array(std::vector<int32_t>{1, 1})),
               "tokenizer.ggml.token_type has 2 entries");
  expect_error(spm_writer().set("tokenizer.ggml.scores", test::meta_f32_array(std::vector<float>{0})),
               "tokenizer.ggml.scores has 1 entries");
  test::GgufWriter gpt2 = spm_writer();
  gpt2.set("tokenizer.ggml.model", test::meta_string("gpt2"));
  expect_error(gpt2, "tokenizer.ggml.merges");
  gpt2.add("tokenizer.ggml.merges", test::meta_string_array({"a b"}));
  gpt2.add("tokenizer.ggml.pre", test::meta_string("martian"));
  expect_error(gpt2, "tokenizer.ggml.pre 'martian'");
  gpt2.set("tokenizer.ggml.pre", test::meta_string("gpt-2"));
  gpt2.add("tokenizer.ggml.add_eos_token", test::meta_bool(true));
  gpt2.set("tokenizer.ggml.eos_token_id", test::meta_u32(1u << 30));
  // Out of range and the gpt2 default (11) is taken: fine here, 273 tokens.
  EXPECT_EQ(load(gpt2).eos(), 11);
}

}  // namespace
}  // namespace troupe
