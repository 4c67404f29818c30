// Text <-> token ids for one vocabulary, token for token as llama.cpp's llama_tokenize and
// llama_token_to_piece.
// encode(text, add_special, parse_special): special tokens are split out of the text first,
//   longest first (user-defined ones always; control and unknown ones only when
//   parse_special), then every plain fragment goes through the vocabulary's tokenizer (gpt2:
//   pre-tokenizer + byte-level BPE; llama: sentencepiece BPE with byte fallback). With
//   add_special, BOS and EOS are added where the vocabulary asks for them (add_bos/add_eos).
//   Near-linear in the text length (O(n log n)); any bytes are accepted (invalid UTF-8 is
//   read as U+FFFD, as llama.cpp does).
// decode(ids): the tokens' pieces concatenated, as llama.cpp streams them (no clean-up of
//   spaces before punctuation, which would break round trips). Control and unknown tokens
//   are written only with render_special. Vocabularies that add a prefix space
//   (sentencepiece) lose one leading space on the token that starts the text or follows BOS,
//   so decode(encode(t)) == t for plain text. The result is raw bytes: a cut inside a UTF-8
//   character stays cut (model/detokenizer.hpp streams complete characters only).
// Thread safety: immutable after construction; every member may be called concurrently.
// Ids out of range throw TokenizerError.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/tokenizer_engine.hpp"
#include "model/vocab.hpp"

namespace troupe {

class GgufFile;

struct DecodeOptions {
  bool render_special = false;  // write control/unknown tokens' text, e.g. "<|im_end|>"
  bool starts_text = true;      // false when the ids continue an earlier text (a generation
                                // after its prompt): no prefix space is dropped at the start
};

class Tokenizer {
 public:
  explicit Tokenizer(Vocab vocab);
  static Tokenizer from_gguf(const GgufFile& file);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  const Vocab& vocab() const { return *vocab_; }

  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;
  std::string decode(std::span<const int32_t> ids, DecodeOptions options = {}) const;

  // The bytes a token stands for (control tokens: their text).
  std::string_view piece(int32_t id) const;

  // decode() one token at a time: appends the text of `id` to `out`. `drop_space` carries
  // the prefix-space state between calls; start it at DecodeOptions::starts_text.
  void append_text(int32_t id, bool render_special, bool& drop_space, std::string& out) const;

 private:
  void check_id(int32_t id) const;

  std::unique_ptr<const Vocab> vocab_;
  std::unique_ptr<const TokenizerEngine> engine_;
  std::vector<std::string> pieces_;
};

}  // namespace troupe
