#include "model/model_desc.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

namespace troupe {
namespace {

template <class... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

std::string shape_text(const std::vector<uint64_t>& dims) {
  std::string text = "[";
  for (std::size_t i = 0; i < dims.size(); ++i) text += cat(i ? "," : "", dims[i]);
  return text + "]";
}

class DescReader {
 public:
  DescReader(const GgufFile& file, std::string arch) : file_(file), arch_(std::move(arch)) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw GgufError(cat(file_.path(), ": ", what));
  }

  std::string key(std::string_view suffix) const { return cat(arch_, ".", suffix); }

  std::optional<uint32_t> optional_u32(std::string_view suffix) const {
    const std::string name = key(suffix);
    const auto value = file_.get_u64(name);
    if (!value) return std::nullopt;
    if (*value == 0 || *value > std::numeric_limits<uint32_t>::max())
      fail(cat("metadata '", name, "' is ", *value, "; it must be between 1 and 2^32-1"));
    return static_cast<uint32_t>(*value);
  }

  uint32_t required_u32(std::string_view suffix) const {
    if (auto value = optional_u32(suffix)) return *value;
    fail(cat("metadata '", key(suffix), "' is missing"));
  }

  float positive_f32(std::string_view suffix, float fallback) const {
    const std::string name = key(suffix);
    const double value = file_.get_f64(name).value_or(fallback);
    if (!(value > 0.0) || !std::isfinite(value))
      fail(cat("metadata '", name, "' is ", value, "; it must be a positive number"));
    return static_cast<float>(value);
  }

  const GgufTensor* tensor(const std::string& name, std::vector<uint64_t> shape,
                           bool required = true) const {
    const GgufTensor* t = file_.tensor(name);
    if (!t) {
      if (required) fail(cat("tensor '", name, "' is missing"));
      return nullptr;
    }
    if (t->dims != shape)
      fail(cat(name, " has shape ", shape_text(t->dims), ", expected ", shape_text(shape)));
    if (shape.size() == 1 && t->type != GgmlType::F32)
      fail(cat(name, " has type ", traits_of(t->type).name,
               "; norm weights and biases must be F32"));
    return t;
  }

 private:
  const GgufFile& file_;
  std::string arch_;
};

}  // namespace

