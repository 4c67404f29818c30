// A model's tokenizer vocabulary (the tokenizer.ggml.* keys of a GGUF file) with llama.cpp's
// defaults and per-token overrides applied, so that encoding matches llama.cpp token for
// token: BOS/EOS defaults per vocabulary kind, add_bos on for sentencepiece vocabularies
// unless the file says otherwise, end-of-generation and fill-in-the-middle tokens found by
// their text (<|im_end|>, <|eot_id|>, <end_of_turn>, <fim_pad>, ...) and typed as control.
// Immutable after construction: share it freely between threads. Loading throws
// TokenizerError naming the key that is missing, of the wrong size or unsupported (and the
// GgufFile getters' GgufError for a key of the wrong type).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/bpe_pretokenizer.hpp"
#include "model/tokenizer_error.hpp"

namespace troupe {

class GgufFile;

enum class VocabKind {
  Gpt2,   // tokenizer.ggml.model "gpt2": byte-level BPE driven by ranked merges
  Llama,  // tokenizer.ggml.model "llama": sentencepiece BPE driven by scores, byte fallback
};

// Token types as GGUF numbers them (tokenizer.ggml.token_type).
enum class TokenType : int32_t {
  Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6,
};

inline constexpr int32_t kNoToken = -1;

// The vocabulary as a file states it. Absent optional fields take llama.cpp's defaults.
struct VocabSpec {
  VocabKind kind = VocabKind::Llama;
  std::string pre;                  // tokenizer.ggml.pre (gpt2 only; "" = llama.cpp's default)
  std::vector<std::string> tokens;  // by id
  std::vector<float> scores;        // by id; empty: all 0
  std::vector<TokenType> types;     // by id; empty: all Normal
  std::vector<std::string> merges;  // gpt2: "left right", rank = index
  std::optional<int64_t> bos_id, eos_id, unk_id, pad_id, eot_id, eom_id;
  std::optional<int64_t> fim_pre_id, fim_suf_id, fim_mid_id, fim_pad_id, fim_rep_id, fim_sep_id;
  std::optional<bool> add_bos, add_eos, add_space_prefix;
  std::string chat_template;        // tokenizer.chat_template
};

class Vocab {
 public:
  static Vocab from_gguf(const GgufFile& file);
  static Vocab from_spec(VocabSpec spec);

  Vocab(Vocab&&) noexcept;
  Vocab& operator=(Vocab&&) noexcept;
  ~Vocab();

  VocabKind kind() const;
  const BpePreTokenizerSettings& pre_tokenizer() const;  // gpt2 vocabularies
  int32_t size() const;
  bool contains(int32_t id) const { return id >= 0 && id < size(); }

  // Preconditions for the per-id accessors: contains(id).
  const std::string& text(int32_t id) const;  // as stored ("[EMPTY_<id>]" for an empty one)
  float score(int32_t id) const;
  TokenType type(int32_t id) const;           // after llama.cpp's overrides
  bool is_special(int32_t id) const;          // Control, UserDefined or Unknown
  bool is_eog(int32_t id) const;              // false for any id not in the vocabulary

  std::optional<int32_t> find(std::string_view text) const;  // the last id with that text
  // Rank of the merge "left right" (lower merges first); -1 when there is none.
  int merge_rank(std::string_view left, std::string_view right) const;

  int32_t bos() const;  // kNoToken when the vocabulary has none
  int32_t eos() const;
  int32_t unk() const;
  int32_t pad() const;
  bool add_bos() const;
  bool add_eos() const;
  bool add_space_prefix() const;
  const std::vector<int32_t>& eog_ids() const;  // ascending
  // Special tokens as llama.cpp splits them out of text: longest text first (then lower id).
  const std::vector<int32_t>& special_ids_by_length() const;
  const std::string& chat_template() const;

 private:
  struct Data;
  explicit Vocab(std::unique_ptr<Data> data);
  std::unique_ptr<Data> data_;
};

}  // namespace troupe
