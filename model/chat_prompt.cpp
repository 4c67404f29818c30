#include "model/chat_prompt.hpp"

#include "model/vocab.hpp"

namespace troupe {

std::vector<int32_t> encode_chat(const Tokenizer& tokenizer, const ChatTemplate& chat_template,
                                 std::span<const ChatMessage> messages) {
  const std::string text = chat_template.apply(messages, true);
  std::vector<int32_t> ids = tokenizer.encode(text, true, true);
  // A template that writes BOS itself plus a vocabulary that adds one would start with two.
  const int32_t bos = tokenizer.vocab().bos();
  if (ids.size() >= 2 && ids[0] == bos && ids[1] == bos) ids.erase(ids.begin());
  return ids;
}

}  // namespace troupe
