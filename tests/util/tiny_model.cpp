#include "tests/util/tiny_model.hpp"

#include <cmath>
#include <numbers>
#include <set>
#include <stdexcept>

#include "model/sampler.hpp"
#include "tests/util/quantize.hpp"

namespace troupe::test {
namespace {

constexpr int32_t kNormal = 1, kUnknown = 2, kControl = 3, kByte = 6;

std::string utf8(uint32_t code_point) {
  std::string out;
  if (code_point < 0x80) {
    out += static_cast<char>(code_point);
  } else if (code_point < 0x800) {
    out += static_cast<char>(0xC0 | (code_point >> 6));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (code_point >> 12));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  }
  return out;
}

// GPT-2's byte-to-unicode table: printable Latin-1 bytes stand for themselves, the others
// take code points 256, 257, ... in byte order.
std::vector<std::string> gpt2_byte_symbols() {
  std::vector<std::string> symbols(256);
  uint32_t next_extra = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    symbols[b] = utf8(printable ? b : next_extra++);
  }
  return symbols;
}

class VocabBuilder {
 public:
  explicit VocabBuilder(TinyVocabulary& v) : v_(v) {}
  int32_t add(const std::string& text, int32_t type, float score = 0.0f) {
    if (!seen_.insert(text).second) throw std::logic_error("tiny vocabulary: duplicate " + text);
    v_.tokens.push_back(text);
    v_.token_types.push_back(type);
    v_.scores.push_back(score);
    return static_cast<int32_t>(v_.tokens.size() - 1);
  }
  bool has(const std::string& text) const { return seen_.count(text) != 0; }

 private:
  TinyVocabulary& v_;
  std::set<std::string> seen_;
};

TinyVocabulary gpt2_vocabulary() {
  TinyVocabulary v;
  VocabBuilder b(v);
  v.unk = b.add("<|endoftext|>", kControl);
  v.bos = b.add("<|im_start|>", kControl);
  v.eos = b.add("<|im_end|>", kControl);
  for (const auto& symbol : gpt2_byte_symbols()) b.add(symbol, kNormal);
  static const char* const kMerges[] = {
      "Ġ t", "Ġ a", "i n", "h e", "Ġ Ġ", "r e", "o n", "e r", "Ġt he", "a t", "Ġ s",
      "Ġ o", "e n", "Ġ w", "o r", "Ġ c", "i s", "e s", "i t", "Ġ b", "a n", "Ġ f",
      "Ġ m", "Ġ p", "a r", "l l", "o u", "Ġ h", "in g", "Ġ d", "e d", "Ġt o", "Ġa n",
      "Ġo f", "Ġ i", "Ġ l", "l e", "Ġ re", "Ġan d", "Ġ in", "Ġs t", "o w", "l d", "Ġw or",
      "Ġwor ld", "Ġ H", "e l", "Ġh el", "Ġhel l", "Ġhell o", "H el", "Hel l", "Hell o",
      "Ċ Ċ", "Ġ T", "T he", "Ġ y", "Ġy ou", "Ġ 1", "Ġ 2", "Ġ q", "Ġq u", "Ġ 0", "ĠĠ ĠĠ",
  };
  for (const char* merge : kMerges) {
    const std::string text = merge;
    const auto space = text.find(' ');
    const std::string left = text.substr(0, space), right = text.substr(space + 1);
    if (!b.has(left) || !b.has(right))
      throw std::logic_error("tiny vocabulary: merge '" + text + "' uses an unknown part");
    v.merges.push_back(text);
    if (!b.has(left + right)) b.add(left + right, kNormal);
  }
  v.scores.clear();
  return v;
}

