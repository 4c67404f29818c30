#include "daemon/openai_request.hpp"

#include <gtest/gtest.h>

#include <string>

namespace troupe {
namespace {

ModelFacts facts() {
  ModelFacts model;
  model.served_name = "tiny";
  model.context_tokens = 100;
  model.max_token_bytes = 4;
  return model;
}

CompletionRequest completion(const std::string& body) {
  return parse_completion_request(body, Endpoint::Completions, facts());
}

CompletionRequest chat(const std::string& body) {
  return parse_completion_request(body, Endpoint::ChatCompletions, facts());
}

// The ApiError a body gives: status and param.
std::pair<int, std::string> refusal(const std::string& body, Endpoint endpoint) {
  try {
    parse_completion_request(body, endpoint, facts());
  } catch (const ApiError& error) {
    return {error.status(), error.param()};
  }
  return {0, "accepted"};
}

TEST(OpenAiRequest, CompletionFieldsReachTheEngineRequest) {
  const CompletionRequest parsed = completion(
      R"({"model":"tiny","prompt":"hi","max_tokens":7,"temperature":0.5,"top_p":0.9,"top_k":40,
          "min_p":0.1,"frequency_penalty":0.5,"presence_penalty":-0.5,"repetition_penalty":1.1,
          "seed":42,"stop":["\n","END"],"logprobs":3,"ignore_eos":true,"user":"u",
          "stream":true,"stream_options":{"include_usage":true}})");
  const GenerateRequest& request = parsed.generate;
  EXPECT_EQ(request.prompt, "hi");
  EXPECT_FALSE(request.chat);
  EXPECT_EQ(request.max_tokens, 7);
  EXPECT_FLOAT_EQ(request.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(request.sampling.top_p, 0.9f);
  EXPECT_EQ(request.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(request.sampling.min_p, 0.1f);
  EXPECT_FLOAT_EQ(request.sampling.frequency_penalty, 0.5f);
  EXPECT_FLOAT_EQ(request.sampling.presence_penalty, -0.5f);
  EXPECT_FLOAT_EQ(request.sampling.repetition_penalty, 1.1f);
  EXPECT_EQ(request.sampling.seed, 42u);
  EXPECT_EQ(request.sampling.n_logprobs, 3);
  EXPECT_EQ(request.stop, (std::vector<std::string>{"\n", "END"}));
  EXPECT_TRUE(request.ignore_eos);
  EXPECT_TRUE(parsed.stream);
  EXPECT_TRUE(parsed.include_usage);
  EXPECT_TRUE(parsed.logprobs);
}

TEST(OpenAiRequest, DefaultsAndPromptForms) {
  const CompletionRequest plain = completion(R"({"prompt":"hi","model":null})");
  EXPECT_EQ(plain.generate.max_tokens, 16);
  EXPECT_FALSE(plain.stream);
  EXPECT_FALSE(plain.logprobs);
  EXPECT_EQ(completion(R"({"prompt":[1,2,3]})").generate.prompt_tokens,
            (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(completion(R"({"prompt":[[4,5]]})").generate.prompt_tokens,
            (std::vector<int32_t>{4, 5}));
  EXPECT_EQ(completion(R"({"prompt":["only"],"stop":"x"})").generate.prompt, "only");
  EXPECT_EQ(completion(R"({"prompt":"a","stop":"x"})").generate.stop,
            std::vector<std::string>{"x"});
}

TEST(OpenAiRequest, ChatMessagesRolesAndLimits) {
  const CompletionRequest parsed = chat(
      R"({"messages":[{"role":"developer","content":"be brief"},
                      {"role":"user","content":[{"type":"text","text":"a"},
                                                {"type":"text","text":"b"}]}],
          "max_completion_tokens":5,"max_tokens":9,"logprobs":true,"top_logprobs":2})");
  ASSERT_EQ(parsed.generate.messages.size(), 2u);
  EXPECT_TRUE(parsed.generate.chat);
  EXPECT_EQ(parsed.generate.messages[0].role, "system");
  EXPECT_EQ(parsed.generate.messages[1].content, "ab");
  EXPECT_EQ(parsed.generate.max_tokens, 5);  // max_completion_tokens wins
  EXPECT_EQ(parsed.generate.sampling.n_logprobs, 2);
  // Unlimited chat answers run to the context.
  EXPECT_EQ(chat(R"({"messages":[{"role":"user","content":"x"}]})").generate.max_tokens, 100);
}

TEST(OpenAiRequest, MistakesNameTheField) {
  const auto c = Endpoint::Completions;
  const auto m = Endpoint::ChatCompletions;
  using Expected = std::pair<int, std::string>;
  EXPECT_EQ(refusal("{", c), (Expected{400, ""}));
  EXPECT_EQ(refusal("[]", c), (Expected{400, ""}));
  EXPECT_EQ(refusal(R"({})", c), (Expected{400, "prompt"}));
  EXPECT_EQ(refusal(R"({"prompt":true})", c), (Expected{400, "prompt"}));
  EXPECT_EQ(refusal(R"({"prompt":["a","b"]})", c), (Expected{400, "prompt"}));
  EXPECT_EQ(refusal(R"({"prompt":[1,-2]})", c), (Expected{400, "prompt"}));
  EXPECT_EQ(refusal(R"({"prompt":"a","max_tokens":0})", c), (Expected{400, "max_tokens"}));
  EXPECT_EQ(refusal(R"({"prompt":"a","max_tokens":1.5})", c), (Expected{400, "max_tokens"}));
  EXPECT_EQ(refusal(R"({"prompt":"a","temperature":2.5})", c), (Expected{400, "temperature"}));
  EXPECT_EQ(refusal(R"({"prompt":"a","temperature":"1"})", c), (Expected{400, "temperature"}));
  EXPECT_EQ(refusal(R"({"prompt":"a","top_p":0})", c), (Expected{400, "top_p"}));
  EXPECT_EQ(refusal(R"({"prompt":"a","logprobs":21})", c), (Expected{400, "logprobs"}));
  EXPECT_EQ(refusal(R"({"prompt":"a","stop":[""]})", c), (Expected{400, "stop"}));
  EXPECT_EQ(refusal(R"({"prompt":"a","stop":[1]})", c), (Expected{400, "stop[0]"}));
  EXPECT_EQ(refusal(R"({"prompt":"a","n":3})", c), (Expected{400, "n"}));
  EXPECT_EQ(refusal(R"({"prompt":"a","echo":true})", c), (Expected{400, "echo"}));
  EXPECT_EQ(refusal(R"({"prompt":"a","model":"other"})", c), (Expected{400, "model"}));
  EXPECT_EQ(refusal(R"({"prompt":"a","stream":"yes"})", c), (Expected{400, "stream"}));
  EXPECT_EQ(refusal(R"({"messages":"hi"})", m), (Expected{400, "messages"}));
  EXPECT_EQ(refusal(R"({"messages":[{"content":"x"}]})", m),
            (Expected{400, "messages[0].role"}));
  EXPECT_EQ(refusal(R"({"messages":[{"role":"tool","content":"x"}]})", m),
            (Expected{400, "messages[0].role"}));
  EXPECT_EQ(refusal(R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})", m),
            (Expected{400, "messages[0].content[0].type"}));
  EXPECT_EQ(refusal(R"({"messages":[{"role":"user","content":"x"}],"top_logprobs":2})", m),
            (Expected{400, "top_logprobs"}));
}

TEST(OpenAiRequest, PromptsThatCannotFitAreRefusedBeforeTokenizing) {
  // Context 100 tokens of at most 4 bytes each: 400 bytes may fit, 401 cannot.
  EXPECT_NO_THROW(completion("{\"prompt\":\"" + std::string(400, 'a') + "\"}"));
  EXPECT_EQ(refusal("{\"prompt\":\"" + std::string(401, 'a') + "\"}", Endpoint::Completions),
            (std::pair<int, std::string>{400, "prompt"}));
  EXPECT_EQ(refusal(R"({"messages":[{"role":"user","content":")" + std::string(300, 'a') +
                        R"("},{"role":"user","content":")" + std::string(101, 'b') + R"("}]})",
                    Endpoint::ChatCompletions),
            (std::pair<int, std::string>{400, "messages"}));
  std::string ids = "[";
  for (int i = 0; i < 100; ++i) ids += (i ? ",1" : "1");
  EXPECT_EQ(refusal("{\"prompt\":" + ids + "]}", Endpoint::Completions),
            (std::pair<int, std::string>{400, "prompt"}));
  try {
    completion("{\"prompt\":\"" + std::string(401, 'a') + "\"}");
  } catch (const ApiError& error) {
    EXPECT_EQ(error.code(), "context_length_exceeded");
    EXPECT_NE(std::string(error.what()).find("100 tokens"), std::string::npos) << error.what();
  }
}

