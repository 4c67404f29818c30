#include "gpu/sim_profile.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace troupe {

namespace {

SimProfile seven_b_h200() {
  SimProfile p;
  p.name = "7b-h200";
  p.model.architecture = "llama";
  p.model.n_layer = 32;
  p.model.n_embd = 4096;
  p.model.n_head = 32;
  p.model.n_head_kv = 8;
  p.model.head_dim = 128;
  p.model.n_ff = 14336;
  p.model.n_vocab = 32000;
  p.model.n_ctx_train = 32768;
  p.bytes_per_weight = 2.0;
  p.bytes_per_kv_value = 2.0;
  p.memory_bytes_per_second = 4.8e12;
  p.flops_per_second = 990e12;
  p.launch_overhead_seconds = 20e-6;
  return p;
}

}  // namespace

uint64_t SimProfile::params() const {
  const ModelDesc& m = model;
  const uint64_t embd = m.n_embd;
  const uint64_t q_dim = uint64_t(m.n_head) * m.head_dim;
  const uint64_t kv_dim = uint64_t(m.n_head_kv) * m.head_dim;
  const uint64_t per_layer =
      embd * q_dim + 2 * embd * kv_dim + q_dim * embd + 3 * embd * uint64_t(m.n_ff) + 2 * embd;
  return 2 * uint64_t(m.n_vocab) * embd + embd + uint64_t(m.n_layer) * per_layer;
}

double SimProfile::kv_bytes_per_token() const {
  return 2.0 * double(model.n_layer) * double(model.n_head_kv) * double(model.head_dim) *
         bytes_per_kv_value;
}

double SimProfile::step_seconds(int64_t tokens, int64_t kv_tokens) const {
  const double memory = (weight_bytes() + double(kv_tokens) * kv_bytes_per_token()) /
                        memory_bytes_per_second;
  const double compute = 2.0 * double(params()) * double(tokens) / flops_per_second;
  return std::max(memory, compute) + launch_overhead_seconds;
}

void SimProfile::validate() const {
  auto require = [this](bool ok, const char* what) {
    if (!ok)
      throw std::invalid_argument("sim profile '" + name + "': " + what + " must be positive");
  };
  require(model.n_layer > 0, "layers");
  require(model.n_embd > 0, "hidden size");
  require(model.n_head > 0, "heads");
  require(model.n_head_kv > 0, "KV heads");
  require(model.head_dim > 0, "head dim");
  require(model.n_ff > 0, "FFN size");
  require(model.n_vocab > 0, "vocabulary");
  require(model.n_ctx_train > 0, "context");
  require(bytes_per_weight > 0 && std::isfinite(bytes_per_weight), "bytes per weight");
  require(bytes_per_kv_value > 0 && std::isfinite(bytes_per_kv_value), "bytes per KV value");
  require(memory_bytes_per_second > 0 && std::isfinite(memory_bytes_per_second),
          "memory bandwidth");
  require(flops_per_second > 0 && std::isfinite(flops_per_second), "FLOP rate");
  if (!(launch_overhead_seconds >= 0) || !std::isfinite(launch_overhead_seconds))
    throw std::invalid_argument("sim profile '" + name + "': launch overhead must be >= 0");
}

std::vector<std::string> sim_profile_names() { return {"7b-h200"}; }

SimProfile sim_profile(std::string_view name) {
  if (name == "7b-h200") return seven_b_h200();
  std::string known;
  for (const std::string& n : sim_profile_names()) known += (known.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unknown sim profile '" + std::string(name) +
                              "' (available: " + known + ")");
}

ModelDesc sim_model_desc(const SimProfile& p) {
  ModelDesc d = p.model;
  d.layers.resize(d.n_layer);
  return d;
}

}  // namespace troupe
