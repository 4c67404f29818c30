// Codepoint classes, UTF-8 reading/writing and the GPT-2 byte alphabet. Expected values are
// Unicode facts (UnicodeData.txt categories, PropList.txt White_Space, the Unicode
// standard's table 3-8 example of U+FFFD substitution) and GPT-2's published byte mapping.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "model/bpe_byte_map.hpp"
#include "model/unicode.hpp"

namespace troupe {
namespace {

TEST(CharClass, FollowsUnicodeGeneralCategories) {
  EXPECT_EQ(char_class(U'a'), CharClass::Letter);
  EXPECT_EQ(char_class(U'Z'), CharClass::Letter);
  EXPECT_EQ(char_class(0x00E9), CharClass::Letter);   // é Ll
  EXPECT_EQ(char_class(0x00AA), CharClass::Letter);   // ª Lo
  EXPECT_EQ(char_class(0x02B0), CharClass::Letter);   // ʰ Lm
  EXPECT_EQ(char_class(0x01C5), CharClass::Letter);   // ǅ Lt
  EXPECT_EQ(char_class(0x4E2D), CharClass::Letter);   // 中 Lo
  EXPECT_EQ(char_class(0x1D518), CharClass::Letter);  // 𝔘 Lu (plane 1)
  EXPECT_EQ(char_class(U'7'), CharClass::Number);
  EXPECT_EQ(char_class(0x0663), CharClass::Number);   // ٣ Nd
  EXPECT_EQ(char_class(0x216B), CharClass::Number);   // Ⅻ Nl
  EXPECT_EQ(char_class(0x00BD), CharClass::Number);   // ½ No
  EXPECT_EQ(char_class(0x00B2), CharClass::Number);   // ² No
  EXPECT_EQ(char_class(U'!'), CharClass::Punctuation);
  EXPECT_EQ(char_class(U'_'), CharClass::Punctuation);  // Pc
  EXPECT_EQ(char_class(U'-'), CharClass::Punctuation);  // Pd
  EXPECT_EQ(char_class(0x300C), CharClass::Punctuation);  // 「 Ps
  EXPECT_EQ(char_class(0x00AB), CharClass::Punctuation);  // « Pi
  EXPECT_EQ(char_class(U'$'), CharClass::Other);       // Sc
  EXPECT_EQ(char_class(U'+'), CharClass::Other);       // Sm
  EXPECT_EQ(char_class(U'`'), CharClass::Other);       // Sk
  EXPECT_EQ(char_class(0x0301), CharClass::Other);     // combining acute, Mn
  EXPECT_EQ(char_class(0x1F600), CharClass::Other);    // 😀 So
  EXPECT_EQ(char_class(0xE000), CharClass::Other);     // private use
  EXPECT_EQ(char_class(0x0378), CharClass::Other);     // unassigned
  EXPECT_EQ(char_class(0x10FFFF), CharClass::Other);
  EXPECT_EQ(char_class(0x110000), CharClass::Other);   // beyond Unicode
  EXPECT_EQ(char_class(U' '), CharClass::Other);
}

TEST(CharClass, TablesAreUnicode15_1) {
  // Kawi (Unicode 15.0) letters and U+31EF (15.1, So); U+1C89 is assigned only in 16.0.
  EXPECT_EQ(char_class(0x11F04), CharClass::Letter);
  EXPECT_EQ(char_class(0x31EF), CharClass::Other);
  EXPECT_EQ(char_class(0x2EBF0), CharClass::Letter);  // CJK extension I (15.1)
  EXPECT_EQ(char_class(0x1C89), CharClass::Other);
}

TEST(WhiteSpace, IsThePropListProperty) {
  for (char32_t c : {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000, 0x2005, 0x200A, 0x2028,
                     0x2029, 0x202F, 0x205F, 0x3000})
    EXPECT_TRUE(is_white_space(c)) << std::hex << static_cast<uint32_t>(c);
  // Python's isspace() says yes to U+001C..U+001F; White_Space does not. Nor to ZWSP, the
  // Mongolian vowel separator (since Unicode 6.3) or the BOM.
  for (char32_t c : {0x1C, 0x1F, 0x200B, 0x180E, 0xFEFF, 0x08, static_cast<int>(U'a'), 0x110000})
    EXPECT_FALSE(is_white_space(c)) << std::hex << static_cast<uint32_t>(c);
}

TEST(Utf8, LeadLengthFromHighBits) {
  EXPECT_EQ(utf8_lead_length(0x41), 1u);
  EXPECT_EQ(utf8_lead_length(0x80), 1u);  // a stray continuation byte stands alone
  EXPECT_EQ(utf8_lead_length(0xC3), 2u);
  EXPECT_EQ(utf8_lead_length(0xE2), 3u);
  EXPECT_EQ(utf8_lead_length(0xF0), 4u);
  EXPECT_EQ(utf8_lead_length(0xFF), 4u);
}

TEST(Utf8, LenientDecodeReplacesEachBadByte) {
  EXPECT_EQ(decode_utf8_lenient("a\xC3\xA9\xF0\x9F\x98\x80"), (std::vector<char32_t>{U'a', 0xE9, 0x1F600}));
  EXPECT_EQ(decode_utf8_lenient("\x80"), (std::vector<char32_t>{kReplacementChar}));
  EXPECT_EQ(decode_utf8_lenient("\xE4\xB8"), (std::vector<char32_t>{kReplacementChar, kReplacementChar}));
  EXPECT_EQ(decode_utf8_lenient("\xE4" "a"), (std::vector<char32_t>{kReplacementChar, U'a'}));
  EXPECT_EQ(decode_utf8_lenient("\xF8\x80"), (std::vector<char32_t>{kReplacementChar, kReplacementChar}));
  // llama.cpp takes overlong forms and surrogates as they come.
  EXPECT_EQ(decode_utf8_lenient(std::string("\xC0\x80", 2)), (std::vector<char32_t>{0}));
  EXPECT_EQ(decode_utf8_lenient("\xED\xA0\x80"), (std::vector<char32_t>{0xD800}));
  EXPECT_TRUE(decode_utf8_lenient("").empty());
}

TEST(Utf8, AppendEncodesEveryLength) {
  auto encode = [](char32_t c) {
    std::string s;
    append_utf8(s, c);
    return s;
  };
  EXPECT_EQ(encode(0x7F), "\x7F");
  EXPECT_EQ(encode(0x80), "\xC2\x80");
  EXPECT_EQ(encode(0x7FF), "\xDF\xBF");
  EXPECT_EQ(encode(0x800), "\xE0\xA0\x80");
  EXPECT_EQ(encode(0xFFFF), "\xEF\xBF\xBF");
  EXPECT_EQ(encode(0x10000), "\xF0\x90\x80\x80");
  EXPECT_EQ(encode(0x10FFFF), "\xF4\x8F\xBF\xBF");
  EXPECT_EQ(encode(0x110000), "\xEF\xBF\xBD");
}

std::string valid(std::string_view bytes, bool final, std::size_t* consumed = nullptr) {
  std::string out;
  const std::size_t n = append_valid_utf8(bytes, final, out);
  if (consumed) *consumed = n;
  return out;
}

TEST(Utf8, ValidReplacesMaximalSubparts) {
  // The Unicode standard's example (table 3-8): 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64.
  EXPECT_EQ(valid("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64", true),
            "a\uFFFD\uFFFD\uFFFDb\uFFFDc\uFFFD\uFFFDd");
  EXPECT_EQ(valid("\xE0\x80\x80", true), "\uFFFD\uFFFD\uFFFD");  // overlong
  EXPECT_EQ(valid("\xED\xA0\x80", true), "\uFFFD\uFFFD\uFFFD");  // surrogate
  EXPECT_EQ(valid("\xF4\x90\x80\x80", true), "\uFFFD\uFFFD\uFFFD\uFFFD");  // above U+10FFFF
  EXPECT_EQ(valid("\xC0\xAF\xFF", true), "\uFFFD\uFFFD\uFFFD");
  EXPECT_EQ(valid("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", true), "caf\u00E9 \u20AC \U0001F600");
}

TEST(Utf8, ValidHoldsBackAnIncompleteTail) {
  std::size_t consumed = 0;
  EXPECT_EQ(valid("ab\xE2\x82", false, &consumed), "ab");
  EXPECT_EQ(consumed, 2u);
  EXPECT_EQ(valid("ab\xE2\x82", true, &consumed), "ab\uFFFD");
  EXPECT_EQ(consumed, 4u);
  EXPECT_EQ(valid("\xF0\x9F\x98", false, &consumed), "");
  EXPECT_EQ(consumed, 0u);
  // A tail that can no longer complete is not held back.
  EXPECT_EQ(valid("\xE2\x41", false, &consumed), "\uFFFD" "A");
  EXPECT_EQ(consumed, 2u);
  EXPECT_EQ(valid("x\xED\xA0", false, &consumed), "x\uFFFD\uFFFD");
  EXPECT_EQ(consumed, 3u);
}

TEST(BpeByteMap, IsGpt2sAlphabet) {
  EXPECT_EQ(bpe_symbol_of_byte('a'), "a");
  EXPECT_EQ(bpe_symbol_of_byte('!'), "!");
  EXPECT_EQ(bpe_symbol_of_byte(0x00), "\u0100");  // Ā
  EXPECT_EQ(bpe_symbol_of_byte('\n'), "\u010A");  // Ċ
  EXPECT_EQ(bpe_symbol_of_byte(' '), "\u0120");   // Ġ
  EXPECT_EQ(bpe_symbol_of_byte(0x7F), "\u0121");  // ġ
  EXPECT_EQ(bpe_symbol_of_byte(0xA0), "\u0142");  // ł
  EXPECT_EQ(bpe_symbol_of_byte(0xAD), "\u0143");  // Ń
  EXPECT_EQ(bpe_symbol_of_byte(0xC3), "\u00C3");
  EXPECT_EQ(bpe_symbol_of_byte(0xFF), "\u00FF");
  EXPECT_EQ(bpe_byte_of_symbol(0x0120), ' ');
  EXPECT_EQ(bpe_byte_of_symbol(U'a'), 'a');
  EXPECT_EQ(bpe_byte_of_symbol(0x0143), 0xAD);
  EXPECT_EQ(bpe_byte_of_symbol(0x00AD), -1);  // the soft hyphen does not stand for itself
  EXPECT_EQ(bpe_byte_of_symbol(U' '), -1);
  EXPECT_EQ(bpe_byte_of_symbol(0x0144), -1);
  EXPECT_EQ(bpe_byte_of_symbol(0x1F600), -1);
  for (int b = 0; b < 256; ++b) {
    const std::vector<char32_t> cpts = decode_utf8_lenient(bpe_symbol_of_byte(static_cast<uint8_t>(b)));
    ASSERT_EQ(cpts.size(), 1u);
    EXPECT_EQ(bpe_byte_of_symbol(cpts[0]), b);
  }
}

}  // namespace
}  // namespace troupe
