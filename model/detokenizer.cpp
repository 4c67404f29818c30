#include "model/detokenizer.hpp"

#include "model/unicode.hpp"

namespace troupe {

Detokenizer::Detokenizer(const Tokenizer& tokenizer, DecodeOptions options)
    : tokenizer_(&tokenizer), render_special_(options.render_special), drop_space_(options.starts_text) {}

std::string Detokenizer::push(int32_t token) {
  tokenizer_->append_text(token, render_special_, drop_space_, pending_);
  std::string out;
  const std::size_t consumed = append_valid_utf8(pending_, false, out);
  pending_.erase(0, consumed);
  return out;
}

std::string Detokenizer::flush() {
  std::string out;
  append_valid_utf8(pending_, true, out);
  pending_.clear();
  return out;
}

}  // namespace troupe
