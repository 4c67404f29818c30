#include "model/vocab.hpp"

#include <algorithm>
#include <array>
#include <functional>
#include <unordered_map>
#include <utility>

#include "model/gguf.hpp"

namespace troupe {
namespace {

struct TextHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

using MergeKey = std::pair<std::string, std::string>;
using MergeView = std::pair<std::string_view, std::string_view>;

struct MergeHash {
  using is_transparent = void;
  std::size_t operator()(MergeView k) const {
    const std::size_t a = std::hash<std::string_view>{}(k.first);
    const std::size_t b = std::hash<std::string_view>{}(k.second);
    return a ^ (b + 0x9E3779B97F4A7C15ull + (a << 6) + (a >> 2));
  }
  std::size_t operator()(const MergeKey& k) const { return (*this)(MergeView(k.first, k.second)); }
};

struct MergeEqual {
  using is_transparent = void;
  template <typename A, typename B>
  bool operator()(const A& a, const B& b) const {
    return std::string_view(a.first) == std::string_view(b.first) &&
           std::string_view(a.second) == std::string_view(b.second);
  }
};

// Token texts llama.cpp (llama-vocab.cpp) recognises; each found token is typed as control.
constexpr std::array<std::string_view, 9> kEotTexts = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>", "_<EOT>",
    "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>", "<end_of_utterance>"};
constexpr std::array<std::string_view, 12> kEogTexts = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>",
    "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>"};
constexpr std::array<std::string_view, 1> kEomTexts = {"<|eom_id|>"};
constexpr std::array<std::string_view, 7> kFimPreTexts = {
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>",
    "<PRE>", "\xE2\x96\x81<PRE>", "<|code_prefix|>"};
constexpr std::array<std::string_view, 7> kFimSufTexts = {
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "hole\xEF\xBD\x9C>",
    "<SUF>", "\xE2\x96\x81<SUF>", "<|code_suffix|>"};
constexpr std::array<std::string_view, 7> kFimMidTexts = {
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>",
    "<MID>", "\xE2\x96\x81<MID>", "<|code_middle|>"};
constexpr std::array<std::string_view, 4> kFimPadTexts = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>"};
constexpr std::array<std::string_view, 5> kFimRepTexts = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>",
                                                          "<REPO>", "<reponame>"};
constexpr std::array<std::string_view, 1> kFimSepTexts = {"<|file_sep|>"};
// gpt-oss tokens llama.cpp always renders.
constexpr std::array<std::string_view, 4> kAlwaysRenderedTexts = {"<|channel|>", "<|message|>", "<|start|>",
                                                                  "<|constrain|>"};

std::optional<int64_t> read_id(const GgufFile& file, std::string_view key) {
  const auto value = file.get_u64(key);
  if (!value) return std::nullopt;
  return static_cast<int64_t>(std::min<uint64_t>(*value, INT64_MAX));
}

}  // namespace

struct Vocab::Data {
  VocabKind kind = VocabKind::Llama;
  BpePreTokenizerSettings pre;
  std::vector<std::string> texts;
  std::vector<float> scores;
  std::vector<TokenType> types;
  std::unordered_map<std::string, int32_t, TextHash, std::equal_to<>> ids;
  std::unordered_map<MergeKey, int, MergeHash, MergeEqual> merge_ranks;
  int32_t bos = kNoToken, eos = kNoToken, unk = kNoToken, pad = kNoToken;
  bool add_bos = false, add_eos = false, add_space_prefix = false;
  std::vector<int32_t> eog;
  std::vector<int32_t> specials;
  std::string chat_template;
};

Vocab::Vocab(std::unique_ptr<Data> data) : data_(std::move(data)) {}
Vocab::Vocab(Vocab&&) noexcept = default;
Vocab& Vocab::operator=(Vocab&&) noexcept = default;
Vocab::~Vocab() = default;

