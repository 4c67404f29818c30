// Incremental detokenizer for one sequence: push(token) returns the text that the token
// completes, flush() what is left at the end. The output is always well-formed UTF-8 and
// never half a character: bytes of a character that spans tokens (byte-fallback <0xNN>
// tokens, gpt2 byte symbols) are held back until it completes; ill-formed bytes become
// U+FFFD as soon as they can no longer be completed, and flush() turns an incomplete tail
// into U+FFFD. Concatenated, the outputs equal Tokenizer::decode of the same tokens with the
// same options (whenever that is well-formed UTF-8), including the dropped sentencepiece
// prefix space after BOS or at the start of a text.
// Thread safety: none (one per sequence, used by one thread at a time). The Tokenizer must
// outlive it. push throws TokenizerError for an id out of range (and keeps its state).
#pragma once

#include <cstdint>
#include <string>

#include "model/tokenizer.hpp"

namespace troupe {

class Detokenizer {
 public:
  explicit Detokenizer(const Tokenizer& tokenizer, DecodeOptions options = {});

  std::string push(int32_t token);
  std::string flush();

  // Bytes held back (the start of an incomplete character).
  std::size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer* tokenizer_;
  bool render_special_;
  bool drop_space_;
  std::string pending_;
};

}  // namespace troupe
