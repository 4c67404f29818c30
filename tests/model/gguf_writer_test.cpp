// The test utilities themselves: reference quantizers (expected blocks worked out by hand
// and with numpy float32 from ggml's published reference algorithm), half conversions, and
// the tiny models (determinism, weight scales, vocabularies llama.cpp accepts).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <set>

#include "model/gguf.hpp"
#include "tests/util/quantize.hpp"
#include "tests/util/scratch_file.hpp"
#include "tests/util/tiny_model.hpp"

namespace troupe {
namespace {

using namespace troupe::test;

uint16_t u16_at(const std::vector<uint8_t>& bytes, std::size_t offset) {
  uint16_t v;
  std::memcpy(&v, bytes.data() + offset, 2);
  return v;
}

TEST(HalfConversion, RoundsToNearestEven) {
  EXPECT_EQ(fp32_to_fp16(1.0f), 0x3C00);
  EXPECT_EQ(fp32_to_fp16(-2.0f), 0xC000);
  EXPECT_EQ(fp32_to_fp16(65504.0f), 0x7BFF);
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7C00);  // halfway to 65536 rounds up to inf
  EXPECT_EQ(fp32_to_fp16(0.1f), 0x2E66);
  EXPECT_EQ(fp32_to_fp16(1.0f / 3.0f), 0x3555);
  EXPECT_EQ(fp32_to_fp16(1.0f + 0x1.0p-11f), 0x3C00);      // tie to even (down)
  EXPECT_EQ(fp32_to_fp16(1.0f + 3 * 0x1.0p-11f), 0x3C02);  // tie to even (up)
  EXPECT_EQ(fp32_to_fp16(0x1.0p-24f), 0x0001);             // smallest subnormal
  EXPECT_EQ(fp32_to_fp16(0x1.0p-25f), 0x0000);             // tie to even zero
  EXPECT_EQ(fp32_to_fp16(0.75f * 0x1.0p-14f), 0x0300);
  EXPECT_EQ(fp32_to_fp16(-0.0f), 0x8000);
  EXPECT_EQ(fp32_to_fp16(INFINITY), 0x7C00);
  EXPECT_EQ(fp32_to_fp16(NAN) & 0x7C00, 0x7C00);
  EXPECT_NE(fp32_to_fp16(NAN) & 0x03FF, 0);

  EXPECT_EQ(fp16_to_fp32(0x3C00), 1.0f);
  EXPECT_EQ(fp16_to_fp32(0x7BFF), 65504.0f);
  EXPECT_EQ(fp16_to_fp32(0x0001), 0x1.0p-24f);
  EXPECT_EQ(fp16_to_fp32(0x8300), -0.75f * 0x1.0p-14f);
  EXPECT_TRUE(std::isinf(fp16_to_fp32(0xFC00)));
  EXPECT_TRUE(std::isnan(fp16_to_fp32(0x7E00)));

  EXPECT_EQ(fp32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(fp32_to_bf16(1.0f + 0x1.0p-8f), 0x3F80);      // tie to even (down)
  EXPECT_EQ(fp32_to_bf16(1.0f + 3 * 0x1.0p-8f), 0x3F82);  // tie to even (up)
  EXPECT_EQ(fp32_to_bf16(-3.0f), 0xC040);
  EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(NAN))));
  EXPECT_EQ(bf16_to_fp32(0x3F82), 1.015625f);
}

std::vector<float> ramp(float start, float step) {
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = start + step * static_cast<float>(j);
  return x;
}

TEST(ReferenceQuantizer, Q8_0Block) {
  const auto bytes = quantize(GgmlType::Q8_0, ramp(-16.0f, 1.0f));
  ASSERT_EQ(bytes.size(), 34u);
  EXPECT_EQ(u16_at(bytes, 0), 0x3008);  // 16 / 127 as fp16
  const int8_t expected[32] = {-127, -119, -111, -103, -95, -87, -79, -71, -64, -56, -48,
                               -40,  -32,  -24,  -16,  -8,  0,   8,   16,  24,  32,  40,
                               48,   56,   64,   71,   79,  87,  95,  103, 111, 119};
  EXPECT_EQ(std::memcmp(bytes.data() + 2, expected, 32), 0);
}

