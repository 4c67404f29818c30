#include "daemon/openai_response.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/util/scratch_file.hpp"
#include "tests/util/tiny_model.hpp"

namespace troupe {
namespace {

using json = nlohmann::json;

// The JSON events of an SSE text, and whether it ended with [DONE].
std::pair<std::vector<json>, bool> events(const std::string& sse) {
  std::vector<json> parsed;
  bool done = false;
  std::size_t at = 0;
  while (at < sse.size()) {
    const std::size_t end = sse.find("\n\n", at);
    EXPECT_NE(end, std::string::npos) << "unterminated event";
    const std::string event = sse.substr(at, end - at);
    EXPECT_EQ(event.rfind("data: ", 0), 0u) << event;
    const std::string data = event.substr(6);
    if (data == "[DONE]")
      done = true;
    else
      parsed.push_back(json::parse(data));
    at = end + 2;
  }
  return {parsed, done};
}

TextChunk chunk(std::string text) {
  TextChunk piece;
  piece.text = std::move(text);
  return piece;
}

EndEvent finished(FinishReason reason, int prompt, int completion, int cached) {
  EndEvent end;
  end.finish = reason;
  end.usage = {prompt, completion, cached};
  return end;
}

TEST(CompletionFormatter, ChatStreamRoleFirstFinishLastUsageThenDone) {
  CompletionFormatter formatter(Endpoint::ChatCompletions, "chatcmpl-1", 1700000000, "tiny",
                                nullptr, false);
  std::string sse = formatter.stream_chunk(chunk("Hel"));
  sse += formatter.stream_chunk(chunk("lo \xe2\x82\xac"));
  sse += formatter.stream_end(finished(FinishReason::Stop, 5, 2, 1), true);
  const auto [parsed, done] = events(sse);
  EXPECT_TRUE(done);
  ASSERT_EQ(parsed.size(), 5u);
  for (const json& event : parsed) {
    EXPECT_EQ(event.at("id"), "chatcmpl-1");
    EXPECT_EQ(event.at("object"), "chat.completion.chunk");
    EXPECT_EQ(event.at("created"), 1700000000);
    EXPECT_EQ(event.at("model"), "tiny");
  }
  EXPECT_EQ(parsed[0]["choices"][0]["delta"], (json{{"role", "assistant"}, {"content", ""}}));
  EXPECT_EQ(parsed[1]["choices"][0]["delta"]["content"], "Hel");
  EXPECT_EQ(parsed[2]["choices"][0]["delta"]["content"], "lo \xe2\x82\xac");
  EXPECT_TRUE(parsed[2]["choices"][0]["finish_reason"].is_null());
  EXPECT_EQ(parsed[3]["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(parsed[3]["choices"][0]["delta"], json::object());
  EXPECT_EQ(parsed[4]["choices"], json::array());
  EXPECT_EQ(parsed[4]["usage"],
            (json{{"prompt_tokens", 5}, {"completion_tokens", 2}, {"total_tokens", 7},
                  {"prompt_tokens_details", {{"cached_tokens", 1}}}}));
}

TEST(CompletionFormatter, CompletionStreamWithoutUsage) {
  CompletionFormatter formatter(Endpoint::Completions, "cmpl-1", 1, "m", nullptr, false);
  const auto [parsed, done] =
      events(formatter.stream_chunk(chunk("a\"b")) +
             formatter.stream_end(finished(FinishReason::Length, 1, 1, 0), false));
  EXPECT_TRUE(done);
  ASSERT_EQ(parsed.size(), 2u);
  EXPECT_EQ(parsed[0]["object"], "text_completion");
  EXPECT_EQ(parsed[0]["choices"][0]["text"], "a\"b");
  EXPECT_EQ(parsed[1]["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(parsed[1].count("usage"), 0u);
}

TEST(CompletionFormatter, ErrorEventAfterTheStreamBegan) {
  const auto [parsed, done] = events(CompletionFormatter::stream_error(
      ApiError(504, "deadline reached", "timeout_error", "", "deadline_exceeded")));
  EXPECT_TRUE(done);
  ASSERT_EQ(parsed.size(), 1u);
  EXPECT_EQ(parsed[0]["error"]["code"], "deadline_exceeded");
}

TEST(CompletionFormatter, WholeResponsesCollectTheChunks) {
  CompletionFormatter chat(Endpoint::ChatCompletions, "chatcmpl-2", 2, "m", nullptr, false);
  chat.add(chunk("Hi "));
  chat.add(chunk("there"));
  const json answer = json::parse(chat.response(finished(FinishReason::Stop, 3, 2, 0)));
  EXPECT_EQ(answer["object"], "chat.completion");
  EXPECT_EQ(answer["choices"][0]["message"],
            (json{{"role", "assistant"}, {"content", "Hi there"}}));
  EXPECT_EQ(answer["choices"][0]["finish_reason"], "stop");
  EXPECT_TRUE(answer["choices"][0]["logprobs"].is_null());
  EXPECT_EQ(answer["usage"]["total_tokens"], 5);

  CompletionFormatter text(Endpoint::Completions, "cmpl-2", 2, "m", nullptr, false);
  text.add(chunk("\xf0\x9f"));  // half a character: written as U+FFFD, never an exception
  const json partial = json::parse(text.response(finished(FinishReason::Length, 1, 1, 0)));
  EXPECT_EQ(partial["choices"][0]["text"], "\xef\xbf\xbd");
}

TEST(CompletionFormatter, LogprobsInBothShapes) {
  test::ScratchFile file;
  test::write_tiny_model(test::tiny_model_preset("llama-gpt2-q4_1"), file.path());
  std::shared_ptr<const LoadedModel> model = LoadedModel::open(file.path());
  const Tokenizer& tokenizer = model->tokenizer();
  const int32_t a = 10, b = 11;
  TextChunk piece;
  piece.text = std::string(tokenizer.piece(a)) + std::string(tokenizer.piece(b));
  piece.tokens = {{a, -0.5f, {{a, -0.5f}, {b, -1.5f}}, std::string(tokenizer.piece(a))},
                  {b, -0.25f, {{b, -0.25f}, {a, -2.0f}}, std::string(tokenizer.piece(b))}};

  CompletionFormatter text(Endpoint::Completions, "cmpl-3", 3, "m", model, true);
  text.add(piece);
  const json logprobs = json::parse(text.response(finished(FinishReason::Length, 1, 2, 0)))
                            ["choices"][0]["logprobs"];
  EXPECT_EQ(logprobs["tokens"], (json{tokenizer.piece(a), tokenizer.piece(b)}));
  EXPECT_EQ(logprobs["token_logprobs"], (json{-0.5, -0.25}));
  EXPECT_EQ(logprobs["text_offset"], (json{0, tokenizer.piece(a).size()}));
  EXPECT_EQ(logprobs["top_logprobs"][1][std::string(tokenizer.piece(a))], -2.0);

  CompletionFormatter chat(Endpoint::ChatCompletions, "chatcmpl-3", 3, "m", model, true);
  const auto [parsed, done] = events(chat.stream_chunk(piece));
  ASSERT_EQ(parsed.size(), 2u);
  const json& content = parsed[1]["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 2u);
  EXPECT_EQ(content[0]["token"], tokenizer.piece(a));
  EXPECT_EQ(content[0]["logprob"], -0.5);
  EXPECT_EQ(content[0]["top_logprobs"][1]["token"], tokenizer.piece(b));
  std::vector<int> bytes;
  for (unsigned char c : tokenizer.piece(a)) bytes.push_back(c);
  EXPECT_EQ(content[0]["bytes"], json(bytes));
}

}  // namespace
}  // namespace troupe
