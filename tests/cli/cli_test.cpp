// The troupe CLI end to end, in process: greedy generation and chat on SmolLM2 against the
// llama.cpp fixtures (tests/fixtures/generate/smollm2.json), tokenize against the tokenizer
// fixture, inspect on a tiny model, and usage errors (status 2) for bad flags.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "model/chat_prompt.hpp"
#include "model/default_model.hpp"
#include "model/gguf.hpp"
#include "tests/util/scratch_file.hpp"
#include "tests/util/tiny_model.hpp"

namespace troupe {
namespace {

nlohmann::json fixture(const std::string& relative) {
  std::ifstream file(std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/" + relative);
  return nlohmann::json::parse(file);
}

// Runs a command with stdout (and optionally stdin) redirected; returns its status.
int run(int (*command)(const std::vector<std::string>&), const std::vector<std::string>& args,
        std::string& out, const std::string& in = "") {
  std::ostringstream captured;
  std::istringstream input(in);
  std::streambuf* old_out = std::cout.rdbuf(captured.rdbuf());
  std::streambuf* old_in = std::cin.rdbuf(input.rdbuf());
  int status = -1;
  try {
    status = command(args);
  } catch (...) {
    std::cout.rdbuf(old_out);
    std::cin.rdbuf(old_in);
    throw;
  }
  std::cout.rdbuf(old_out);
  std::cin.rdbuf(old_in);
  out = captured.str();
  return status;
}

class SmolLm2 : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(path_))
        << path_ << " absent: run scripts/fetch-model (make test does)";
    file_.emplace(GgufFile::open(path_));
    tokenizer_.emplace(Tokenizer::from_gguf(*file_));
  }
  const std::string path_ = default_model_path().string();
  std::optional<GgufFile> file_;
  std::optional<Tokenizer> tokenizer_;
};

TEST_F(SmolLm2, GreedyGenerateMatchesLlamaCpp) {
  const nlohmann::json c = fixture("generate/smollm2.json").at("cases").at(0);
  const std::vector<int32_t> expected = c.at("tokens");
  for (const char* threads : {"1", "2"}) {
    std::string out;
    ASSERT_EQ(run(cli::generate,
                  {"-m", path_, "-p", c.at("prompt"), "-n", std::to_string(expected.size()),
                   "--temp", "0", "--ignore-eos", "--backend-threads", threads},
                  out),
              0);
    EXPECT_EQ(out, tokenizer_->decode(expected, DecodeOptions{false, false}) + "\n")
        << threads << " threads";
  }
}

TEST_F(SmolLm2, ChatUsesTheTemplateAndMatchesLlamaCpp) {
  // Fixture case 3 is SmolLM2's ChatML rendering of one user message, default system prompt
  // included, and llama.cpp's greedy reply ending with EOS.
  const nlohmann::json c = fixture("generate/smollm2.json").at("cases").at(3);
  const std::vector<int32_t> prompt_ids = c.at("prompt_ids");
  std::vector<int32_t> reply = c.at("tokens");
  const ChatTemplate chat =
      ChatTemplate::detect(tokenizer_->vocab().chat_template(), tokenizer_->vocab());
  const std::vector<ChatMessage> conversation{{"user", "What is 2+2?"}};
  EXPECT_EQ(encode_chat(*tokenizer_, chat, conversation), prompt_ids);

  ASSERT_TRUE(tokenizer_->vocab().is_eog(reply.back())) << "the fixture reply ends with EOS";
  reply.pop_back();
  std::string out;
  ASSERT_EQ(run(cli::chat, {"-m", path_, "--temp", "0", "-n", "64"}, out, "What is 2+2?\n"), 0);
  EXPECT_EQ(out, tokenizer_->decode(reply, DecodeOptions{false, false}) + "\n");
}

TEST_F(SmolLm2, TokenizeMatchesLlamaCpp) {
  const nlohmann::json cases = fixture("tokenizer/smollm2.json").at("cases");
  int checked = 0;
  for (const nlohmann::json& c : cases) {
    const std::string text = c.at("text");
    if (text.empty() || text[0] == '-') continue;  // not expressible as the TEXT argument
    std::vector<std::string> args{text, "-m", path_, "--ids-only"};
    if (!c.at("add_special").get<bool>()) args.push_back("--no-special");
    if (c.at("parse_special").get<bool>()) args.push_back("--parse-special");
    std::string out;
    ASSERT_EQ(run(cli::tokenize, args, out), 0);
    std::string expected;
    for (int32_t id : c.at("ids").get<std::vector<int32_t>>())
      expected += (expected.empty() ? "" : " ") + std::to_string(id);
    EXPECT_EQ(out, expected + "\n") << text;
    ++checked;
  }
  EXPECT_GE(checked, 20);
}

TEST(Cli, InspectPrintsMetadataAndTensors) {
  const test::ScratchFile model(test::tiny_model_bytes(test::tiny_model_preset("llama-spm-q8_0")));
  std::string out;
  ASSERT_EQ(run(cli::inspect, {model.path()}, out), 0);
  EXPECT_NE(out.find("general.architecture"), std::string::npos) << out;
  EXPECT_NE(out.find("\"llama\""), std::string::npos);
  EXPECT_NE(out.find("blk.0.attn_q.weight"), std::string::npos);
  EXPECT_NE(out.find("Q8_0"), std::string::npos);
  EXPECT_NE(out.find("model: llama"), std::string::npos);
}

TEST(Cli, BadFlagsAreUsageErrors) {
  const test::ScratchFile model(test::tiny_model_bytes(test::tiny_model_preset("llama-spm-f32")));
  const std::vector<std::vector<std::string>> bad = {
      {"-m", model.path()},                                  // no prompt
      {"-m", model.path(), "-p", "hi", "--temp", "-1"},      // out of range
      {"-m", model.path(), "-p", "hi", "-n", "many"},        // not a number
      {"-m", model.path(), "-p", "hi", "--no-such-flag"},    // unknown flag
      {"-m", model.path(), "-p", "hi", "--backend", "abacus"}};
  for (const auto& args : bad) {
    std::string out;
    EXPECT_EQ(run(cli::generate, args, out), 2) << args.back();
  }
  std::string out;
  EXPECT_EQ(run(cli::tokenize, {"-m", model.path()}, out), 2);  // no text
}

TEST(Cli, MissingOrCorruptModelIsARuntimeErrorNotACrash) {
  std::string out;
  EXPECT_THROW(run(cli::generate, {"-m", "/nonexistent/model.gguf", "-p", "hi"}, out),
               std::exception);
  const test::ScratchFile junk(std::vector<uint8_t>{'G', 'G', 'U', 'F', 1, 2, 3});
  EXPECT_THROW(run(cli::inspect, {junk.path()}, out), std::exception);
}

}  // namespace
}  // namespace troupe