Vocab Vocab::from_gguf(const GgufFile& file) {
  VocabSpec spec;
  const auto model = file.get_string("tokenizer.ggml.model");
  if (!model)
    throw TokenizerError(file.path() + ": no tokenizer (key tokenizer.ggml.model is missing)");
  if (*model == "gpt2") {
    spec.kind = VocabKind::Gpt2;
  } else if (*model == "llama") {
    spec.kind = VocabKind::Llama;
  } else {
    throw TokenizerError(file.path() + ": tokenizer.ggml.model '" + *model +
                         "' is not supported (troupe reads 'gpt2' and 'llama' vocabularies)");
  }
  if (!file.find("tokenizer.ggml.tokens"))
    throw TokenizerError(file.path() + ": key tokenizer.ggml.tokens is missing");
  for (std::string_view token : file.get_string_array("tokenizer.ggml.tokens")) spec.tokens.emplace_back(token);
  spec.scores = file.get_f32_array("tokenizer.ggml.scores");
  for (int32_t type : file.get_i32_array("tokenizer.ggml.token_type"))
    spec.types.push_back(type >= 0 && type <= 6 ? static_cast<TokenType>(type) : TokenType::Undefined);
  if (spec.kind == VocabKind::Gpt2) {
    if (!file.find("tokenizer.ggml.merges"))
      throw TokenizerError(file.path() + ": a gpt2 vocabulary needs tokenizer.ggml.merges, which is missing");
    for (std::string_view merge : file.get_string_array("tokenizer.ggml.merges")) spec.merges.emplace_back(merge);
    spec.pre = file.get_string("tokenizer.ggml.pre").value_or("");
  }
  spec.bos_id = read_id(file, "tokenizer.ggml.bos_token_id");
  spec.eos_id = read_id(file, "tokenizer.ggml.eos_token_id");
  spec.unk_id = read_id(file, "tokenizer.ggml.unknown_token_id");
  spec.pad_id = read_id(file, "tokenizer.ggml.padding_token_id");
  spec.eot_id = read_id(file, "tokenizer.ggml.eot_token_id");
  spec.eom_id = read_id(file, "tokenizer.ggml.eom_token_id");
  spec.fim_pre_id = read_id(file, "tokenizer.ggml.fim_pre_token_id");
  if (!spec.fim_pre_id) spec.fim_pre_id = read_id(file, "tokenizer.ggml.prefix_token_id");
  spec.fim_suf_id = read_id(file, "tokenizer.ggml.fim_suf_token_id");
  if (!spec.fim_suf_id) spec.fim_suf_id = read_id(file, "tokenizer.ggml.suffix_token_id");
  spec.fim_mid_id = read_id(file, "tokenizer.ggml.fim_mid_token_id");
  if (!spec.fim_mid_id) spec.fim_mid_id = read_id(file, "tokenizer.ggml.middle_token_id");
  spec.fim_pad_id = read_id(file, "tokenizer.ggml.fim_pad_token_id");
  spec.fim_rep_id = read_id(file, "tokenizer.ggml.fim_rep_token_id");
  spec.fim_sep_id = read_id(file, "tokenizer.ggml.fim_sep_token_id");
  spec.add_bos = file.get_bool("tokenizer.ggml.add_bos_token");
  spec.add_eos = file.get_bool("tokenizer.ggml.add_eos_token");
  spec.add_space_prefix = file.get_bool("tokenizer.ggml.add_space_prefix");
  spec.chat_template = file.get_string("tokenizer.chat_template").value_or("");
  try {
    return from_spec(std::move(spec));
  } catch (const TokenizerError& e) {
    throw TokenizerError(file.path() + ": " + e.what());
  }
}