TinyVocabulary spm_vocabulary() {
  TinyVocabulary v;
  VocabBuilder b(v);
  v.unk = b.add("<unk>", kUnknown);
  v.bos = b.add("<s>", kControl);
  v.eos = b.add("</s>", kControl);
  static const char kHex[] = "0123456789ABCDEF";
  for (int byte = 0; byte < 256; ++byte)
    b.add(std::string("<0x") + kHex[byte >> 4] + kHex[byte & 15] + ">", kByte);
  b.add("<|im_start|>", kControl);
  b.add("<|im_end|>", kControl);
  const std::string space = "\xE2\x96\x81";  // U+2581, sentencepiece's word boundary
  static const char* const kPieces[] = {
      "_t", "he", "_the", "in", "er", "_a", "on", "re", "_w", "or", "_wor", "ld", "_world",
      "_H", "el", "ll", "lo", "ello", "_Hello", "at", "en", "is", "_s", "_o", "_of", "an",
      "_an", "nd", "_and", "it", "_i", "_in", "ing", "_b", "_c", "_f", "_m", "_p", "ou",
      "_y", "_you", "_to", "es", "ed", "ar", "_T", "_The", "__", "____",
  };
  float score = -1.0f;
  b.add(space, kNormal, score--);
  for (const char* piece : kPieces) {
    std::string text;
    for (const char* c = piece; *c; ++c) text += *c == '_' ? space : std::string(1, *c);
    b.add(text, kNormal, score--);
  }
  for (char c = 'a'; c <= 'z'; ++c) b.add(std::string(1, c), kNormal, score--);
  for (char c = 'A'; c <= 'Z'; ++c) b.add(std::string(1, c), kNormal, score--);
  for (char c = '0'; c <= '9'; ++c) b.add(std::string(1, c), kNormal, score--);
  for (const char* p : {".", ",", "!", "?", "'", "-", ":", "(", ")"}) b.add(p, kNormal, score--);
  return v;
}

uint64_t fnv1a(std::string_view text) {
  uint64_t hash = 0xCBF29CE484222325ull;
  for (unsigned char c : text) hash = (hash ^ c) * 0x100000001B3ull;
  return hash;
}

// Standard normal samples by Box-Muller (one per pair of uniforms).
class Gaussian {
 public:
  explicit Gaussian(uint64_t seed) : rng_(seed) {}
  float next() {
    const double u1 = (static_cast<double>(rng_.next() >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
    const double u2 = rng_.uniform();
    return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2));
  }

 private:
  SplitMix64 rng_;
};

void add_random_tensor(GgufWriter& w, const TinyModelSpec& spec, const std::string& name,
                       GgmlType type, std::vector<uint64_t> dims, float mean, float stddev) {
  uint64_t count = 1;
  for (uint64_t d : dims) count *= d;
  Gaussian gaussian(spec.seed ^ fnv1a(name));
  std::vector<float> values(count);
  for (auto& x : values) x = mean + stddev * gaussian.next();
  w.add_tensor(name, type, std::move(dims), quantize(type, values));
}

std::vector<TinyPreset> make_presets() {
  auto spec = [](std::string arch, TinyVocab vocab, GgmlType type) {
    TinyModelSpec s;
    s.arch = std::move(arch);
    s.vocab = vocab;
    s.weight_type = type;
    if (s.arch == "qwen2") {
      s.rope_freq_base = 1000000.0f;
      s.rms_eps = 1e-6f;
    }
    return s;
  };
  std::vector<TinyPreset> presets;
  presets.push_back({"llama-spm-f32", "llama, sentencepiece vocab, F32 weights",
                     spec("llama", TinyVocab::Spm, GgmlType::F32)});
  presets.push_back({"llama-spm-q8_0", "llama, sentencepiece vocab, Q8_0 weights",
                     spec("llama", TinyVocab::Spm, GgmlType::Q8_0)});
  {
    TinyPreset p{"llama-spm-q4_0", "llama, sentencepiece vocab, Q4_0, tied output, 3 layers",
                 spec("llama", TinyVocab::Spm, GgmlType::Q4_0)};
    p.spec.tied_output = true;
    p.spec.n_layer = 3;
    presets.push_back(p);
  }
  {
    TinyPreset p{"llama-gpt2-q4_1",
                 "llama, gpt2 vocab, Q4_1, tied output, 6 heads / 2 kv heads (SmolLM2-like)",
                 spec("llama", TinyVocab::Gpt2, GgmlType::Q4_1)};
    p.spec.tied_output = true;
    p.spec.n_embd = 96;
    p.spec.n_head = 6;
    p.spec.n_head_kv = 2;
    p.spec.n_ff = 160;
    p.spec.rope_freq_base = 100000.0f;
    presets.push_back(p);
  }
  presets.push_back({"llama-gpt2-f16", "llama, gpt2 vocab, F16 weights",
                     spec("llama", TinyVocab::Gpt2, GgmlType::F16)});
  presets.push_back({"llama-spm-bf16", "llama, sentencepiece vocab, BF16 weights",
                     spec("llama", TinyVocab::Spm, GgmlType::BF16)});
  presets.push_back({"qwen2-gpt2-f16", "qwen2 (neox rope, q/k/v biases), gpt2 vocab, F16",
                     spec("qwen2", TinyVocab::Gpt2, GgmlType::F16)});
  {
    TinyPreset p{"qwen2-gpt2-q8_0", "qwen2, gpt2 vocab, Q8_0, tied output, 1 kv head",
                 spec("qwen2", TinyVocab::Gpt2, GgmlType::Q8_0)};
    p.spec.tied_output = true;
    p.spec.n_head_kv = 1;
    presets.push_back(p);
  }
  return presets;
}

}  // namespace