ModelDesc ModelDesc::from_gguf(const GgufFile& file) {
  ModelDesc d;
  const auto arch = file.get_string("general.architecture");
  if (!arch) throw GgufError(cat(file.path(), ": metadata 'general.architecture' is missing"));
  d.architecture = *arch;
  DescReader in(file, d.architecture);
  if (d.architecture == "llama") {
    d.rope_layout = RopeLayout::Adjacent;
    d.rms_eps = 1e-5f;
  } else if (d.architecture == "qwen2") {
    d.rope_layout = RopeLayout::Halves;
    d.rms_eps = 1e-6f;
  } else {
    in.fail(cat("architecture '", d.architecture, "' is not supported (supported: llama, qwen2)"));
  }

  d.n_layer = in.required_u32("block_count");
  d.n_embd = in.required_u32("embedding_length");
  d.n_head = in.required_u32("attention.head_count");
  d.n_head_kv = in.optional_u32("attention.head_count_kv").value_or(d.n_head);
  d.n_ff = in.required_u32("feed_forward_length");
  d.n_ctx_train = in.required_u32("context_length");
  d.rope_freq_base = in.positive_f32("rope.freq_base", 10000.0f);
  d.rms_eps = in.positive_f32("attention.layer_norm_rms_epsilon", d.rms_eps);

  if (d.n_head % d.n_head_kv != 0)
    in.fail(cat("attention.head_count ", d.n_head, " is not a multiple of head_count_kv ",
                d.n_head_kv));
  if (auto key_length = in.optional_u32("attention.key_length")) {
    d.head_dim = *key_length;
  } else {
    if (d.n_embd % d.n_head != 0)
      in.fail(cat("embedding_length ", d.n_embd, " is not a multiple of head_count ", d.n_head,
                  " and attention.key_length is absent"));
    d.head_dim = d.n_embd / d.n_head;
  }
  if (auto value_length = in.optional_u32("attention.value_length");
      value_length && *value_length != d.head_dim)
    in.fail(cat("attention.value_length ", *value_length, " differs from the key length ",
                d.head_dim, "; not supported"));
  if (auto rot = in.optional_u32("rope.dimension_count"); rot && *rot != d.head_dim)
    in.fail(cat("rope.dimension_count ", *rot, " differs from the head dimension ", d.head_dim,
                "; partial rotary embeddings are not supported"));
  if (d.head_dim % 2 != 0) in.fail(cat("head dimension ", d.head_dim, " is odd; rope needs pairs"));
  if (auto scaling = file.get_string(in.key("rope.scaling.type")); scaling && *scaling != "none")
    in.fail(cat("rope scaling '", *scaling, "' is not supported"));
  if (file.tensor("rope_freqs.weight"))
    in.fail("per-dimension rope frequencies (rope_freqs.weight) are not supported");
  if (auto experts = file.get_u64(in.key("expert_count")); experts && *experts > 0)
    in.fail(cat("mixture-of-experts models (", *experts, " experts) are not supported"));

  const GgufTensor* embd = file.tensor("token_embd.weight");
  if (!embd) in.fail("tensor 'token_embd.weight' is missing");
  if (auto vocab = in.optional_u32("vocab_size")) {
    d.n_vocab = *vocab;
  } else {
    if (embd->dims.size() != 2 || embd->dims[1] == 0 ||
        embd->dims[1] > std::numeric_limits<uint32_t>::max())
      in.fail(cat("token_embd.weight has shape ", shape_text(embd->dims),
                  ", expected [", d.n_embd, ", n_vocab]"));
    d.n_vocab = static_cast<uint32_t>(embd->dims[1]);
  }

  const uint64_t n_embd = d.n_embd, n_vocab = d.n_vocab, n_ff = d.n_ff;
  const uint64_t q_dim = uint64_t{d.n_head} * d.head_dim;
  const uint64_t kv_dim = uint64_t{d.n_head_kv} * d.head_dim;
  d.token_embd = in.tensor("token_embd.weight", {n_embd, n_vocab});
  d.output_norm = in.tensor("output_norm.weight", {n_embd});
  d.output = in.tensor("output.weight", {n_embd, n_vocab}, false);
  d.tied_output = d.output == nullptr;
  if (d.tied_output) d.output = d.token_embd;

  // Grows one layer at a time: a hostile block_count fails at the first missing tensor.
  d.layers.reserve(std::min<std::size_t>(d.n_layer, file.tensors().size()));
  for (uint32_t i = 0; i < d.n_layer; ++i) {
    const std::string blk = cat("blk.", i, ".");
    LayerTensors l;
    l.attn_norm = in.tensor(blk + "attn_norm.weight", {n_embd});
    l.wq = in.tensor(blk + "attn_q.weight", {n_embd, q_dim});
    l.wk = in.tensor(blk + "attn_k.weight", {n_embd, kv_dim});
    l.wv = in.tensor(blk + "attn_v.weight", {n_embd, kv_dim});
    l.wo = in.tensor(blk + "attn_output.weight", {q_dim, n_embd});
    l.bq = in.tensor(blk + "attn_q.bias", {q_dim}, false);
    l.bk = in.tensor(blk + "attn_k.bias", {kv_dim}, false);
    l.bv = in.tensor(blk + "attn_v.bias", {kv_dim}, false);
    l.ffn_norm = in.tensor(blk + "ffn_norm.weight", {n_embd});
    l.ffn_gate = in.tensor(blk + "ffn_gate.weight", {n_embd, n_ff});
    l.ffn_up = in.tensor(blk + "ffn_up.weight", {n_embd, n_ff});
    l.ffn_down = in.tensor(blk + "ffn_down.weight", {n_ff, n_embd});
    d.layers.push_back(l);
  }
  return d;
}

}  // namespace troupe
