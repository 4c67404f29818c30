// encode_chat: the template's text with special tokens parsed, and exactly one BOS where the
// vocabulary adds one. Expected texts are written by hand from the ChatML template.
#include <gtest/gtest.h>

#include "model/chat_prompt.hpp"
#include "model/gguf.hpp"
#include "model/vocab.hpp"
#include "tests/util/scratch_file.hpp"
#include "tests/util/tiny_model.hpp"

namespace troupe {
namespace {

struct Loaded {
  test::ScratchFile file;
  GgufFile gguf;
  Tokenizer tokenizer;
  explicit Loaded(const char* preset)
      : file(test::tiny_model_bytes(test::tiny_model_preset(preset))),
        gguf(GgufFile::open(file.path())),
        tokenizer(Tokenizer::from_gguf(gguf)) {}
};

const std::vector<ChatMessage> kConversation = {{"system", "Be brief."}, {"user", "hi"}};
constexpr const char* kChatml =
    "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
    "<|im_start|>assistant\n";

TEST(ChatPrompt, SentencepieceVocabularyGetsOneBos) {
  Loaded model("llama-spm-f32");
  ASSERT_TRUE(model.tokenizer.vocab().add_bos());
  const ChatTemplate chat = ChatTemplate::named("chatml", model.tokenizer.vocab());
  const std::vector<int32_t> ids = encode_chat(model.tokenizer, chat, kConversation);
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(ids[0], model.tokenizer.vocab().bos());
  EXPECT_NE(ids[1], model.tokenizer.vocab().bos());
  EXPECT_EQ(std::count(ids.begin(), ids.end(), model.tokenizer.vocab().eos()), 0);
}

TEST(ChatPrompt, Gpt2VocabularyWithoutBosGetsTheTemplateTextOnly) {
  Loaded model("llama-gpt2-f16");
  ASSERT_FALSE(model.tokenizer.vocab().add_bos());
  const ChatTemplate chat = ChatTemplate::detect(model.tokenizer.vocab().chat_template(),
                                                 model.tokenizer.vocab());
  EXPECT_EQ(chat.name(), "chatml");
  const std::vector<int32_t> ids = encode_chat(model.tokenizer, chat, kConversation);
  EXPECT_EQ(model.tokenizer.decode(ids, DecodeOptions{true, true}), kChatml);
  // The markers are single special tokens, not spelled out.
  const auto im_start = model.tokenizer.vocab().find("<|im_start|>");
  ASSERT_TRUE(im_start.has_value());
  EXPECT_EQ(ids[0], *im_start);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), *im_start), 3);
}

}  // namespace
}  // namespace troupe