TEST(OpenAiRequest, TokenizeDetokenizeAndReloadBodies) {
  const TokenizeRequest text = parse_tokenize_request(R"({"prompt":"hey","add_special_tokens":false})");
  EXPECT_EQ(text.prompt, "hey");
  EXPECT_FALSE(text.add_special_tokens);
  EXPECT_FALSE(text.chat);
  const TokenizeRequest messages =
      parse_tokenize_request(R"({"messages":[{"role":"user","content":"x"}]})");
  EXPECT_TRUE(messages.chat);
  EXPECT_EQ(messages.messages.at(0).content, "x");
  EXPECT_THROW(parse_tokenize_request(R"({"prompt":1})"), ApiError);
  EXPECT_EQ(parse_detokenize_request(R"({"tokens":[0,9]})", 10), (std::vector<int32_t>{0, 9}));
  EXPECT_THROW(parse_detokenize_request(R"({"tokens":[10]})", 10), ApiError);
  EXPECT_THROW(parse_detokenize_request(R"({"tokens":"1"})", 10), ApiError);
  EXPECT_EQ(parse_reload_request(""), "");
  EXPECT_EQ(parse_reload_request(R"({"model":"/m.gguf"})"), "/m.gguf");
  EXPECT_THROW(parse_reload_request(R"({"model":3})"), ApiError);
}

}  // namespace
}  // namespace troupe
