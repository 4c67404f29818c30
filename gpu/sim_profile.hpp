// SimProfile: what the sim backend pretends to be (a model's shape on one device) and the
// roofline time of one step on it. A step reads every weight once plus the KV of every
// position its attention covers, and does 2 x params FLOPs per new token; it takes the larger
// of the memory and the compute time, plus a fixed launch overhead. Attention FLOPs and the
// embedding lookup's sparsity are ignored: every weight counts as streamed.
// Units: bytes, seconds, FLOP. Immutable values: thread-safe to read.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model/model_desc.hpp"

namespace troupe {

struct SimProfile {
  std::string name;
  // The model: a llama-family shape with untied input and output embeddings, as a synthetic
  // ModelDesc (architecture "llama"; no GGUF behind it, every tensor pointer null).
  ModelDesc model;
  double bytes_per_weight = 2.0;    // bf16
  double bytes_per_kv_value = 2.0;  // bf16 K and V
  // The device.
  double memory_bytes_per_second = 0.0;
  double flops_per_second = 0.0;
  double launch_overhead_seconds = 0.0;

  // Embeddings, output, and per layer Q/K/V/O, gate/up/down and two norms, plus the final norm.
  uint64_t params() const;
  double weight_bytes() const { return double(params()) * bytes_per_weight; }
  // K and V of every layer for one position.
  double kv_bytes_per_token() const;
  // One step computing `tokens` new tokens whose attention reads `kv_tokens` positions in
  // all (summed over its sequences, the new positions included).
  double step_seconds(int64_t tokens, int64_t kv_tokens) const;

  // Throws std::invalid_argument naming the first unusable field.
  void validate() const;
};

// "7b-h200": a Mistral-7B shape (zephyr-7b-beta: 32 layers, hidden 4096, 32 heads, 8 KV heads,
// head dim 128, FFN 14336, vocab 32000, bf16) on one H200 (4.8 TB/s, 990 TFLOP/s dense bf16,
// 20 us launch overhead).
SimProfile sim_profile(std::string_view name);  // throws std::invalid_argument listing names
std::vector<std::string> sim_profile_names();

// The profile's synthetic ModelDesc, with n_layer empty layer entries.
ModelDesc sim_model_desc(const SimProfile& profile);

}  // namespace troupe
