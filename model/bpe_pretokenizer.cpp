#include "model/bpe_pretokenizer.hpp"

#include <algorithm>
#include <array>

#include "model/unicode.hpp"

namespace troupe {
namespace {

struct NamedSettings {
  std::string_view name;
  BpePreTokenizerSettings settings;
};

constexpr BpePreTokenizerSettings kDefault{BpePreTokenizer::Default, false, false};
constexpr BpePreTokenizerSettings kGpt2{BpePreTokenizer::Gpt2, false, false};
constexpr BpePreTokenizerSettings kFalcon{BpePreTokenizer::Falcon, false, false};
constexpr BpePreTokenizerSettings kDigitsGpt2{BpePreTokenizer::DigitsGpt2, false, false};
constexpr BpePreTokenizerSettings kLlama3{BpePreTokenizer::Llama3, true, true};
constexpr BpePreTokenizerSettings kLlama3Regex{BpePreTokenizer::Llama3, false, false};
constexpr BpePreTokenizerSettings kQwen2{BpePreTokenizer::Qwen2, false, false};

// llama.cpp's names (llama-vocab.cpp) for the regex sequences implemented here; "gpt2" is
// accepted as well as llama.cpp's "gpt-2".
constexpr std::array kNamedSettings = {
    NamedSettings{"default", kDefault},       NamedSettings{"llama3", kLlama3},
    NamedSettings{"llama-v3", kLlama3},       NamedSettings{"llama-bpe", kLlama3},
    NamedSettings{"falcon3", kLlama3},        NamedSettings{"falcon-h1", kLlama3},
    NamedSettings{"pixtral", kLlama3},        NamedSettings{"midm-2.0", kLlama3},
    NamedSettings{"lfm2", kLlama3},           NamedSettings{"dbrx", kLlama3Regex},
    NamedSettings{"smaug-bpe", kLlama3Regex}, NamedSettings{"falcon", kFalcon},
    NamedSettings{"gpt2", kGpt2},             NamedSettings{"gpt-2", kGpt2},
    NamedSettings{"phi-2", kGpt2},            NamedSettings{"mpt", kGpt2},
    NamedSettings{"olmo", kGpt2},             NamedSettings{"jais", kGpt2},
    NamedSettings{"trillion", kGpt2},         NamedSettings{"jina-es", kGpt2},
    NamedSettings{"jina-de", kGpt2},          NamedSettings{"jina-v2-es", kGpt2},
    NamedSettings{"jina-v2-de", kGpt2},       NamedSettings{"gigachat", kGpt2},
    NamedSettings{"a.x-4.0", kGpt2},          NamedSettings{"mellum", kGpt2},
    NamedSettings{"exaone4", kGpt2},          NamedSettings{"smollm", kDigitsGpt2},
    NamedSettings{"starcoder", kDigitsGpt2},  NamedSettings{"refact", kDigitsGpt2},
    NamedSettings{"command-r", kDigitsGpt2},  NamedSettings{"codeshell", kDigitsGpt2},
    NamedSettings{"exaone", kDigitsGpt2},     NamedSettings{"minerva-7b", kDigitsGpt2},
    NamedSettings{"qwen2", kQwen2},           NamedSettings{"deepseek-r1-qwen", kQwen2},
    NamedSettings{"megrez", kQwen2},          NamedSettings{"stablelm2", kQwen2},
    NamedSettings{"hunyuan", kQwen2},
};

using Pieces = std::vector<std::size_t>;

bool is_letter(char32_t c) { return char_class(c) == CharClass::Letter; }
bool is_number(char32_t c) { return char_class(c) == CharClass::Number; }
// [^\s\p{L}\p{N}]
bool is_other(char32_t c) {
  const CharClass cls = char_class(c);
  return cls != CharClass::Letter && cls != CharClass::Number && !is_white_space(c);
}
bool is_newline(char32_t c) { return c == '\r' || c == '\n'; }
bool is_ascii_digit(char32_t c) { return c >= '0' && c <= '9'; }
char32_t ascii_lower(char32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

// Calls scan(begin, end, pieces) for every piece of `chunks`; scan appends the lengths of the
// words it cuts [begin, end) into.
template <typename Scan>
Pieces refine(std::span<const char32_t> cpts, const Pieces& chunks, Scan scan) {
  Pieces out;
  out.reserve(chunks.size());
  std::size_t begin = 0;
  for (std::size_t len : chunks) {
    scan(cpts, begin, begin + len, out);
    begin += len;
  }
  return out;
}

// A regex without alternatives that can match empty text, searched left to right as
// std::regex_iterator does: every match is a piece and so is the text between matches.
// match(cpts, pos, end) returns the length of the match starting at pos (0: none).
template <typename Match>
auto search_pieces(Match match) {
  return [match](std::span<const char32_t> cpts, std::size_t begin, std::size_t end, Pieces& out) {
    std::size_t gap_begin = begin;
    std::size_t pos = begin;
    while (pos < end) {
      const std::size_t len = match(cpts, pos, end);
      if (len == 0) {
        ++pos;
        continue;
      }
      if (pos > gap_begin) out.push_back(pos - gap_begin);
      out.push_back(len);
      pos += len;
      gap_begin = pos;
    }
    if (end > gap_begin) out.push_back(end - gap_begin);
  };
}

template <typename Pred>
auto run_of(Pred pred) {
  return [pred](std::span<const char32_t> cpts, std::size_t pos, std::size_t end) {
    std::size_t p = pos;
    while (p < end && pred(cpts[p])) ++p;
    return p - pos;
  };
}

template <typename Pred>
auto one_of(Pred pred) {
  return [pred](std::span<const char32_t> cpts, std::size_t pos, std::size_t) -> std::size_t {
    return pred(cpts[pos]) ? 1 : 0;
  };
}

std::size_t digit_triple(std::span<const char32_t> cpts, std::size_t pos, std::size_t end) {
  return pos + 3 <= end && is_ascii_digit(cpts[pos]) && is_ascii_digit(cpts[pos + 1]) &&
                 is_ascii_digit(cpts[pos + 2])
             ? 3
             : 0;
}

// [\p{P}\$\+<=>\^~\|]+ (with_backtick adds `, as the falcon regex does)
auto punctuation_run(bool with_backtick) {
  return run_of([with_backtick](char32_t c) {
    if (char_class(c) == CharClass::Punctuation) return true;
    switch (c) {
      case '$': case '+': case '<': case '=': case '>': case '^': case '~': case '|': return true;
      case '`': return with_backtick;
      default: return false;
    }
  });
}

// Length of the contraction 's 't 're 've 'm 'll 'd at pos (0: none); ASCII case folded
// when case_insensitive.
std::size_t contraction(std::span<const char32_t> cpts, std::size_t pos, std::size_t end, bool case_insensitive) {
  if (cpts[pos] != '\'' || pos + 1 >= end) return 0;
  auto at = [&](std::size_t i) { return case_insensitive ? ascii_lower(cpts[i]) : cpts[i]; };
  const char32_t a = at(pos + 1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (pos + 2 >= end) return 0;
  const char32_t b = at(pos + 2);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

// Whitespace at the end of a rule list: \s+(?!\S)|\s+ — a run followed by more text keeps its
// last whitespace for the next word.
std::size_t whitespace_word(std::span<const char32_t> cpts, std::size_t pos, std::size_t end) {
  std::size_t n = 0;
  while (pos + n < end && is_white_space(cpts[pos + n])) ++n;
  if (n > 1 && pos + n < end) return n - 1;
  return std::max<std::size_t>(n, 1);
}

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
void scan_gpt2(std::span<const char32_t> cpts, std::size_t begin, std::size_t end, Pieces& out) {
  std::size_t pos = begin;
  while (pos < end) {
    std::size_t len = contraction(cpts, pos, end, false);
    if (len == 0) {
      const std::size_t p = pos + (cpts[pos] == ' ' ? 1 : 0);
      if (p < end && (is_letter(cpts[p]) || is_number(cpts[p]) || is_other(cpts[p]))) {
        const CharClass cls = char_class(cpts[p]);
        auto same_kind = [&](char32_t c) {
          return cls == CharClass::Letter ? is_letter(c) : cls == CharClass::Number ? is_number(c) : is_other(c);
        };
        std::size_t q = p;
        while (q < end && same_kind(cpts[q])) ++q;
        len = q - pos;
      } else {
        len = whitespace_word(cpts, pos, end);
      }
    }
    out.push_back(len);
    pos += len;
  }
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}|
//  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
auto scan_llama3(std::size_t max_digits) {
  return [max_digits](std::span<const char32_t> cpts, std::size_t begin, std::size_t end, Pieces& out) {
    std::size_t pos = begin;
    while (pos < end) {
      const char32_t c = cpts[pos];
      std::size_t len = contraction(cpts, pos, end, true);
      if (len > 0) {
        out.push_back(len);
        pos += len;
        continue;
      }
      if (!is_newline(c) && !is_number(c) && (is_letter(c) || (pos + 1 < end && is_letter(cpts[pos + 1])))) {
        std::size_t q = pos + 1;
        while (q < end && is_letter(cpts[q])) ++q;
        out.push_back(q - pos);
        pos = q;
        continue;
      }
      if (is_number(c)) {
        std::size_t q = pos;
        while (q < end && is_number(cpts[q]) && q - pos < max_digits) ++q;
        out.push_back(q - pos);
        pos = q;
        continue;
      }
      const std::size_t p = pos + (c == ' ' ? 1 : 0);
      if (p < end && is_other(cpts[p])) {
        std::size_t q = p;
        while (q < end && is_other(cpts[q])) ++q;
        while (q < end && is_newline(cpts[q])) ++q;
        out.push_back(q - pos);
        pos = q;
        continue;
      }
      std::size_t n = 0;
      std::size_t after_last_newline = 0;
      while (pos + n < end && is_white_space(cpts[pos + n])) {
        if (is_newline(cpts[pos + n])) after_last_newline = n + 1;
        ++n;
      }
      len = after_last_newline > 0 ? after_last_newline : whitespace_word(cpts, pos, end);
      out.push_back(len);
      pos += len;
    }
  };
}

}  // namespace

std::optional<BpePreTokenizerSettings> bpe_pretokenizer_settings(std::string_view name) {
  if (name.empty()) return kDefault;
  for (const auto& named : kNamedSettings)
    if (named.name == name) return named.settings;
  return std::nullopt;
}

std::string_view known_bpe_pretokenizer_names() {
  static const std::string names = [] {
    std::string s;
    for (const auto& named : kNamedSettings) {
      if (!s.empty()) s += ", ";
      s += named.name;
    }
    return s;
  }();
  return names;
}

std::vector<std::size_t> split_words(BpePreTokenizer kind, std::span<const char32_t> cpts) {
  Pieces pieces;
  if (cpts.empty()) return pieces;
  pieces.push_back(cpts.size());
  switch (kind) {
    case BpePreTokenizer::Default:
      pieces = refine(cpts, pieces, search_pieces(punctuation_run(false)));
      pieces = refine(cpts, pieces, scan_gpt2);
      pieces = refine(cpts, pieces, search_pieces(run_of(is_number)));
      pieces = refine(cpts, pieces, search_pieces(digit_triple));
      break;
    case BpePreTokenizer::Falcon:
      pieces = refine(cpts, pieces, search_pieces(punctuation_run(true)));
      pieces = refine(cpts, pieces, scan_gpt2);
      pieces = refine(cpts, pieces, search_pieces(digit_triple));
      break;
    case BpePreTokenizer::Gpt2:
      pieces = refine(cpts, pieces, scan_gpt2);
      break;
    case BpePreTokenizer::DigitsGpt2:
      pieces = refine(cpts, pieces, search_pieces(one_of(is_number)));
      pieces = refine(cpts, pieces, scan_gpt2);
      break;
    case BpePreTokenizer::Llama3:
      pieces = refine(cpts, pieces, scan_llama3(3));
      break;
    case BpePreTokenizer::Qwen2:
      pieces = refine(cpts, pieces, scan_llama3(1));
      break;
  }
  return pieces;
}

}  // namespace troupe
