// UTF-8 and codepoint classes, as the tokenizers need them.
// - decode_utf8_lenient reads text the way llama.cpp does before pre-tokenizing: a byte that
//   does not start a sequence with the right number of continuation bytes becomes U+FFFD
//   (one per byte); overlong forms and surrogates are taken as they come.
// - append_valid_utf8 is the strict side, for text that leaves the server: it copies
//   well-formed UTF-8, replaces each maximal ill-formed subpart with U+FFFD (Unicode's
//   recommended practice) and holds back an incomplete sequence at the end unless told the
//   input is final.
// - char_class / is_white_space: \p{L}, \p{N}, \p{P} and the White_Space property, from the
//   generated tables (model/unicode_tables.cpp).
// Pure functions over constant data: safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

inline constexpr char32_t kReplacementChar = 0xFFFD;

enum class CharClass : uint8_t { Other = 0, Letter = 1, Number = 2, Punctuation = 3 };

CharClass char_class(char32_t cpt);
bool is_white_space(char32_t cpt);

// Bytes of the sequence a lead byte announces, from its high bits alone (1 for ASCII and for
// stray continuation bytes); callers clip it to the bytes that remain.
std::size_t utf8_lead_length(uint8_t lead);

std::vector<char32_t> decode_utf8_lenient(std::string_view bytes);

// Appends the UTF-8 encoding of cpt; values above U+10FFFF are written as U+FFFD.
void append_utf8(std::string& out, char32_t cpt);

// Appends the well-formed part of `bytes` to `out` as described above and returns how many
// bytes were consumed: all of them when `final`, otherwise all but an incomplete (still
// completable) sequence at the end, which the caller keeps for the next call.
std::size_t append_valid_utf8(std::string_view bytes, bool final, std::string& out);

}  // namespace troupe
