// Token ids against llama.cpp: every tests/fixtures/tokenizer/<model>.json (recorded by
// scripts/record-fixtures; format and conventions in scripts/record_fixtures.py) is replayed:
// "smollm2" on the default model (scripts/fetch-model), any other name on the tiny-model
// preset of that name, regenerated here. Each case must give exactly the recorded ids; the
// ids must decode back to the text (gpt2 vocabularies always; sentencepiece ones when special
// tokens were not parsed, since llama.cpp adds a space after each special token), and
// streaming them through a Detokenizer must give the same text as decoding them at once.
#include <gtest/gtest.h>

#include "model/default_model.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "model/detokenizer.hpp"
#include "model/gguf.hpp"
#include "model/tokenizer.hpp"
#include "model/unicode.hpp"
#include "tests/util/scratch_file.hpp"
#include "tests/util/tiny_model.hpp"

namespace troupe {
namespace {

namespace fs = std::filesystem;

fs::path fixture_dir() { return fs::path(TROUPE_SOURCE_DIR) / "tests" / "fixtures" / "tokenizer"; }

std::vector<std::string> fixture_files() {
  std::vector<std::string> files;
  if (fs::is_directory(fixture_dir()))
    for (const auto& entry : fs::directory_iterator(fixture_dir()))
      if (entry.path().extension() == ".json") files.push_back(entry.path().filename().string());
  std::sort(files.begin(), files.end());
  return files;
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

// nullopt when the model is not on this machine (only the default model can be absent).
std::optional<Tokenizer> tokenizer_for(const std::string& model) {
  if (model == "smollm2") {
    const std::string path = default_model_path().string();
    if (!fs::exists(path)) return std::nullopt;
    return Tokenizer::from_gguf(GgufFile::open(path));
  }
  const test::ScratchFile file(test::tiny_model_bytes(test::tiny_model_preset(model)));
  return Tokenizer::from_gguf(GgufFile::open(file.path()));
}

TEST(TokenizerFixtures, AreRecordedForSmolLM2AndBothTinyVocabularies) {
  const std::vector<std::string> files = fixture_files();
  EXPECT_NE(std::find(files.begin(), files.end(), "smollm2.json"), files.end()) << fixture_dir();
  EXPECT_NE(std::find(files.begin(), files.end(), "llama-spm-f32.json"), files.end()) << fixture_dir();
  EXPECT_NE(std::find(files.begin(), files.end(), "llama-gpt2-f16.json"), files.end()) << fixture_dir();
}

class TokenizerFixture : public testing::TestWithParam<std::string> {};

TEST_P(TokenizerFixture, MatchesLlamaCpp) {
  const nlohmann::json fixture = read_json(fixture_dir() / GetParam());
  const std::string model = fixture.at("model").get<std::string>();
  const std::optional<Tokenizer> tok = tokenizer_for(model);
  if (!tok) FAIL() << default_model_path().string() << " absent: run scripts/fetch-model (make test does)";
  const bool gpt2 = tok->vocab().kind() == VocabKind::Gpt2;
  ASSERT_FALSE(fixture.at("cases").empty());
  for (const nlohmann::json& c : fixture.at("cases")) {
    const std::string text = c.at("text").get<std::string>();
    const bool add_special = c.at("add_special").get<bool>();
    const bool parse_special = c.at("parse_special").get<bool>();
    const std::vector<int32_t> expected = c.at("ids").get<std::vector<int32_t>>();
    SCOPED_TRACE(testing::Message() << model << ": \"" << text << "\" add_special=" << add_special
                                    << " parse_special=" << parse_special);

    const std::vector<int32_t> ids = tok->encode(text, add_special, parse_special);
    EXPECT_EQ(ids, expected);

    const DecodeOptions options{.render_special = parse_special};
    const std::string decoded = tok->decode(expected, options);
    if (gpt2 || !parse_special) {
      EXPECT_EQ(decoded, text);
    }

    Detokenizer detokenizer(*tok, options);
    std::string streamed;
    for (int32_t id : expected) streamed += detokenizer.push(id);
    streamed += detokenizer.flush();
    std::string whole;
    append_valid_utf8(decoded, true, whole);
    EXPECT_EQ(streamed, whole);
  }
}

INSTANTIATE_TEST_SUITE_P(Recorded, TokenizerFixture, testing::ValuesIn(fixture_files()),
                         [](const testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param.substr(0, info.param.size() - 5);
                           std::replace_if(name.begin(), name.end(), [](char c) { return !std::isalnum(c); }, '_');
                           return name;
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(TokenizerFixture);

}  // namespace
}  // namespace troupe