Vocab Vocab::from_spec(VocabSpec spec) {
  auto d = std::make_unique<Data>();
  const std::size_t n = spec.tokens.size();
  if (n == 0) throw TokenizerError("tokenizer.ggml.tokens is empty");
  if (n > static_cast<std::size_t>(INT32_MAX))
    throw TokenizerError("tokenizer.ggml.tokens has more tokens than a token id can number");
  if (!spec.scores.empty() && spec.scores.size() < n)
    throw TokenizerError("tokenizer.ggml.scores has " + std::to_string(spec.scores.size()) + " entries for " +
                         std::to_string(n) + " tokens");
  if (!spec.types.empty() && spec.types.size() < n)
    throw TokenizerError("tokenizer.ggml.token_type has " + std::to_string(spec.types.size()) + " entries for " +
                         std::to_string(n) + " tokens");
  const auto size = static_cast<int32_t>(n);
  d->kind = spec.kind;

  if (spec.kind == VocabKind::Gpt2) {
    const auto pre = bpe_pretokenizer_settings(spec.pre);
    if (!pre)
      throw TokenizerError("tokenizer.ggml.pre '" + spec.pre + "' is not a pre-tokenizer troupe knows (" +
                           std::string(known_bpe_pretokenizer_names()) + ")");
    d->pre = *pre;
    d->merge_ranks.reserve(spec.merges.size());
    for (std::size_t rank = 0; rank < spec.merges.size(); ++rank) {
      const std::string& merge = spec.merges[rank];
      const std::size_t space = merge.find(' ', 1);
      if (space == std::string::npos) continue;
      d->merge_ranks.emplace(MergeKey(merge.substr(0, space), merge.substr(space + 1)), static_cast<int>(rank));
    }
  }

  d->texts = std::move(spec.tokens);
  d->scores = spec.scores.empty() ? std::vector<float>(n, 0.0f) : std::move(spec.scores);
  d->scores.resize(n);
  d->types = spec.types.empty() ? std::vector<TokenType>(n, TokenType::Normal) : std::move(spec.types);
  d->types.resize(n);
  d->ids.reserve(n);
  for (int32_t id = 0; id < size; ++id) {
    std::string& text = d->texts[id];
    if (text.empty()) text = "[EMPTY_" + std::to_string(id) + "]";
    d->ids.insert_or_assign(text, id);
  }

  auto in_range = [size](int64_t id) { return id >= 0 && id < size; };
  auto pick = [&](int32_t fallback, const std::optional<int64_t>& given) -> int32_t {
    if (given && in_range(*given)) return static_cast<int32_t>(*given);
    return in_range(fallback) ? fallback : kNoToken;
  };
  const bool llama = spec.kind == VocabKind::Llama;
  d->bos = pick(llama ? 1 : 11, spec.bos_id);
  d->eos = pick(llama ? 2 : 11, spec.eos_id);
  d->unk = pick(llama ? 0 : kNoToken, spec.unk_id);
  d->pad = pick(kNoToken, spec.pad_id);
  d->add_space_prefix = spec.add_space_prefix.value_or(llama);
  d->add_bos = spec.add_bos.value_or(llama || d->pre.adds_bos);
  d->add_eos = spec.add_eos.value_or(false);
  if (d->add_bos && d->bos == kNoToken)
    throw TokenizerError("tokenizer.ggml.add_bos_token is true but there is no valid tokenizer.ggml.bos_token_id");
  if (d->add_eos && d->eos == kNoToken)
    throw TokenizerError("tokenizer.ggml.add_eos_token is true but there is no valid tokenizer.ggml.eos_token_id");

  // Tokens llama.cpp recognises by their text, unless the file names them. Like llama.cpp,
  // this looks texts up in the text -> id map, so a text held by several ids means the last.
  auto id_of_text = [&](std::string_view text) -> int32_t {
    const auto it = d->ids.find(text);
    return it == d->ids.end() ? kNoToken : it->second;
  };
  auto detect = [&](const std::optional<int64_t>& given, const auto& texts) -> int32_t {
    if (given && in_range(*given)) return static_cast<int32_t>(*given);
    int32_t found = kNoToken;
    for (std::string_view text : texts) {
      const int32_t id = id_of_text(text);
      if (id != kNoToken && (found == kNoToken || id < found)) found = id;
    }
    if (found != kNoToken) d->types[found] = TokenType::Control;
    return found;
  };
  const int32_t eot = detect(spec.eot_id, kEotTexts);
  const int32_t eom = detect(spec.eom_id, kEomTexts);
  detect(spec.fim_pre_id, kFimPreTexts);
  detect(spec.fim_suf_id, kFimSufTexts);
  detect(spec.fim_mid_id, kFimMidTexts);
  const int32_t fim_pad = detect(spec.fim_pad_id, kFimPadTexts);
  const int32_t fim_rep = detect(spec.fim_rep_id, kFimRepTexts);
  const int32_t fim_sep = detect(spec.fim_sep_id, kFimSepTexts);

  std::vector<int32_t> eog;
  for (int32_t id : {fim_pad, fim_rep, fim_sep, d->eos, eot, eom})
    if (id != kNoToken) eog.push_back(id);
  for (std::string_view text : kEogTexts) {
    const int32_t id = id_of_text(text);
    if (id == kNoToken) continue;
    eog.push_back(id);
    d->types[id] = TokenType::Control;
  }
  for (std::string_view text : kAlwaysRenderedTexts)
    if (const int32_t id = id_of_text(text); id != kNoToken) d->types[id] = TokenType::UserDefined;
  std::sort(eog.begin(), eog.end());
  eog.erase(std::unique(eog.begin(), eog.end()), eog.end());
  // gpt-oss: <|end|> ends a message, not the generation, when <|return|> and <|call|> exist.
  auto eog_text = [&](std::string_view text) {
    return std::find_if(eog.begin(), eog.end(), [&](int32_t id) { return d->texts[id] == text; });
  };
  if (eog_text("<|return|>") != eog.end() && eog_text("<|call|>") != eog.end()) {
    const auto end = eog_text("<|end|>");
    if (end != eog.end()) {
      d->types[*end] = TokenType::UserDefined;
      eog.erase(end);
    }
  }
  d->eog = std::move(eog);

  for (int32_t id = 0; id < size; ++id)
    if (d->types[id] == TokenType::Control || d->types[id] == TokenType::UserDefined ||
        d->types[id] == TokenType::Unknown)
      d->specials.push_back(id);
  std::stable_sort(d->specials.begin(), d->specials.end(),
                   [&](int32_t a, int32_t b) { return d->texts[a].size() > d->texts[b].size(); });
  d->chat_template = std::move(spec.chat_template);
  return Vocab(std::move(d));
}

