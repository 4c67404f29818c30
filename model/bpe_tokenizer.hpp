// Byte-level BPE for gpt2 vocabularies, as llama.cpp runs it: the pre-tokenizer named by
// tokenizer.ggml.pre cuts the text into words; each word is spelled in the byte stand-ins
// (model/bpe_byte_map.hpp) and merged pair by pair, lowest merge rank first (leftmost on a
// tie), with a priority queue over a linked list of symbols: O(w log w) for a word of w
// bytes, and words are independent, so a text costs about linear time.
// A final symbol that is not a token is emitted byte by byte where single-character tokens
// exist (and dropped where not), as llama.cpp does.
// Thread safety: immutable; encode may run concurrently. The Vocab must outlive this object.
#pragma once

#include "model/tokenizer_engine.hpp"
#include "model/vocab.hpp"

namespace troupe {

class BpeTokenizer final : public TokenizerEngine {
 public:
  explicit BpeTokenizer(const Vocab& vocab) : vocab_(vocab) {}
  void encode(std::string_view text, bool after_special, std::vector<int32_t>& out) const override;

 private:
  const Vocab& vocab_;
};

}  // namespace troupe
