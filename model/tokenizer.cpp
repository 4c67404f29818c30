#include "model/tokenizer.hpp"

#include "model/bpe_byte_map.hpp"
#include "model/bpe_tokenizer.hpp"
#include "model/spm_tokenizer.hpp"
#include "model/unicode.hpp"

namespace troupe {
namespace {

constexpr std::string_view kEscapedSpace = "\xE2\x96\x81";

std::string unescape_spaces(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    if (text.compare(i, kEscapedSpace.size(), kEscapedSpace) == 0) {
      out += ' ';
      i += kEscapedSpace.size();
    } else {
      out += text[i++];
    }
  }
  return out;
}

std::string bytes_of_stand_ins(std::string_view text) {
  std::string out;
  for (char32_t cpt : decode_utf8_lenient(text)) {
    const int byte = bpe_byte_of_symbol(cpt);
    if (byte >= 0)
      out += static_cast<char>(byte);
    else
      append_utf8(out, cpt);  // not a stand-in: kept as written
  }
  return out;
}

// "<0xNN>" -> the byte; empty for any other spelling.
std::string byte_of_byte_token(std::string_view text) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return {};
  const int hi = hex(text[3]), lo = hex(text[4]);
  if (hi < 0 || lo < 0) return {};
  return std::string(1, static_cast<char>(hi * 16 + lo));
}

std::string piece_of(const Vocab& vocab, int32_t id) {
  const std::string& text = vocab.text(id);
  switch (vocab.type(id)) {
    case TokenType::Control:
    case TokenType::UserDefined:
    case TokenType::Unknown:
      return text;
    case TokenType::Normal:
      return vocab.kind() == VocabKind::Llama ? unescape_spaces(text) : bytes_of_stand_ins(text);
    case TokenType::Byte:
      return vocab.kind() == VocabKind::Llama ? byte_of_byte_token(text) : std::string();
    case TokenType::Undefined:
    case TokenType::Unused:
      return {};
  }
  return {};
}

// A run of the input: plain text, or one special token.
struct Fragment {
  std::size_t begin = 0, end = 0;
  int32_t token = kNoToken;
};

std::vector<Fragment> split_special_tokens(const Vocab& vocab, std::string_view text, bool parse_special) {
  std::vector<Fragment> fragments{{0, text.size(), kNoToken}};
  std::vector<Fragment> next;
  for (int32_t id : vocab.special_ids_by_length()) {
    const TokenType type = vocab.type(id);
    if (!parse_special && (type == TokenType::Control || type == TokenType::Unknown)) continue;
    const std::string& special = vocab.text(id);
    next.clear();
    for (const Fragment& f : fragments) {
      if (f.token != kNoToken) {
        next.push_back(f);
        continue;
      }
      std::size_t pos = f.begin;
      while (true) {
        const std::size_t match = text.substr(0, f.end).find(special, pos);
        if (match == std::string_view::npos) break;
        if (match > pos) next.push_back({pos, match, kNoToken});
        next.push_back({match, match + special.size(), id});
        pos = match + special.size();
      }
      if (pos < f.end) next.push_back({pos, f.end, kNoToken});
    }
    fragments.swap(next);
  }
  return fragments;
}

}  // namespace

Tokenizer::Tokenizer(Vocab vocab) : vocab_(std::make_unique<const Vocab>(std::move(vocab))) {
  if (vocab_->kind() == VocabKind::Gpt2)
    engine_ = std::make_unique<const BpeTokenizer>(*vocab_);
  else
    engine_ = std::make_unique<const SpmTokenizer>(*vocab_);
  pieces_.reserve(vocab_->size());
  for (int32_t id = 0; id < vocab_->size(); ++id) pieces_.push_back(piece_of(*vocab_, id));
}

Tokenizer Tokenizer::from_gguf(const GgufFile& file) { return Tokenizer(Vocab::from_gguf(file)); }

Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_special && vocab_->add_bos()) out.push_back(vocab_->bos());
  if (!text.empty()) {
    bool after_special = true;
    for (const Fragment& f : split_special_tokens(*vocab_, text, parse_special)) {
      if (f.token != kNoToken) {
        out.push_back(f.token);
        after_special = true;
      } else {
        engine_->encode(text.substr(f.begin, f.end - f.begin), after_special, out);
        after_special = false;
      }
    }
  }
  if (add_special && vocab_->add_eos()) out.push_back(vocab_->eos());
  return out;
}

void Tokenizer::check_id(int32_t id) const {
  if (!vocab_->contains(id))
    throw TokenizerError("token id " + std::to_string(id) + " is out of range (the vocabulary has " +
                         std::to_string(vocab_->size()) + " tokens)");
}

std::string_view Tokenizer::piece(int32_t id) const {
  check_id(id);
  return pieces_[id];
}

void Tokenizer::append_text(int32_t id, bool render_special, bool& drop_space, std::string& out) const {
  check_id(id);
  std::string_view text = pieces_[id];
  const TokenType type = vocab_->type(id);
  if (!render_special && (type == TokenType::Control || type == TokenType::Unknown)) text = {};
  if (id == vocab_->bos()) {
    out += text;
    drop_space = true;
    return;
  }
  if (drop_space && vocab_->add_space_prefix() && !text.empty() && text.front() == ' ') text.remove_prefix(1);
  drop_space = false;
  out += text;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, DecodeOptions options) const {
  std::string out;
  bool drop_space = options.starts_text;
  for (int32_t id : ids) append_text(id, options.render_special, drop_space, out);
  return out;
}

}  // namespace troupe