TEST(ReferenceQuantizer, Q4_0Block) {
  const auto bytes = quantize(GgmlType::Q4_0, ramp(-16.0f, 1.0f));
  ASSERT_EQ(bytes.size(), 18u);
  EXPECT_EQ(u16_at(bytes, 0), 0x4000);  // d = max / -8 = -16 / -8 = 2
  // q_j = min(15, trunc((j - 16) / 2 + 8.5)) = min(15, (j + 1) / 2)
  for (int j = 0; j < 16; ++j) {
    const int low = (j + 1) / 2, high = std::min(15, (j + 17) / 2);
    EXPECT_EQ(bytes[2 + j], low | (high << 4)) << j;
  }
  const auto zeros = quantize(GgmlType::Q4_0, std::vector<float>(32, 0.0f));
  EXPECT_EQ(u16_at(zeros, 0), 0x8000);  // 0 / -8 is -0, as in ggml
  for (int j = 0; j < 16; ++j) EXPECT_EQ(zeros[2 + j], 0x88);
}

TEST(ReferenceQuantizer, Q4_1Block) {
  const auto bytes = quantize(GgmlType::Q4_1, ramp(0.0f, 0.5f));
  ASSERT_EQ(bytes.size(), 20u);
  EXPECT_EQ(u16_at(bytes, 0), 0x3C22);  // (15.5 - 0) / 15
  EXPECT_EQ(u16_at(bytes, 2), 0x0000);  // min 0
  for (int j = 0; j < 16; ++j) EXPECT_EQ(bytes[4 + j], (j / 2) | ((j / 2 + 8) << 4)) << j;
}

TEST(ReferenceQuantizer, FloatTypesAndRoundTrips) {
  const std::vector<float> x = ramp(-1.0f, 1.0f / 16.0f);
  EXPECT_EQ(dequantize(GgmlType::F32, quantize(GgmlType::F32, x)), x);
  EXPECT_EQ(dequantize(GgmlType::F16, quantize(GgmlType::F16, x)), x);  // all exact in fp16
  EXPECT_EQ(dequantize(GgmlType::BF16, quantize(GgmlType::BF16, x)), x);
  EXPECT_EQ(quantize(GgmlType::F16, std::vector<float>{1.0f}), (std::vector<uint8_t>{0x00, 0x3C}));
  const auto q8 = dequantize(GgmlType::Q8_0, quantize(GgmlType::Q8_0, ramp(-16.0f, 1.0f)));
  EXPECT_NEAR(q8[0], -127 * 0.1259765625f, 1e-6);  // d is stored as fp16 0x3008
  EXPECT_NEAR(q8[31], 119 * 0.1259765625f, 1e-6);
  const auto q4 = dequantize(GgmlType::Q4_1, quantize(GgmlType::Q4_1, ramp(0.0f, 0.5f)));
  EXPECT_NEAR(q4[31], 15 * 1.033203125f, 1e-6);  // fp16 0x3C22
  EXPECT_THROW(quantize(GgmlType::Q4_0, std::vector<float>(31)), std::invalid_argument);
  EXPECT_THROW(quantize(GgmlType::Q6_K, std::vector<float>(256)), std::invalid_argument);
  EXPECT_THROW(dequantize(GgmlType::Q8_0, std::vector<uint8_t>(33)), std::invalid_argument);
}

TEST(TinyModel, SameSpecSameBytesOtherSeedOtherWeights) {
  TinyModelSpec spec;
  const auto a = tiny_model_bytes(spec);
  EXPECT_EQ(a, tiny_model_bytes(spec));
  spec.seed += 1;
  const auto b = tiny_model_bytes(spec);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_NE(a, b);
}

// Mean and standard deviation of an F32 tensor's values.
std::pair<double, double> moments(const GgufTensor& t) {
  std::vector<float> v(t.n_elements);
  std::memcpy(v.data(), t.data, t.n_bytes);
  double sum = 0, sum2 = 0;
  for (float x : v) sum += x, sum2 += double{x} * x;
  const double mean = sum / v.size();
  return {mean, std::sqrt(sum2 / v.size() - mean * mean)};
}

