// ModelDesc on the real SmolLM2 file (expected values from its published config:
// HuggingFaceTB/SmolLM2-135M-Instruct) and on tiny generated models, plus every refusal.
#include <gtest/gtest.h>

#include "model/default_model.hpp"

#include <filesystem>

#include "model/model_desc.hpp"
#include "tests/util/scratch_file.hpp"
#include "tests/util/tiny_model.hpp"

namespace troupe {
namespace {

using test::GgufWriter;
using test::ScratchFile;
using test::TinyModelSpec;

struct Loaded {
  std::unique_ptr<ScratchFile> file;
  std::unique_ptr<GgufFile> gguf;
};

Loaded load(const GgufWriter& writer) {
  Loaded l;
  l.file = std::make_unique<ScratchFile>(writer.bytes());
  l.gguf = std::make_unique<GgufFile>(GgufFile::open(l.file->path()));
  return l;
}

std::string refusal(const GgufWriter& writer) {
  Loaded l = load(writer);
  try {
    ModelDesc::from_gguf(*l.gguf);
  } catch (const GgufError& e) {
    return e.what();
  }
  ADD_FAILURE() << "model accepted";
  return {};
}

void expect_refused(const GgufWriter& writer, const std::string& fragment) {
  const std::string message = refusal(writer);
  EXPECT_NE(message.find(fragment), std::string::npos)
      << "expected '" << fragment << "' in: " << message;
}

TEST(ModelDesc, SmolLM2) {
  const std::string path = default_model_path().string();
  if (!std::filesystem::exists(path)) FAIL() << path << " absent: run scripts/fetch-model (make test does)";
  const GgufFile file = GgufFile::open(path);
  const ModelDesc d = ModelDesc::from_gguf(file);
  EXPECT_EQ(d.architecture, "llama");
  EXPECT_EQ(d.n_layer, 30u);
  EXPECT_EQ(d.n_embd, 576u);
  EXPECT_EQ(d.n_head, 9u);
  EXPECT_EQ(d.n_head_kv, 3u);
  EXPECT_EQ(d.head_dim, 64u);
  EXPECT_EQ(d.n_ff, 1536u);
  EXPECT_EQ(d.n_vocab, 49152u);
  EXPECT_EQ(d.n_ctx_train, 8192u);
  EXPECT_FLOAT_EQ(d.rope_freq_base, 100000.0f);
  EXPECT_FLOAT_EQ(d.rms_eps, 1e-5f);
  EXPECT_EQ(d.rope_layout, RopeLayout::Adjacent);
  EXPECT_TRUE(d.tied_output);
  EXPECT_EQ(d.output, d.token_embd);
  EXPECT_EQ(d.token_embd->type, GgmlType::Q8_0);
  ASSERT_EQ(d.layers.size(), 30u);
  EXPECT_EQ(d.layers[29].ffn_down->type, GgmlType::Q4_1);
  EXPECT_EQ(d.layers[29].ffn_down->name, "blk.29.ffn_down.weight");
  EXPECT_EQ(d.layers[0].wk->dims, (std::vector<uint64_t>{576, 192}));
  EXPECT_EQ(d.layers[0].bq, nullptr);
  EXPECT_EQ(file.tensors().size(), 272u);
  EXPECT_EQ(file.get_string_array("tokenizer.ggml.tokens").size(), 49152u);
  EXPECT_EQ(file.get_string_array("tokenizer.ggml.tokens")[0], "<|endoftext|>");
  EXPECT_EQ(file.get_string("tokenizer.ggml.pre"), "smollm");
}

TEST(ModelDesc, EveryTinyPresetDescribesItsSpec) {
  for (const auto& preset : test::tiny_model_presets()) {
    SCOPED_TRACE(preset.name);
    const TinyModelSpec& s = preset.spec;
    Loaded l = load(test::tiny_model_writer(s));
    const ModelDesc d = ModelDesc::from_gguf(*l.gguf);
    const auto vocab = test::tiny_vocabulary(s.vocab);
    EXPECT_EQ(d.architecture, s.arch);
    EXPECT_EQ(d.n_layer, s.n_layer);
    EXPECT_EQ(d.n_embd, s.n_embd);
    EXPECT_EQ(d.n_head, s.n_head);
    EXPECT_EQ(d.n_head_kv, s.n_head_kv);
    EXPECT_EQ(d.head_dim, s.n_embd / s.n_head);
    EXPECT_EQ(d.n_ff, s.n_ff);
    EXPECT_EQ(d.n_vocab, vocab.tokens.size());
    EXPECT_EQ(d.n_ctx_train, s.n_ctx_train);
    EXPECT_FLOAT_EQ(d.rope_freq_base, s.rope_freq_base);
    EXPECT_FLOAT_EQ(d.rms_eps, s.rms_eps);
    EXPECT_EQ(d.rope_layout, s.arch == "qwen2" ? RopeLayout::Halves : RopeLayout::Adjacent);
    EXPECT_EQ(d.tied_output, s.tied_output);
    EXPECT_EQ(d.output == d.token_embd, s.tied_output);
    EXPECT_EQ(d.token_embd->type, s.weight_type);
    ASSERT_EQ(d.layers.size(), s.n_layer);
    for (const auto& layer : d.layers) {
      EXPECT_EQ(layer.wq->type, s.weight_type);
      EXPECT_EQ(layer.attn_norm->type, GgmlType::F32);
      EXPECT_EQ(layer.bq != nullptr, s.arch == "qwen2");
      EXPECT_EQ(layer.bk != nullptr, s.arch == "qwen2");
      EXPECT_EQ(layer.bv != nullptr, s.arch == "qwen2");
    }
  }
}

TEST(ModelDesc, DefaultsWhenKeysAreAbsent) {
  TinyModelSpec spec;
  GgufWriter llama = test::tiny_model_writer(spec);
  for (const char* key : {"llama.rope.freq_base", "llama.attention.head_count_kv",
                          "llama.attention.layer_norm_rms_epsilon", "llama.vocab_size",
                          "llama.rope.dimension_count"})
    llama.remove(key);
  // without head_count_kv the K/V projections are full width
  llama.set_tensor("blk.0.attn_k.weight", GgmlType::F32, {64, 64}, std::vector<uint8_t>(64 * 64 * 4));
  llama.set_tensor("blk.0.attn_v.weight", GgmlType::F32, {64, 64}, std::vector<uint8_t>(64 * 64 * 4));
  llama.set_tensor("blk.1.attn_k.weight", GgmlType::F32, {64, 64}, std::vector<uint8_t>(64 * 64 * 4));
  llama.set_tensor("blk.1.attn_v.weight", GgmlType::F32, {64, 64}, std::vector<uint8_t>(64 * 64 * 4));
  Loaded l = load(llama);
  const ModelDesc d = ModelDesc::from_gguf(*l.gguf);
  EXPECT_FLOAT_EQ(d.rope_freq_base, 10000.0f);
  EXPECT_EQ(d.n_head_kv, d.n_head);
  EXPECT_FLOAT_EQ(d.rms_eps, 1e-5f);
  EXPECT_EQ(d.n_vocab, test::tiny_vocabulary(spec.vocab).tokens.size());
  EXPECT_EQ(d.head_dim, 16u);

  spec.arch = "qwen2";
  GgufWriter qwen = test::tiny_model_writer(spec);
  qwen.remove("qwen2.attention.layer_norm_rms_epsilon");
  Loaded q = load(qwen);
  EXPECT_FLOAT_EQ(ModelDesc::from_gguf(*q.gguf).rms_eps, 1e-6f);
}

TEST(ModelDesc, KeyLengthSetsTheHeadDimension) {
  TinyModelSpec spec;  // n_embd 64, 4 heads of 16; declare 4 heads of 32 instead
  GgufWriter w = test::tiny_model_writer(spec);
  w.set("llama.attention.key_length", test::meta_u32(32));
  w.set("llama.rope.dimension_count", test::meta_u32(32));
  for (int i = 0; i < 2; ++i) {
    const std::string blk = "blk." + std::to_string(i) + ".";
    w.set_tensor(blk + "attn_q.weight", GgmlType::F32, {64, 128}, std::vector<uint8_t>(64 * 128 * 4));
    w.set_tensor(blk + "attn_k.weight", GgmlType::F32, {64, 64}, std::vector<uint8_t>(64 * 64 * 4));
    w.set_tensor(blk + "attn_v.weight", GgmlType::F32, {64, 64}, std::vector<uint8_t>(64 * 64 * 4));
    w.set_tensor(blk + "attn_output.weight", GgmlType::F32, {128, 64}, std::vector<uint8_t>(128 * 64 * 4));
  }
  Loaded l = load(w);
  const ModelDesc d = ModelDesc::from_gguf(*l.gguf);
  EXPECT_EQ(d.head_dim, 32u);
  EXPECT_EQ(d.layers[1].wo->dims, (std::vector<uint64_t>{128, 64}));
}

TEST(ModelDesc, RefusesUnsupportedArchitecturesAndFeatures) {
  GgufWriter gemma = test::tiny_model_writer({});
  gemma.set("general.architecture", test::meta_string("gemma"));
  expect_refused(gemma, "architecture 'gemma' is not supported (supported: llama, qwen2)");

  GgufWriter none = test::tiny_model_writer({});
  none.remove("general.architecture");
  expect_refused(none, "metadata 'general.architecture' is missing");

  GgufWriter partial = test::tiny_model_writer({});
  partial.set("llama.rope.dimension_count", test::meta_u32(8));
  expect_refused(partial, "rope.dimension_count 8 differs from the head dimension 16");

  GgufWriter scaled = test::tiny_model_writer({});
  scaled.add("llama.rope.scaling.type", test::meta_string("yarn"));
  expect_refused(scaled, "rope scaling 'yarn' is not supported");

  GgufWriter moe = test::tiny_model_writer({});
  moe.add("llama.expert_count", test::meta_u32(8));
  expect_refused(moe, "mixture-of-experts");

  GgufWriter freqs = test::tiny_model_writer({});
  freqs.add_tensor("rope_freqs.weight", GgmlType::F32, {8}, std::vector<uint8_t>(32));
  expect_refused(freqs, "rope_freqs.weight");
}

TEST(ModelDesc, RefusesBadHyperParameters) {
  GgufWriter missing = test::tiny_model_writer({});
  missing.remove("llama.block_count");
  expect_refused(missing, "metadata 'llama.block_count' is missing");

  GgufWriter zero = test::tiny_model_writer({});
  zero.set("llama.embedding_length", test::meta_u32(0));
  expect_refused(zero, "metadata 'llama.embedding_length' is 0");

  GgufWriter array = test::tiny_model_writer({});
  array.set("llama.attention.head_count_kv",
            test::meta_array(GgufType::U32, {test::meta_u32(2), test::meta_u32(2)}));
  expect_refused(array, "metadata 'llama.attention.head_count_kv': expected a non-negative integer, found array");

  GgufWriter text = test::tiny_model_writer({});
  text.set("llama.rope.freq_base", test::meta_string("fast"));
  expect_refused(text, "metadata 'llama.rope.freq_base': expected a number, found string");

  GgufWriter negative = test::tiny_model_writer({});
  negative.set("llama.attention.layer_norm_rms_epsilon", test::meta_f32(-1.0f));
  expect_refused(negative, "layer_norm_rms_epsilon' is -1; it must be a positive number");

  GgufWriter gqa = test::tiny_model_writer({});
  gqa.set("llama.attention.head_count_kv", test::meta_u32(3));
  expect_refused(gqa, "attention.head_count 4 is not a multiple of head_count_kv 3");

  GgufWriter indivisible = test::tiny_model_writer({});
  indivisible.set("llama.attention.head_count", test::meta_u32(6));
  indivisible.set("llama.attention.head_count_kv", test::meta_u32(6));
  expect_refused(indivisible, "embedding_length 64 is not a multiple of head_count 6");

  GgufWriter hostile = test::tiny_model_writer({});  // must fail fast, not allocate 4G layers
  hostile.set("llama.block_count", test::meta_u32(4000000000u));
  expect_refused(hostile, "tensor 'blk.2.attn_norm.weight' is missing");
}

TEST(ModelDesc, ChecksEveryTensorShape) {
  GgufWriter k = test::tiny_model_writer({});  // kv width 2 heads x 16 = 32
  k.set_tensor("blk.1.attn_k.weight", GgmlType::F32, {64, 16}, std::vector<uint8_t>(64 * 16 * 4));
  expect_refused(k, "blk.1.attn_k.weight has shape [64,16], expected [64,32]");

  GgufWriter down = test::tiny_model_writer({});
  down.set_tensor("blk.0.ffn_down.weight", GgmlType::F32, {64, 128}, std::vector<uint8_t>(64 * 128 * 4));
  expect_refused(down, "blk.0.ffn_down.weight has shape [64,128], expected [128,64]");

  GgufWriter out = test::tiny_model_writer({});
  out.set_tensor("output.weight", GgmlType::F32, {64, 7}, std::vector<uint8_t>(64 * 7 * 4));
  expect_refused(out, "output.weight has shape [64,7], expected [64,");

  GgufWriter norm = test::tiny_model_writer({});
  norm.set_tensor("output_norm.weight", GgmlType::F32, {64, 1}, std::vector<uint8_t>(64 * 4));
  expect_refused(norm, "output_norm.weight has shape [64,1], expected [64]");

  GgufWriter norm_type = test::tiny_model_writer({});
  norm_type.set_tensor("blk.0.ffn_norm.weight", GgmlType::F16, {64}, std::vector<uint8_t>(64 * 2));
  expect_refused(norm_type, "blk.0.ffn_norm.weight has type F16; norm weights and biases must be F32");

  TinyModelSpec qwen;
  qwen.arch = "qwen2";
  GgufWriter bias = test::tiny_model_writer(qwen);
  bias.set_tensor("blk.1.attn_v.bias", GgmlType::F32, {64}, std::vector<uint8_t>(64 * 4));
  expect_refused(bias, "blk.1.attn_v.bias has shape [64], expected [32]");

  GgufWriter gone = test::tiny_model_writer({});
  gone.remove_tensor("blk.1.ffn_gate.weight");
  expect_refused(gone, "tensor 'blk.1.ffn_gate.weight' is missing");

  GgufWriter embd = test::tiny_model_writer({});
  embd.remove("llama.vocab_size");
  embd.set_tensor("token_embd.weight", GgmlType::F32, {64}, std::vector<uint8_t>(64 * 4));
  expect_refused(embd, "token_embd.weight has shape [64], expected [64, n_vocab]");
}

}  // namespace
}  // namespace troupe
