// Generated Unicode data (model/unicode_tables.cpp, made by scripts/gen-unicode-tables):
// the letter / number / punctuation class of every codepoint as sorted ranges, and the
// White_Space property. Read through model/unicode.hpp; constant data, safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>

namespace troupe::unicode_tables {

struct CharClassRange {
  char32_t first;  // the range runs to the next entry's first codepoint (or U+10FFFF)
  uint8_t char_class;  // numbered as troupe::CharClass
};

extern const CharClassRange kCharClassRanges[];
extern const std::size_t kCharClassRangeCount;
extern const char32_t kWhiteSpace[];
extern const std::size_t kWhiteSpaceCount;

}  // namespace troupe::unicode_tables
