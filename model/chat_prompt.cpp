#include "model/chat_prompt.hpp"

#include "model/vocab.hpp"

namespace troupe {

std::vector<int32_t> encode_chat(const Tokenizer& tokenizer, const ChatTemplate& chat_template,
                                 std::span<const ChatMessage> messages) {
  const std::string text = chat_template.apply(messages, true);
  // Special tokens come from the template's text; BOS is added by the vocabulary's rule unless
  // the template wrote it already. EOS never: the model is to continue the conversation.
  std::vector<int32_t> ids = tokenizer.encode(text, false, true);
  const Vocab& vocab = tokenizer.vocab();
  if (vocab.add_bos() && vocab.bos() != kNoToken && (ids.empty() || ids[0] != vocab.bos()))
    ids.insert(ids.begin(), vocab.bos());
  return ids;
}

}  // namespace troupe