VocabKind Vocab::kind() const { return data_->kind; }
const BpePreTokenizerSettings& Vocab::pre_tokenizer() const { return data_->pre; }
int32_t Vocab::size() const { return static_cast<int32_t>(data_->texts.size()); }
const std::string& Vocab::text(int32_t id) const { return data_->texts[id]; }
float Vocab::score(int32_t id) const { return data_->scores[id]; }
TokenType Vocab::type(int32_t id) const { return data_->types[id]; }

bool Vocab::is_special(int32_t id) const {
  const TokenType t = data_->types[id];
  return t == TokenType::Control || t == TokenType::UserDefined || t == TokenType::Unknown;
}

bool Vocab::is_eog(int32_t id) const {
  return std::binary_search(data_->eog.begin(), data_->eog.end(), id);
}

std::optional<int32_t> Vocab::find(std::string_view text) const {
  const auto it = data_->ids.find(text);
  if (it == data_->ids.end()) return std::nullopt;
  return it->second;
}

int Vocab::merge_rank(std::string_view left, std::string_view right) const {
  const auto it = data_->merge_ranks.find(MergeView(left, right));
  return it == data_->merge_ranks.end() ? -1 : it->second;
}

int32_t Vocab::bos() const { return data_->bos; }
int32_t Vocab::eos() const { return data_->eos; }
int32_t Vocab::unk() const { return data_->unk; }
int32_t Vocab::pad() const { return data_->pad; }
bool Vocab::add_bos() const { return data_->add_bos; }
bool Vocab::add_eos() const { return data_->add_eos; }
bool Vocab::add_space_prefix() const { return data_->add_space_prefix; }
const std::vector<int32_t>& Vocab::eog_ids() const { return data_->eog; }
const std::vector<int32_t>& Vocab::special_ids_by_length() const { return data_->specials; }
const std::string& Vocab::chat_template() const { return data_->chat_template; }

}  // namespace troupe
