// Chat templates: each family fed the template text a model ships, the expected prompt
// written by hand from reading that template (HF's Jinja settings: trim_blocks,
// lstrip_blocks; Python's strip()/trim for |trim and .strip()).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "model/chat_template.hpp"

namespace troupe {
namespace {

using Messages = std::vector<ChatMessage>;

// Template texts as the models ship them (newlines inside string literals are real newlines
// in some, "\n" escapes in others).
const std::string kSmolLM2 =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
const std::string kChatml =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
const std::string kLlama2 =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif "
    "%}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
    "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
    "loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if "
    "message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] "
    "== 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
const std::string kLlama3 =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 "
    "%}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
// Meta's first Llama 3 template always ended with the assistant header.
const std::string kLlama3First =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 "
    "%}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}";
const std::string kMistral =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
    "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
    "message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
    "'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles "
    "are supported!') }}{% endif %}{% endfor %}";
const std::string kZephyr =
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + "
    "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
    "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";
const std::string kGemma2 =
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% "
    "endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
    "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
    "(message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif "
    "%}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if "
    "add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}";

Vocab vocab_with(std::string bos, std::string eos) {
  VocabSpec spec;
  spec.tokens = {"<unk>", std::move(bos), std::move(eos), "a"};
  spec.types = {TokenType::Unknown, TokenType::Control, TokenType::Control, TokenType::Normal};
  return Vocab::from_spec(std::move(spec));
}

const Messages kConversation = {{"system", "You are a helpful assistant"},
                                {"user", "Hello"},
                                {"assistant", "  Hi there  "},
                                {"user", "Who are you"}};
const Messages kNoSystem(kConversation.begin() + 1, kConversation.end());

TEST(ChatTemplate, SmolLM2InsertsItsDefaultSystemPrompt) {
  const Vocab vocab = vocab_with("<|im_start|>", "<|im_end|>");
  const ChatTemplate t = ChatTemplate::detect(kSmolLM2, vocab);
  EXPECT_EQ(t.name(), "chatml");
  EXPECT_FALSE(t.is_fallback());
  EXPECT_EQ(t.default_system(), "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  EXPECT_EQ(t.apply(Messages{{"user", "Hello"}}, true),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(t.apply(Messages{{"system", "Be brief."}, {"user", "Hello"}}, false),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n");
}

TEST(ChatTemplate, ChatmlKeepsContentAsIs) {
  const ChatTemplate t = ChatTemplate::detect(kChatml, vocab_with("<s>", "</s>"));
  EXPECT_EQ(t.name(), "chatml");
  EXPECT_EQ(t.default_system(), "");
  EXPECT_EQ(t.apply(kConversation, true),
            "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
            "<|im_start|>assistant\n  Hi there  <|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST(ChatTemplate, Llama2) {
  const ChatTemplate t = ChatTemplate::detect(kLlama2, vocab_with("<s>", "</s>"));
  EXPECT_EQ(t.name(), "llama2");
  const std::string expected =
      "<s>[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST] Hi there </s>"
      "<s>[INST] Who are you [/INST]";
  EXPECT_EQ(t.apply(kConversation, true), expected);  // the template has no generation prompt
  EXPECT_EQ(t.apply(kConversation, false), expected);
  EXPECT_EQ(t.apply(Messages{{"user", " \tHi\n"}}, true), "<s>[INST] Hi [/INST]");
  EXPECT_THROW(t.apply(Messages{{"user", "a"}, {"user", "b"}}, true), ChatTemplateError);
}

TEST(ChatTemplate, Llama3) {
  const Vocab vocab = vocab_with("<|begin_of_text|>", "<|eot_id|>");
  const ChatTemplate t = ChatTemplate::detect(kLlama3, vocab);
  EXPECT_EQ(t.name(), "llama3");
  const std::string turns =
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>"
      "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
      "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>";
  const std::string header = "<|start_header_id|>assistant<|end_header_id|>\n\n";
  EXPECT_EQ(t.apply(kConversation, true), turns + header);
  EXPECT_EQ(t.apply(kConversation, false), turns);
  EXPECT_EQ(ChatTemplate::detect(kLlama3First, vocab).apply(kConversation, false), turns + header);
}

TEST(ChatTemplate, MistralHasNoSystemRole) {
  const ChatTemplate t = ChatTemplate::detect(kMistral, vocab_with("<s>", "</s>"));
  EXPECT_EQ(t.name(), "mistral");
  EXPECT_EQ(t.apply(kNoSystem, true), "<s>[INST] Hello [/INST]  Hi there  </s>[INST] Who are you [/INST]");
  try {
    t.apply(kConversation, true);
    ADD_FAILURE() << "a system message was accepted";
  } catch (const ChatTemplateError& e) {
    EXPECT_STREQ(e.what(), "Conversation roles must alternate user/assistant/user/assistant/...");
  }
}

TEST(ChatTemplate, Zephyr) {
  const ChatTemplate t = ChatTemplate::detect(kZephyr, vocab_with("<s>", "</s>"));
  EXPECT_EQ(t.name(), "zephyr");
  EXPECT_EQ(t.apply(Messages{{"system", "S"}, {"user", "Hello"}}, true),
            "<|system|>\nS</s>\n<|user|>\nHello</s>\n<|assistant|>\n");
  EXPECT_EQ(t.apply(Messages{{"user", "Hello"}, {"assistant", "Hi"}}, false),
            "<|user|>\nHello</s>\n<|assistant|>\nHi</s>\n");
}

TEST(ChatTemplate, GemmaSpellsTheAssistantModel) {
  const ChatTemplate t = ChatTemplate::detect(kGemma2, vocab_with("<bos>", "<eos>"));
  EXPECT_EQ(t.name(), "gemma");
  EXPECT_EQ(t.apply(kNoSystem, true),
            "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n"
            "<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\n");
  // |trim strips Unicode spaces too (Python's str.strip).
  EXPECT_EQ(t.apply(Messages{{"user", "\u3000 Hi \u00A0\x1F"}}, false), "<bos><start_of_turn>user\nHi<end_of_turn>\n");
  try {
    t.apply(kConversation, true);
    ADD_FAILURE() << "a system message was accepted";
  } catch (const ChatTemplateError& e) {
    EXPECT_STREQ(e.what(), "System role not supported");
  }
}

TEST(ChatTemplate, PlainFallback) {
  const Vocab vocab = vocab_with("<s>", "</s>");
  for (const std::string& text : {std::string(), std::string("{{ messages | tojson }}")}) {
    const ChatTemplate t = ChatTemplate::detect(text, vocab);
    EXPECT_EQ(t.name(), "plain");
    EXPECT_TRUE(t.is_fallback());
    EXPECT_EQ(t.apply(Messages{{"system", "S"}, {"user", "Hello"}}, true), "system: S\nuser: Hello\nassistant:");
  }
  const ChatTemplate chosen = ChatTemplate::named("plain", vocab);
  EXPECT_FALSE(chosen.is_fallback());
  EXPECT_EQ(chosen.apply(Messages{{"user", "Hi"}}, false), "user: Hi\n");
}

TEST(ChatTemplate, ByName) {
  const Vocab vocab = vocab_with("<s>", "</s>");
  EXPECT_EQ(ChatTemplate::named("mistral", vocab).apply(Messages{{"user", "Hi"}}, true), "<s>[INST] Hi [/INST]");
  EXPECT_EQ(ChatTemplate::named("chatml", vocab).apply(Messages{{"user", "Hi"}}, true),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  try {
    ChatTemplate::named("vicuna", vocab);
    ADD_FAILURE() << "an unknown name was accepted";
  } catch (const ChatTemplateError& e) {
    EXPECT_NE(std::string(e.what()).find("zephyr"), std::string::npos) << e.what();
  }
}

TEST(ChatTemplate, RefusesUnknownRolesAndEmptyChats) {
  const ChatTemplate t = ChatTemplate::detect(kChatml, vocab_with("<s>", "</s>"));
  try {
    t.apply(Messages{{"user", "Hi"}, {"tool", "42"}}, true);
    ADD_FAILURE() << "role 'tool' was accepted";
  } catch (const ChatTemplateError& e) {
    EXPECT_NE(std::string(e.what()).find("'tool'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(t.apply(Messages{}, true), ChatTemplateError);
}

}  // namespace
}  // namespace troupe
