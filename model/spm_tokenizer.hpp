// Sentencepiece-style BPE for llama vocabularies, as llama.cpp runs it: spaces become U+2581
// ("▁"), a space is prepended to a fragment that starts the text or follows a special token
// when tokenizer.ggml.add_space_prefix is on, then adjacent symbols (UTF-8 characters to
// begin with) merge whenever the merged text is a token, highest token score first (leftmost
// on a tie), with a priority queue over a linked list: O(n log n). What is left that is not a
// token is written as byte tokens <0xNN> (byte fallback); a byte with no token becomes the
// unknown token, or TokenizerError when the vocabulary has none.
// Thread safety: immutable; encode may run concurrently. The Vocab must outlive this object.
#pragma once

#include <array>

#include "model/tokenizer_engine.hpp"
#include "model/vocab.hpp"

namespace troupe {

class SpmTokenizer final : public TokenizerEngine {
 public:
  explicit SpmTokenizer(const Vocab& vocab);
  void encode(std::string_view text, bool after_special, std::vector<int32_t>& out) const override;

 private:
  const Vocab& vocab_;
  std::array<int32_t, 256> byte_tokens_{};  // kNoToken where the vocabulary has none
};

}  // namespace troupe
