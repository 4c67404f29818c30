// RequestFlow on a hand-made sentencepiece vocabulary (ids: 0 <unk>, 1 <s>, 2 </s>,
// 3 + b the byte token <0xNN>, then "▁hello", "world", "▁"): prompt checks, incremental
// text, stop strings held back and cut, EOS, length, usage and timings.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "actors/request_flow.hpp"

namespace troupe {
namespace {

constexpr int32_t kBos = 1, kEos = 2;
constexpr int32_t byte_token(uint8_t b) { return 3 + b; }
constexpr int32_t kSpHello = 259, kWorld = 260, kSp = 261;

std::shared_ptr<const LoadedModel> tiny_model() {
  VocabSpec spec;
  spec.tokens = {"<unk>", "<s>", "</s>"};
  spec.types = {TokenType::Unknown, TokenType::Control, TokenType::Control};
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) {
    spec.tokens.push_back(std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">");
    spec.types.push_back(TokenType::Byte);
  }
  for (const char* piece : {"\u2581hello", "world", "\u2581"}) {
    spec.tokens.emplace_back(piece);
    spec.types.push_back(TokenType::Normal);
  }
  ModelDesc desc;
  desc.n_vocab = uint32_t(spec.tokens.size());
  return std::make_shared<LoadedModel>("hand-made", nullptr, desc,
                                       Tokenizer(Vocab::from_spec(std::move(spec))));
}

struct Fixture : ::testing::Test {
  std::shared_ptr<const LoadedModel> model = tiny_model();
  ChatTemplate chat = ChatTemplate::named("chatml", model->tokenizer().vocab());
  EngineClock::time_point t0 = EngineClock::now();

