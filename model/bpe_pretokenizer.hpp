// Pre-tokenizers of byte-level BPE vocabularies, named by tokenizer.ggml.pre: they cut a
// text into words that BPE merges never cross. Each reproduces the regex sequence llama.cpp
// runs for that name (leftmost-first alternation, each later regex refining the pieces of
// the earlier ones), scanned by hand over codepoints in linear time.
// Pure functions: safe from any thread.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace troupe {

enum class BpePreTokenizer {
  Default,      // llama.cpp's fallback: punctuation runs, GPT-2 regex, number runs, digit triples
  Gpt2,         // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  Falcon,       // punctuation runs (backtick included), GPT-2 regex, digit triples
  DigitsGpt2,   // every \p{N} alone, then the GPT-2 regex (SmolLM, StarCoder, ...)
  Llama3,       // (?i:'s|..)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|...
  Qwen2,        // Llama3 with \p{N} (single digits) instead of \p{N}{1,3}
};

// What a tokenizer.ggml.pre name sets, as llama.cpp reads it.
struct BpePreTokenizerSettings {
  BpePreTokenizer kind = BpePreTokenizer::Default;
  bool ignore_merges = false;  // a word that is itself a token is not merged piecewise
  bool adds_bos = false;       // default of tokenizer.ggml.add_bos_token for this name
};

// nullopt for a name troupe does not know; "" and "default" give Default.
std::optional<BpePreTokenizerSettings> bpe_pretokenizer_settings(std::string_view name);

// The names bpe_pretokenizer_settings accepts, for error messages.
std::string_view known_bpe_pretokenizer_names();

// Lengths, in codepoints, of the consecutive words of `cpts` (they sum to cpts.size()).
std::vector<std::size_t> split_words(BpePreTokenizer kind, std::span<const char32_t> cpts);

}  // namespace troupe