const char* const kChatmlTemplate =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

TinyVocabulary tiny_vocabulary(TinyVocab vocab) {
  return vocab == TinyVocab::Gpt2 ? gpt2_vocabulary() : spm_vocabulary();
}

GgufWriter tiny_model_writer(const TinyModelSpec& spec) {
  if (spec.arch != "llama" && spec.arch != "qwen2")
    throw std::invalid_argument("tiny model: arch must be llama or qwen2, not " + spec.arch);
  if (spec.n_head == 0 || spec.n_head_kv == 0 || spec.n_embd % spec.n_head != 0 ||
      spec.n_head % spec.n_head_kv != 0)
    throw std::invalid_argument("tiny model: heads must divide n_embd and each other");
  const TinyVocabulary vocab = tiny_vocabulary(spec.vocab);
  const uint64_t n_vocab = vocab.tokens.size();
  const uint32_t head_dim = spec.n_embd / spec.n_head;
  const uint64_t n_embd = spec.n_embd, n_ff = spec.n_ff;
  const uint64_t kv_dim = uint64_t{spec.n_head_kv} * head_dim;
  const std::string& a = spec.arch;

  GgufWriter w;
  w.add("general.architecture", meta_string(a));
  w.add("general.name", meta_string("troupe tiny model"));
  w.add(a + ".context_length", meta_u32(spec.n_ctx_train));
  w.add(a + ".embedding_length", meta_u32(spec.n_embd));
  w.add(a + ".block_count", meta_u32(spec.n_layer));
  w.add(a + ".feed_forward_length", meta_u32(spec.n_ff));
  w.add(a + ".attention.head_count", meta_u32(spec.n_head));
  w.add(a + ".attention.head_count_kv", meta_u32(spec.n_head_kv));
  w.add(a + ".rope.freq_base", meta_f32(spec.rope_freq_base));
  w.add(a + ".rope.dimension_count", meta_u32(head_dim));
  w.add(a + ".attention.layer_norm_rms_epsilon", meta_f32(spec.rms_eps));
  w.add(a + ".vocab_size", meta_u32(static_cast<uint32_t>(n_vocab)));

  const bool spm = spec.vocab == TinyVocab::Spm;
  w.add("tokenizer.ggml.model", meta_string(spm ? "llama" : "gpt2"));
  if (!spm) w.add("tokenizer.ggml.pre", meta_string("smollm"));
  w.add("tokenizer.ggml.tokens", meta_string_array(vocab.tokens));
  if (spm) w.add("tokenizer.ggml.scores", meta_f32_array(vocab.scores));
  w.add("tokenizer.ggml.token_type", meta_i32_array(vocab.token_types));
  if (!spm) w.add("tokenizer.ggml.merges", meta_string_array(vocab.merges));
  w.add("tokenizer.ggml.bos_token_id", meta_u32(static_cast<uint32_t>(vocab.bos)));
  w.add("tokenizer.ggml.eos_token_id", meta_u32(static_cast<uint32_t>(vocab.eos)));
  w.add("tokenizer.ggml.unknown_token_id", meta_u32(static_cast<uint32_t>(vocab.unk)));
  w.add("tokenizer.ggml.add_bos_token", meta_bool(spm));
  w.add("tokenizer.ggml.add_eos_token", meta_bool(false));
  w.add("tokenizer.chat_template", meta_string(kChatmlTemplate));

  const GgmlType wt = spec.weight_type;
  add_random_tensor(w, spec, "token_embd.weight", wt, {n_embd, n_vocab}, 0.0f, 0.5f);
  add_random_tensor(w, spec, "output_norm.weight", GgmlType::F32, {n_embd}, 1.0f, 0.1f);
  if (!spec.tied_output)
    add_random_tensor(w, spec, "output.weight", wt, {n_embd, n_vocab}, 0.0f, 0.5f);
  const float in_embd = 1.0f / std::sqrt(static_cast<float>(n_embd));
  const float in_ff = 1.0f / std::sqrt(static_cast<float>(n_ff));
  constexpr float kResidualGain = 3.0f;
  for (uint32_t i = 0; i < spec.n_layer; ++i) {
    const std::string blk = "blk." + std::to_string(i) + ".";
    add_random_tensor(w, spec, blk + "attn_norm.weight", GgmlType::F32, {n_embd}, 1.0f, 0.1f);
    add_random_tensor(w, spec, blk + "attn_q.weight", wt, {n_embd, n_embd}, 0.0f, in_embd);
    add_random_tensor(w, spec, blk + "attn_k.weight", wt, {n_embd, kv_dim}, 0.0f, in_embd);
    add_random_tensor(w, spec, blk + "attn_v.weight", wt, {n_embd, kv_dim}, 0.0f, in_embd);
    add_random_tensor(w, spec, blk + "attn_output.weight", wt, {n_embd, n_embd}, 0.0f, kResidualGain * in_embd);
    if (a == "qwen2") {
      add_random_tensor(w, spec, blk + "attn_q.bias", GgmlType::F32, {n_embd}, 0.0f, 0.2f);
      add_random_tensor(w, spec, blk + "attn_k.bias", GgmlType::F32, {kv_dim}, 0.0f, 0.2f);
      add_random_tensor(w, spec, blk + "attn_v.bias", GgmlType::F32, {kv_dim}, 0.0f, 0.2f);
    }
    add_random_tensor(w, spec, blk + "ffn_norm.weight", GgmlType::F32, {n_embd}, 1.0f, 0.1f);
    add_random_tensor(w, spec, blk + "ffn_gate.weight", wt, {n_embd, n_ff}, 0.0f, in_embd);
    add_random_tensor(w, spec, blk + "ffn_up.weight", wt, {n_embd, n_ff}, 0.0f, in_embd);
    add_random_tensor(w, spec, blk + "ffn_down.weight", wt, {n_ff, n_embd}, 0.0f, kResidualGain * in_ff);
  }
  return w;
}

std::vector<uint8_t> tiny_model_bytes(const TinyModelSpec& spec) {
  return tiny_model_writer(spec).bytes();
}

void write_tiny_model(const TinyModelSpec& spec, const std::string& path) {
  tiny_model_writer(spec).write(path);
}

const std::vector<TinyPreset>& tiny_model_presets() {
  static const std::vector<TinyPreset> presets = make_presets();
  return presets;
}

const TinyModelSpec& tiny_model_preset(std::string_view name) {
  std::string names;
  for (const auto& p : tiny_model_presets()) {
    if (p.name == name) return p.spec;
    names += (names.empty() ? "" : ", ") + p.name;
  }
  throw std::invalid_argument("unknown tiny model preset '" + std::string(name) +
                              "' (presets: " + names + ")");
}

}  // namespace troupe::test
