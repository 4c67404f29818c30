// Tiny random-weight models for tests and for recording llama.cpp references: a GGUF v3
// file with a llama or qwen2 architecture (qwen2: neox rope and q/k/v biases), a synthetic
// vocabulary llama.cpp accepts (gpt2 byte-level BPE or llama sentencepiece with byte
// fallback), a ChatML chat template, and weights drawn from splitmix64 + Box-Muller, so the
// same spec gives the same bytes everywhere. Scales: token embeddings and the output matrix
// N(0, 0.5^2) (logits spread a few units, so greedy choices are not near-ties), projections
// N(0, 1/fan_in), norm weights 1 + N(0, 0.1^2), biases N(0, 0.2^2).
// Pure functions of the spec; safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model/ggml_types.hpp"
#include "model/gguf.hpp"
#include "model/model_desc.hpp"
#include "tests/util/gguf_writer.hpp"
#include "tests/util/scratch_file.hpp"

namespace troupe::test {

enum class TinyVocab { Spm, Gpt2 };

struct TinyModelSpec {
  std::string arch = "llama";  // "llama" or "qwen2"
  TinyVocab vocab = TinyVocab::Spm;
  GgmlType weight_type = GgmlType::F32;  // 2-D weights; norms and biases are always F32
  uint32_t n_layer = 2;
  uint32_t n_embd = 64;
  uint32_t n_head = 4;
  uint32_t n_head_kv = 2;
  uint32_t n_ff = 128;
  uint32_t n_ctx_train = 2048;
  float rope_freq_base = 10000.0f;
  float rms_eps = 1e-5f;
  bool tied_output = false;  // no output.weight: logits use token_embd
  uint64_t seed = 0x7157'0001;
};

struct TinyVocabulary {
  std::vector<std::string> tokens;
  std::vector<float> scores;        // spm only
  std::vector<int32_t> token_types;  // 1 normal, 2 unknown, 3 control, 6 byte
  std::vector<std::string> merges;  // gpt2 only, "left right", by rank
  int32_t bos = 0, eos = 0, unk = -1;
};

TinyVocabulary tiny_vocabulary(TinyVocab vocab);
extern const char* const kChatmlTemplate;

// The model as a writer (tests may add keys or tensors before serializing).
GgufWriter tiny_model_writer(const TinyModelSpec& spec);
std::vector<uint8_t> tiny_model_bytes(const TinyModelSpec& spec);
void write_tiny_model(const TinyModelSpec& spec, const std::string& path);

struct TinyPreset {
  std::string name;
  std::string description;
  TinyModelSpec spec;
};
const std::vector<TinyPreset>& tiny_model_presets();
// Throws std::invalid_argument listing the presets when `name` is unknown.
const TinyModelSpec& tiny_model_preset(std::string_view name);

// A preset written to a scratch file and opened: the mapping and the ModelDesc a backend
// borrows, alive as long as this object (not movable: desc points into gguf).
struct OpenedTinyModel {
  explicit OpenedTinyModel(std::string_view preset)
      : file(tiny_model_bytes(tiny_model_preset(preset))),
        gguf(GgufFile::open(file.path())),
        desc(ModelDesc::from_gguf(gguf)) {}
  OpenedTinyModel(const OpenedTinyModel&) = delete;
  OpenedTinyModel& operator=(const OpenedTinyModel&) = delete;
  ScratchFile file;
  GgufFile gguf;
  ModelDesc desc;
};

}  // namespace troupe::test
