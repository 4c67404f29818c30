// The part of tokenization that differs between vocabulary kinds: one fragment of plain text
// (special tokens already split out by Tokenizer) to token ids. Implementations:
// BpeTokenizer (gpt2) and SpmTokenizer (llama). They read the Vocab they were built with,
// which must outlive them, and keep no state between calls: encode may run concurrently.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace troupe {

class TokenizerEngine {
 public:
  virtual ~TokenizerEngine() = default;
  // Appends the ids of `text` (non-empty) to `out`. `after_special` is true for the first
  // fragment and for one that follows a special token.
  virtual void encode(std::string_view text, bool after_special, std::vector<int32_t>& out) const = 0;
};

}  // namespace troupe