TEST(TinyModel, WeightScalesFollowTheContract) {
  ScratchFile file(tiny_model_bytes(tiny_model_preset("llama-spm-f32")));
  const GgufFile f = GgufFile::open(file.path());
  auto [embd_mean, embd_sd] = moments(*f.tensor("token_embd.weight"));
  EXPECT_NEAR(embd_mean, 0.0, 0.02);
  EXPECT_NEAR(embd_sd, 0.5, 0.02);
  auto [q_mean, q_sd] = moments(*f.tensor("blk.0.attn_q.weight"));
  EXPECT_NEAR(q_mean, 0.0, 0.01);
  EXPECT_NEAR(q_sd, 1.0 / 8.0, 0.01);  // 1 / sqrt(n_embd = 64)
  auto [norm_mean, norm_sd] = moments(*f.tensor("blk.1.ffn_norm.weight"));
  EXPECT_NEAR(norm_mean, 1.0, 0.04);
  EXPECT_NEAR(norm_sd, 0.1, 0.04);
}

TEST(TinyModel, QuantizedPresetsHoldTheQuantizedFloatWeights) {
  TinyModelSpec spec;
  ScratchFile f32_file(tiny_model_bytes(spec));
  spec.weight_type = GgmlType::Q8_0;
  ScratchFile q8_file(tiny_model_bytes(spec));
  const GgufFile f32 = GgufFile::open(f32_file.path());
  const GgufFile q8 = GgufFile::open(q8_file.path());
  const GgufTensor& exact = *f32.tensor("blk.1.ffn_up.weight");
  const GgufTensor& packed = *q8.tensor("blk.1.ffn_up.weight");
  ASSERT_EQ(packed.type, GgmlType::Q8_0);
  ASSERT_EQ(packed.n_bytes, exact.n_elements / 32 * 34);
  const auto restored = dequantize(GgmlType::Q8_0, std::span(packed.data, packed.n_bytes));
  std::vector<float> original(exact.n_elements);
  std::memcpy(original.data(), exact.data, exact.n_bytes);
  for (std::size_t block = 0; block < original.size() / 32; ++block) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(original[block * 32 + j]));
    for (int j = 0; j < 32; ++j)  // half a quantization step, plus fp16 rounding of d
      ASSERT_NEAR(restored[block * 32 + j], original[block * 32 + j], amax / 127 * 0.51 + amax * 1e-3);
  }
}

TEST(TinyModel, Gpt2VocabularyIsByteLevelWithConsistentMerges) {
  const TinyVocabulary v = tiny_vocabulary(TinyVocab::Gpt2);
  EXPECT_EQ(v.tokens[0], "<|endoftext|>");
  EXPECT_EQ(v.tokens[1], "<|im_start|>");
  EXPECT_EQ(v.tokens[2], "<|im_end|>");
  EXPECT_EQ(v.token_types[1], 3);
  EXPECT_EQ(v.bos, 1);
  EXPECT_EQ(v.eos, 2);
  EXPECT_EQ(v.tokens[3 + 'A'], "A");
  EXPECT_EQ(v.tokens[3 + ' '], "\xC4\xA0");    // Ġ = U+0120
  EXPECT_EQ(v.tokens[3 + '\n'], "\xC4\x8A");   // Ċ = U+010A
  EXPECT_EQ(v.tokens[3 + 0], "\xC4\x80");      // Ā = U+0100
  EXPECT_EQ(v.tokens[3 + 0xAD], "\xC5\x83");   // soft hyphen: the 68th remapped byte, U+0143
  EXPECT_EQ(v.tokens[3 + 0xFF], "\xC3\xBF");   // ÿ stands for itself
  std::set<std::string> tokens(v.tokens.begin(), v.tokens.end());
  EXPECT_EQ(tokens.size(), v.tokens.size());
  EXPECT_EQ(v.merges.front(), "\xC4\xA0 t");
  for (const auto& merge : v.merges) {
    const auto space = merge.find(' ');
    ASSERT_NE(space, std::string::npos);
    EXPECT_TRUE(tokens.count(merge.substr(0, space))) << merge;
    EXPECT_TRUE(tokens.count(merge.substr(space + 1))) << merge;
    EXPECT_TRUE(tokens.count(merge.substr(0, space) + merge.substr(space + 1))) << merge;
  }
  EXPECT_TRUE(tokens.count("\xC4\xA0the"));
  EXPECT_TRUE(v.scores.empty());
}

