#include "model/bpe_tokenizer.hpp"

#include "model/bpe_byte_map.hpp"
#include "model/bpe_merge.hpp"
#include "model/bpe_pretokenizer.hpp"
#include "model/unicode.hpp"

namespace troupe {

void BpeTokenizer::encode(std::string_view text, bool, std::vector<int32_t>& out) const {
  const std::vector<char32_t> cpts = decode_utf8_lenient(text);
  const std::vector<std::size_t> words = split_words(vocab_.pre_tokenizer().kind, cpts);
  std::string utf8;
  std::string word;
  std::vector<BpeSymbol> symbols;
  std::size_t begin = 0;
  for (std::size_t len : words) {
    utf8.clear();
    for (std::size_t k = begin; k < begin + len; ++k) append_utf8(utf8, cpts[k]);
    begin += len;
    word.clear();
    for (char byte : utf8) word += bpe_symbol_of_byte(static_cast<uint8_t>(byte));

    if (vocab_.pre_tokenizer().ignore_merges) {
      if (const auto id = vocab_.find(word)) {
        out.push_back(*id);
        continue;
      }
    }
    split_symbols(word, symbols);
    merge_symbols<int>(word, symbols, [this](std::string_view left, std::string_view right) -> std::optional<int> {
      const int rank = vocab_.merge_rank(left, right);
      if (rank < 0) return std::nullopt;
      return -rank;
    });
    for (const BpeSymbol& symbol : symbols) {
      if (symbol.len == 0) continue;
      const std::string_view piece = std::string_view(word).substr(symbol.begin, symbol.len);
      if (const auto id = vocab_.find(piece)) {
        out.push_back(*id);
        continue;
      }
      for (std::size_t i = 0; i < piece.size(); ++i)
        if (const auto id = vocab_.find(piece.substr(i, 1))) out.push_back(*id);
    }
  }
}

}  // namespace troupe
