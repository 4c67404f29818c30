// Chat templates. detect() recognises the Jinja template a model ships
// (tokenizer.chat_template) by its distinctive markers, and apply() renders a conversation
// byte for byte as that template renders under Hugging Face's settings (trim_blocks,
// lstrip_blocks), generation prompt included. Families, with the marker that selects them:
//   chatml   "<|im_start|>"  <|im_start|>{role}\n{content}<|im_end|>\n ...; a default system
//            message the template spells out (SmolLM2: "You are a helpful AI assistant named
//            SmolLM, trained by Hugging Face") comes first when the first message is not one
//   llama3   "<|start_header_id|>"  [bos]<|start_header_id|>{role}<|end_header_id|>\n\n
//            {content|trim}<|eot_id|> ... (Llama 3.0; later 3.x templates get this format too)
//   gemma    "<start_of_turn>"  [bos]<start_of_turn>user\n{content|trim}<end_of_turn>\n ...,
//            the assistant is spelled "model"; no system role
//   llama2   "[INST]" and "<<SYS>>"  <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user|strip}
//            [/INST] {assistant|strip} </s>...; no generation prompt (none in the template)
//   mistral  "[INST]" without "<<SYS>>"  [bos][INST] {user} [/INST]{assistant}</s>...; no
//            system role
//   zephyr   "<|user|>" (without "<|end|>")  <|system|>\n{content}</s>\n<|user|>\n...
//   plain    no template, or one none of the above recognises (is_fallback()), or chosen by
//            name: "{role}: {content}\n" per message, then "assistant:" as the generation
//            prompt
// [bos] marks templates that write bos_token only when their text mentions it. bos/eos text
// comes from the vocabulary.
// Errors: ChatTemplateError for an empty conversation, a role other than system, user or
// assistant, and what the template itself refuses (roles that do not alternate, a system
// message where none is supported), with the template's own message.
// Immutable after construction; apply may be called concurrently.
#pragma once

#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

#include "model/vocab.hpp"

namespace troupe {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

class ChatTemplateError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ChatTemplate {
 public:
  // The family whose markers `template_text` shows, else the plain fallback.
  static ChatTemplate detect(std::string_view template_text, const Vocab& vocab);
  // A family chosen by name (see known_names()), rendered in its canonical form; throws
  // ChatTemplateError for an unknown name.
  static ChatTemplate named(std::string_view name, const Vocab& vocab);
  static std::string_view known_names();

  std::string apply(std::span<const ChatMessage> messages, bool add_generation_prompt) const;
  std::string_view name() const;
  bool is_fallback() const { return fallback_; }
  // The system message inserted when the conversation has none ("" if none is).
  const std::string& default_system() const { return default_system_; }

 private:
  enum class Family { Chatml, Llama3, Gemma, Llama2, Mistral, Zephyr, Plain };
  ChatTemplate(Family family, const Vocab& vocab);

  Family family_;
  std::string bos_;  // "" when the template does not write bos_token
  std::string eos_;
  std::string default_system_;
  bool generation_prompt_always_ = false;  // Llama 3.0's first template had no condition
  bool fallback_ = false;
};

}  // namespace troupe
