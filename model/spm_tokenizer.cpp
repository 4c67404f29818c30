#include "model/spm_tokenizer.hpp"

#include <string>

#include "model/bpe_merge.hpp"

namespace troupe {
namespace {

constexpr std::string_view kEscapedSpace = "\xE2\x96\x81";  // U+2581, sentencepiece's space

}  // namespace

SpmTokenizer::SpmTokenizer(const Vocab& vocab) : vocab_(vocab) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (int byte = 0; byte < 256; ++byte) {
    const std::string name = {'<', '0', 'x', kHex[byte >> 4], kHex[byte & 15], '>'};
    std::optional<int32_t> id = vocab.find(name);
    if (!id) id = vocab.find(std::string(1, static_cast<char>(byte)));
    byte_tokens_[byte] = id.value_or(kNoToken);
  }
}

void SpmTokenizer::encode(std::string_view fragment, bool after_special, std::vector<int32_t>& out) const {
  std::string text;
  text.reserve(fragment.size() + 3);
  if (after_special && vocab_.add_space_prefix()) text += kEscapedSpace;
  for (char c : fragment) {
    if (c == ' ')
      text += kEscapedSpace;
    else
      text += c;
  }
  std::vector<BpeSymbol> symbols;
  split_symbols(text, symbols);
  merge_symbols<float>(text, symbols, [&](std::string_view left, std::string_view right) -> std::optional<float> {
    // Neighbours are contiguous in the text, so the merged text is a view too.
    const std::string_view merged(left.data(), left.size() + right.size());
    const auto id = vocab_.find(merged);
    if (!id) return std::nullopt;
    return vocab_.score(*id);
  });
  for (const BpeSymbol& symbol : symbols) {
    if (symbol.len == 0) continue;
    const std::string_view piece = std::string_view(text).substr(symbol.begin, symbol.len);
    if (const auto id = vocab_.find(piece)) {
      out.push_back(*id);
      continue;
    }
    for (char c : piece) {
      const auto byte = static_cast<uint8_t>(c);
      int32_t id = byte_tokens_[byte];
      if (id == kNoToken) id = vocab_.unk();
      if (id == kNoToken) {
        static constexpr char kHex[] = "0123456789ABCDEF";
        throw TokenizerError(std::string("the vocabulary has no token for byte 0x") + kHex[byte >> 4] +
                             kHex[byte & 15] + " (no <0x..> byte token and no unknown token)");
      }
      out.push_back(id);
    }
  }
}

}  // namespace troupe
