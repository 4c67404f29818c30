#include "model/unicode.hpp"

#include <algorithm>
#include <array>

#include "model/unicode_tables.hpp"

namespace troupe {
namespace {

CharClass lookup_char_class(char32_t cpt) {
  using unicode_tables::CharClassRange;
  const CharClassRange* begin = unicode_tables::kCharClassRanges;
  const CharClassRange* end = begin + unicode_tables::kCharClassRangeCount;
  const CharClassRange* after =
      std::upper_bound(begin, end, cpt, [](char32_t c, const CharClassRange& r) { return c < r.first; });
  return after == begin ? CharClass::Other : static_cast<CharClass>((after - 1)->char_class);
}

const std::array<CharClass, 256>& latin1_classes() {
  static const std::array<CharClass, 256> table = [] {
    std::array<CharClass, 256> t{};
    for (char32_t c = 0; c < 256; ++c) t[c] = lookup_char_class(c);
    return t;
  }();
  return table;
}

bool is_continuation(uint8_t byte) { return (byte & 0xC0) == 0x80; }

}  // namespace

CharClass char_class(char32_t cpt) {
  if (cpt < 256) return latin1_classes()[cpt];
  if (cpt > 0x10FFFF) return CharClass::Other;
  return lookup_char_class(cpt);
}

bool is_white_space(char32_t cpt) {
  if (cpt <= 0x20) return cpt == 0x20 || (cpt >= 0x09 && cpt <= 0x0D);
  if (cpt < 0x85) return false;
  const char32_t* begin = unicode_tables::kWhiteSpace;
  const char32_t* end = begin + unicode_tables::kWhiteSpaceCount;
  return std::binary_search(begin, end, cpt);
}

std::size_t utf8_lead_length(uint8_t lead) {
  static constexpr uint8_t kLengthByHighNibble[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLengthByHighNibble[lead >> 4];
}

std::vector<char32_t> decode_utf8_lenient(std::string_view bytes) {
  std::vector<char32_t> cpts;
  cpts.reserve(bytes.size());
  const auto* s = reinterpret_cast<const uint8_t*>(bytes.data());
  const std::size_t n = bytes.size();
  std::size_t i = 0;
  while (i < n) {
    const uint8_t b0 = s[i];
    std::size_t len = 0;
    char32_t cpt = 0;
    if (b0 < 0x80) {
      len = 1;
      cpt = b0;
    } else if ((b0 & 0xE0) == 0xC0) {
      len = 2;
      cpt = b0 & 0x1F;
    } else if ((b0 & 0xF0) == 0xE0) {
      len = 3;
      cpt = b0 & 0x0F;
    } else if ((b0 & 0xF8) == 0xF0) {
      len = 4;
      cpt = b0 & 0x07;
    }
    bool complete = len > 0 && i + len <= n;
    for (std::size_t k = 1; complete && k < len; ++k) {
      if (!is_continuation(s[i + k])) complete = false;
      cpt = (cpt << 6) | (s[i + k] & 0x3F);
    }
    if (complete) {
      cpts.push_back(cpt);
      i += len;
    } else {
      cpts.push_back(kReplacementChar);
      i += 1;
    }
  }
  return cpts;
}

void append_utf8(std::string& out, char32_t cpt) {
  if (cpt > 0x10FFFF) cpt = kReplacementChar;
  if (cpt < 0x80) {
    out.push_back(static_cast<char>(cpt));
  } else if (cpt < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cpt >> 6)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else if (cpt < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cpt >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cpt >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  }
}

std::size_t append_valid_utf8(std::string_view bytes, bool final, std::string& out) {
  const auto* s = reinterpret_cast<const uint8_t*>(bytes.data());
  const std::size_t n = bytes.size();
  std::size_t i = 0;
  while (i < n) {
    const uint8_t b0 = s[i];
    if (b0 < 0x80) {
      out.push_back(static_cast<char>(b0));
      ++i;
      continue;
    }
    // Well-formed sequences (Unicode table 3-7): the second byte's range depends on the lead.
    std::size_t len = 0;
    uint8_t second_lo = 0x80, second_hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      len = 2;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      len = 3;
      if (b0 == 0xE0) second_lo = 0xA0;
      if (b0 == 0xED) second_hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      len = 4;
      if (b0 == 0xF0) second_lo = 0x90;
      if (b0 == 0xF4) second_hi = 0x8F;
    }
    if (len == 0) {
      append_utf8(out, kReplacementChar);
      ++i;
      continue;
    }
    std::size_t good = 1;  // bytes of the sequence seen so far that are well-formed
    while (good < len && i + good < n) {
      const uint8_t b = s[i + good];
      const bool ok = good == 1 ? (b >= second_lo && b <= second_hi) : is_continuation(b);
      if (!ok) break;
      ++good;
    }
    if (good == len) {
      out.append(bytes.substr(i, len));
      i += len;
    } else if (i + good == n && !final) {
      return i;  // incomplete at the end: keep it for later
    } else {
      append_utf8(out, kReplacementChar);
      i += good;
    }
  }
  return n;
}

}  // namespace troupe
