// The error the vocabulary, the tokenizers and the detokenizer throw: a malformed or
// unsupported vocabulary (the message names the GGUF key), or a token id out of range.
#pragma once

#include <stdexcept>

namespace troupe {

class TokenizerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace troupe