TEST(TinyModel, SpmVocabularyHasSpecialsBytesAndScoredPieces) {
  const TinyVocabulary v = tiny_vocabulary(TinyVocab::Spm);
  EXPECT_EQ(v.tokens[0], "<unk>");
  EXPECT_EQ(v.token_types[0], 2);
  EXPECT_EQ(v.tokens[1], "<s>");
  EXPECT_EQ(v.tokens[2], "</s>");
  EXPECT_EQ(v.token_types[2], 3);
  EXPECT_EQ(v.tokens[3 + 0x0A], "<0x0A>");
  EXPECT_EQ(v.tokens[3 + 0xFF], "<0xFF>");
  EXPECT_EQ(v.token_types[3 + 0x41], 6);
  EXPECT_EQ(v.tokens[259], "<|im_start|>");
  EXPECT_EQ(v.tokens[261], "\xE2\x96\x81");  // ▁
  EXPECT_EQ(v.tokens[262], "\xE2\x96\x81t");
  ASSERT_EQ(v.scores.size(), v.tokens.size());
  for (std::size_t i = 262; i < v.tokens.size(); ++i) EXPECT_LT(v.scores[i], v.scores[i - 1]);
  std::set<std::string> tokens(v.tokens.begin(), v.tokens.end());
  EXPECT_EQ(tokens.size(), v.tokens.size());
  EXPECT_TRUE(tokens.count("\xE2\x96\x81the"));
  EXPECT_TRUE(v.merges.empty());
}

TEST(TinyModel, PresetsAreNamedUniquelyAndUnknownNamesAreListed) {
  std::set<std::string> names;
  for (const auto& p : tiny_model_presets()) EXPECT_TRUE(names.insert(p.name).second) << p.name;
  EXPECT_TRUE(names.count("llama-spm-q8_0"));
  EXPECT_TRUE(names.count("llama-gpt2-q4_1"));
  EXPECT_TRUE(names.count("qwen2-gpt2-f16"));
  EXPECT_TRUE(names.count("llama-spm-f32"));
  try {
    tiny_model_preset("nope");
    FAIL() << "unknown preset accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("llama-spm-q8_0"), std::string::npos) << e.what();
  }
}

TEST(TinyModel, FileCarriesTheChatTemplateAndTokenizerKeys) {
  ScratchFile file(tiny_model_bytes(tiny_model_preset("llama-gpt2-q4_1")));
  const GgufFile f = GgufFile::open(file.path());
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(f.get_string("tokenizer.ggml.pre"), "smollm");
  EXPECT_EQ(f.get_string("tokenizer.chat_template"), std::string(kChatmlTemplate));
  EXPECT_NE(std::string(kChatmlTemplate).find("<|im_start|>"), std::string::npos);
  EXPECT_EQ(f.get_bool("tokenizer.ggml.add_bos_token"), false);
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.merges").size(),
            tiny_vocabulary(TinyVocab::Gpt2).merges.size());
  EXPECT_EQ(f.tensor("output.weight"), nullptr);  // tied
  ScratchFile spm_file(tiny_model_bytes(tiny_model_preset("llama-spm-q8_0")));
  const GgufFile spm = GgufFile::open(spm_file.path());
  EXPECT_EQ(spm.get_string("tokenizer.ggml.model"), "llama");
  EXPECT_EQ(spm.get_bool("tokenizer.ggml.add_bos_token"), true);
  EXPECT_EQ(spm.get_f32_array("tokenizer.ggml.scores").size(),
            spm.get_string_array("tokenizer.ggml.tokens").size());
}

}  // namespace
}  // namespace troupe
