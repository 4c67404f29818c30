// ModelDesc: the hyper-parameters and the tensor map of a llama-family model, read from a
// GgufFile the way llama.cpp reads it. from_gguf() checks every tensor's presence and shape
// and throws GgufError with a message naming the key or tensor and the expected value.
// Supported architectures: `llama` and `qwen2`; any other is refused by name.
// Ownership: the tensor pointers point into the GgufFile, which must outlive the ModelDesc
// (moving the file keeps them valid). Immutable after construction: thread-safe to read.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/gguf.hpp"

namespace troupe {

// How rope rotates a head: llama.cpp's "normal" mode rotates adjacent pairs (x[2i], x[2i+1]);
// its "neox" mode rotates the halves (x[i], x[i + head_dim/2]).
enum class RopeLayout { Adjacent, Halves };

struct LayerTensors {
  const GgufTensor* attn_norm = nullptr;  // [n_embd]
  const GgufTensor* wq = nullptr;         // [n_embd, n_head * head_dim]
  const GgufTensor* wk = nullptr;         // [n_embd, n_head_kv * head_dim]
  const GgufTensor* wv = nullptr;         // [n_embd, n_head_kv * head_dim]
  const GgufTensor* wo = nullptr;         // [n_head * head_dim, n_embd]
  const GgufTensor* bq = nullptr;         // optional bias [n_head * head_dim]
  const GgufTensor* bk = nullptr;         // optional bias [n_head_kv * head_dim]
  const GgufTensor* bv = nullptr;         // optional bias [n_head_kv * head_dim]
  const GgufTensor* ffn_norm = nullptr;   // [n_embd]
  const GgufTensor* ffn_gate = nullptr;   // [n_embd, n_ff]
  const GgufTensor* ffn_up = nullptr;     // [n_embd, n_ff]
  const GgufTensor* ffn_down = nullptr;   // [n_ff, n_embd]
};

struct ModelDesc {
  std::string architecture;
  uint32_t n_layer = 0;
  uint32_t n_embd = 0;
  uint32_t n_head = 0;
  uint32_t n_head_kv = 0;
  uint32_t head_dim = 0;
  uint32_t n_ff = 0;
  uint32_t n_vocab = 0;
  uint32_t n_ctx_train = 0;
  float rope_freq_base = 10000.0f;
  float rms_eps = 1e-5f;
  RopeLayout rope_layout = RopeLayout::Adjacent;

  const GgufTensor* token_embd = nullptr;   // [n_embd, n_vocab]
  const GgufTensor* output_norm = nullptr;  // [n_embd]
  const GgufTensor* output = nullptr;       // [n_embd, n_vocab]; == token_embd when tied
  bool tied_output = false;
  std::vector<LayerTensors> layers;         // n_layer entries

  static ModelDesc from_gguf(const GgufFile& file);
};

}  // namespace troupe
