// A conversation as prompt tokens: the chat template's text, tokenized with special tokens
// parsed, and BOS added by the vocabulary's rule unless the template already wrote it.
// Thread safety: as Tokenizer and ChatTemplate (immutable): callable concurrently.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "model/chat_template.hpp"
#include "model/tokenizer.hpp"

namespace troupe {

// Throws ChatTemplateError for a conversation the template refuses.
std::vector<int32_t> encode_chat(const Tokenizer& tokenizer, const ChatTemplate& chat_template,
                                 std::span<const ChatMessage> messages);

}  // namespace troupe