  GenerateRequest tokens_request(std::vector<int32_t> prompt, int32_t max_tokens = 16) {
    GenerateRequest request;
    request.prompt_tokens = std::move(prompt);
    request.max_tokens = max_tokens;
    request.arrival = t0;
    return request;
  }
  std::unique_ptr<RequestFlow> start(const GenerateRequest& request, int32_t context = 64) {
    auto started = RequestFlow::start(request, model, chat, context);
    if (auto* end = std::get_if<EndEvent>(&started)) {
      ADD_FAILURE() << "refused: " << end->message;
      return nullptr;
    }
    return std::move(std::get<std::unique_ptr<RequestFlow>>(started));
  }
  EndEvent refused(const GenerateRequest& request, int32_t context = 64) {
    auto started = RequestFlow::start(request, model, chat, context);
    EXPECT_TRUE(std::holds_alternative<EndEvent>(started));
    if (!std::holds_alternative<EndEvent>(started)) return {};
    return std::get<EndEvent>(started);
  }
  SampledOutput sampled(int32_t token, double at_seconds = 0.0) {
    return {.seq = 1, .token = token, .logprob = -0.5f, .top = {},
            .at = t0 + std::chrono::duration_cast<EngineClock::duration>(
                           std::chrono::duration<double>(at_seconds))};
  }
};

using RequestFlowTest = Fixture;

TEST_F(RequestFlowTest, PromptTokensAreUsedAsIsAndTheContextCapsNewTokens) {
  auto flow = start(tokens_request({kBos, kSpHello, kWorld}, 100), 10);
  ASSERT_TRUE(flow);
  EXPECT_EQ(flow->prompt(), (std::vector<int32_t>{kBos, kSpHello, kWorld}));
  EXPECT_EQ(flow->max_new_tokens(), 7);
  EXPECT_EQ(flow->deadline(), EngineClock::time_point::max());

  GenerateRequest timed = tokens_request({kSpHello}, 5);
  timed.timeout = std::chrono::seconds(3);
  auto timed_flow = start(timed);
  ASSERT_TRUE(timed_flow);
  EXPECT_EQ(timed_flow->max_new_tokens(), 5);
  EXPECT_EQ(timed_flow->deadline(), t0 + std::chrono::seconds(3));
}

TEST_F(RequestFlowTest, TextPromptGetsBosByTheVocabularysRule) {
  GenerateRequest request;
  request.prompt = " hello";
  auto flow = start(request);
  ASSERT_TRUE(flow);
  ASSERT_GE(flow->prompt().size(), 2u);
  EXPECT_EQ(flow->prompt()[0], kBos);
  EXPECT_EQ(model->tokenizer().decode(std::span(flow->prompt()).subspan(1)), " hello");
}

TEST_F(RequestFlowTest, ClientMistakesBecomeInvalidRequestNamingTheField) {
  const auto expect = [&](const GenerateRequest& request, const std::string& param,
                          int32_t context = 64) {
    const EndEvent end = refused(request, context);
    EXPECT_EQ(end.kind, EndKind::Error);
    EXPECT_EQ(end.error, ErrorKind::InvalidRequest);
    EXPECT_EQ(end.param, param);
    EXPECT_FALSE(end.message.empty());
  };
  expect(tokens_request({kBos, 262}), "prompt");
  expect(tokens_request({-1}), "prompt");
  expect(GenerateRequest{}, "prompt");
  GenerateRequest chat;
  chat.chat = true;
  expect(chat, "messages");
  chat.messages = {{"robot", "hi"}};
  expect(chat, "messages");
  expect(tokens_request({kBos}, 0), "max_tokens");
  GenerateRequest stop = tokens_request({kBos});
  stop.stop = {"ok", ""};
  expect(stop, "stop");
  GenerateRequest hot = tokens_request({kBos});
  hot.sampling.temperature = -1;
  expect(hot, "temperature");
  GenerateRequest top = tokens_request({kBos});
  top.sampling.top_p = 0;
  expect(top, "top_p");
  expect(tokens_request({kBos, kSpHello, kWorld, kSp}), "prompt", 4);
}

TEST_F(RequestFlowTest, ACharacterSplitAcrossTokensIsSentWhole) {
  auto flow = start(tokens_request({kBos}));
  ASSERT_TRUE(flow);
  // U+20AC is E2 82 AC.
  RequestFlow::Step first = flow->on_token(sampled(byte_token(0xE2)));
  EXPECT_FALSE(first.chunk);
  EXPECT_FALSE(flow->on_token(sampled(byte_token(0x82))).chunk);
  RequestFlow::Step last = flow->on_token(sampled(byte_token(0xAC)));
  ASSERT_TRUE(last.chunk);
  EXPECT_EQ(last.chunk->text, "\xE2\x82\xAC");
  ASSERT_EQ(last.chunk->tokens.size(), 3u);
  EXPECT_EQ(last.chunk->tokens[0].token, byte_token(0xE2));
  EXPECT_EQ(last.chunk->tokens[2].token, byte_token(0xAC));
  EXPECT_EQ(last.chunk->tokens[2].text, "\xAC");
  EXPECT_FALSE(last.done);
}

TEST_F(RequestFlowTest, StopStringIsHeldBackThenCutAtTheFirstMatch) {
  GenerateRequest request = tokens_request({kBos});
  request.stop = {"lo wor", "zzz"};
  auto flow = start(request);
  ASSERT_TRUE(flow);
  RequestFlow::Step hello = flow->on_token(sampled(kSpHello));
  ASSERT_TRUE(hello.chunk);
  EXPECT_EQ(hello.chunk->text, " hel");  // "lo" may start the stop string
  RequestFlow::Step space = flow->on_token(sampled(kSp));
  EXPECT_FALSE(space.chunk);
  EXPECT_FALSE(space.done);
  RequestFlow::Step world = flow->on_token(sampled(kWorld));
  EXPECT_TRUE(world.done);
  EXPECT_FALSE(flow->on_token(sampled(kWorld)).chunk);  // ignored after done

  auto [last, end] = flow->finish(EndKind::Finished, t0 + std::chrono::seconds(1));
  if (last) {
    EXPECT_EQ(last->text, "");
  }
  EXPECT_EQ(end.kind, EndKind::Finished);
  EXPECT_EQ(end.finish, FinishReason::Stop);
  EXPECT_EQ(end.usage.prompt_tokens, 1);
  EXPECT_EQ(end.usage.completion_tokens, 3);
}

TEST_F(RequestFlowTest, HeldTextThatNeverMatchesIsSentAtLength) {
  GenerateRequest request = tokens_request({kBos}, 2);
  request.stop = {"lo wor"};
  auto flow = start(request);
  ASSERT_TRUE(flow);
  EXPECT_EQ(flow->on_token(sampled(kSpHello)).chunk->text, " hel");
  RequestFlow::Step second = flow->on_token(sampled(kSp));
  EXPECT_TRUE(second.done);
  auto [last, end] = flow->finish(EndKind::Finished, t0);
  ASSERT_TRUE(last);
  EXPECT_EQ(last->text, "lo ");
  EXPECT_EQ(end.finish, FinishReason::Length);
  EXPECT_EQ(end.usage.completion_tokens, 2);
}

TEST_F(RequestFlowTest, EosEndsWithStopUnlessIgnored) {
  auto flow = start(tokens_request({kBos}));
  ASSERT_TRUE(flow);
  EXPECT_EQ(flow->on_token(sampled(kSpHello)).chunk->text, " hello");
  RequestFlow::Step eos = flow->on_token(sampled(kEos));
  EXPECT_TRUE(eos.done);
  EXPECT_FALSE(eos.chunk);
  auto [last, end] = flow->finish(EndKind::Finished, t0);
  EXPECT_FALSE(last);
  EXPECT_EQ(end.finish, FinishReason::Stop);

  GenerateRequest ignoring = tokens_request({kBos}, 3);
  ignoring.ignore_eos = true;
  auto bench = start(ignoring);
  ASSERT_TRUE(bench);
  EXPECT_FALSE(bench->on_token(sampled(kEos)).done);
  EXPECT_FALSE(bench->on_token(sampled(kEos)).done);
  EXPECT_TRUE(bench->on_token(sampled(kEos)).done);
  EXPECT_EQ(bench->finish(EndKind::Finished, t0).second.finish, FinishReason::Length);
}

TEST_F(RequestFlowTest, TimingsAndUsageCountFromArrival) {
  auto flow = start(tokens_request({kBos, kSpHello}, 2));
  ASSERT_TRUE(flow);
  flow->on_queued(t0 + std::chrono::milliseconds(250), 1);
  EXPECT_EQ(flow->on_token(sampled(kWorld, 0.5)).chunk->text, "world");
  EXPECT_TRUE(flow->on_token(sampled(kWorld, 0.75)).done);
  auto [last, end] = flow->finish(EndKind::Finished, t0 + std::chrono::seconds(1));
  ASSERT_TRUE(last);
  EXPECT_EQ(last->text, "world");
  EXPECT_DOUBLE_EQ(end.timings.queued, 0.25);
  EXPECT_DOUBLE_EQ(end.timings.first_token, 0.5);
  EXPECT_EQ(end.timings.token_times, (std::vector<double>{0.5, 0.75}));
  EXPECT_DOUBLE_EQ(end.timings.finished, 1.0);
  EXPECT_EQ(end.usage.prompt_tokens, 2);
  EXPECT_EQ(end.usage.cached_tokens, 1);
  EXPECT_EQ(end.usage.completion_tokens, 2);
}

TEST_F(RequestFlowTest, CancelAndErrorSendNoHeldTextAndCarryTheirKind) {
  GenerateRequest request = tokens_request({kBos});
  request.stop = {"lo wor"};
  auto flow = start(request);
  ASSERT_TRUE(flow);
  flow->on_token(sampled(kSpHello));
  auto [last, end] = flow->finish(EndKind::Cancelled, t0);
  EXPECT_FALSE(last);
  EXPECT_EQ(end.kind, EndKind::Cancelled);
  EXPECT_EQ(end.usage.completion_tokens, 1);

  auto failing = start(tokens_request({kBos}));
  ASSERT_TRUE(failing);
  auto [none, error] =
      failing->finish(EndKind::Error, t0, ErrorKind::WorkerFailed, "worker 0 failed");
  EXPECT_FALSE(none);
  EXPECT_EQ(error.kind, EndKind::Error);
  EXPECT_EQ(error.error, ErrorKind::WorkerFailed);
  EXPECT_EQ(error.message, "worker 0 failed");
}

}  // namespace
}  // namespace troupe
