#include "model/chat_template.hpp"

#include <algorithm>
#include <utility>
#include <vector>

#include "model/unicode.hpp"

namespace troupe {
namespace {

constexpr std::string_view kAlternateError = "Conversation roles must alternate user/assistant/user/assistant/...";

bool contains(std::string_view text, std::string_view marker) { return text.find(marker) != std::string_view::npos; }

template <typename... Parts>
void append(std::string& out, const Parts&... parts) {
  (out.append(std::string_view(parts)), ...);
}

// Python's str.isspace: White_Space plus the information separators U+001C..U+001F.
bool is_python_space(char32_t c) { return is_white_space(c) || (c >= 0x1C && c <= 0x1F); }

// The codepoint at `pos` and its length in bytes; an ill-formed byte counts as one
// non-space character.
std::pair<char32_t, std::size_t> codepoint_at(std::string_view text, std::size_t pos) {
  const std::size_t len = std::min(utf8_lead_length(static_cast<uint8_t>(text[pos])), text.size() - pos);
  const std::vector<char32_t> cpts = decode_utf8_lenient(text.substr(pos, len));
  return cpts.size() == 1 ? std::pair{cpts[0], len} : std::pair{kReplacementChar, std::size_t{1}};
}

// Jinja's trim and Python's str.strip() without arguments.
std::string_view python_strip(std::string_view text) {
  std::size_t begin = std::string_view::npos, end = 0;
  for (std::size_t pos = 0; pos < text.size();) {
    const auto [cpt, len] = codepoint_at(text, pos);
    if (!is_python_space(cpt)) {
      if (begin == std::string_view::npos) begin = pos;
      end = pos + len;
    }
    pos += len;
  }
  return begin == std::string_view::npos ? std::string_view() : text.substr(begin, end - begin);
}

// A Jinja string literal's escapes (\n \t \\ \' \").
std::string unescape_jinja(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\' || i + 1 == text.size()) {
      out += text[i];
      continue;
    }
    const char c = text[++i];
    out += c == 'n' ? '\n' : c == 't' ? '\t' : c;
  }
  return out;
}

// The text of a literal "<|im_start|>system\n...<|im_end|>" in a ChatML template: the system
// message it inserts when the conversation brings none. "" when there is no such literal.
std::string chatml_default_system(std::string_view tmpl) {
  constexpr std::string_view kOpen = "<|im_start|>system";
  constexpr std::string_view kClose = "<|im_end|>";
  for (std::size_t at = tmpl.find(kOpen); at != std::string_view::npos; at = tmpl.find(kOpen, at + 1)) {
    std::size_t begin = at + kOpen.size();
    if (tmpl.substr(begin, 1) == "\n")
      begin += 1;
    else if (tmpl.substr(begin, 2) == "\\n")
      begin += 2;
    else
      continue;
    const std::size_t end = tmpl.find(kClose, begin);
    if (end == std::string_view::npos) continue;
    const std::string_view body = tmpl.substr(begin, end - begin);
    if (body.empty() || body.find_first_of("'\"{}") != std::string_view::npos) continue;
    return unescape_jinja(body);
  }
  return {};
}

}  // namespace

ChatTemplate::ChatTemplate(Family family, const Vocab& vocab) : family_(family) {
  if (vocab.bos() != kNoToken) bos_ = vocab.text(vocab.bos());
  if (vocab.eos() != kNoToken) eos_ = vocab.text(vocab.eos());
}

ChatTemplate ChatTemplate::detect(std::string_view tmpl, const Vocab& vocab) {
  Family family = Family::Plain;
  if (contains(tmpl, "<|im_start|>"))
    family = Family::Chatml;
  else if (contains(tmpl, "<|start_header_id|>"))
    family = Family::Llama3;
  else if (contains(tmpl, "<start_of_turn>"))
    family = Family::Gemma;
  else if (contains(tmpl, "[INST]"))
    family = contains(tmpl, "<<SYS>>") ? Family::Llama2 : Family::Mistral;
  else if (contains(tmpl, "<|user|>") && !contains(tmpl, "<|end|>"))
    family = Family::Zephyr;

  ChatTemplate result(family, vocab);
  result.fallback_ = family == Family::Plain;
  if (family == Family::Chatml) result.default_system_ = chatml_default_system(tmpl);
  if (family == Family::Llama3) result.generation_prompt_always_ = !contains(tmpl, "add_generation_prompt");
  if ((family == Family::Llama3 || family == Family::Gemma || family == Family::Mistral) &&
      !contains(tmpl, "bos_token"))
    result.bos_.clear();
  return result;
}

std::string_view ChatTemplate::known_names() { return "chatml, llama3, gemma, llama2, mistral, zephyr, plain"; }

ChatTemplate ChatTemplate::named(std::string_view name, const Vocab& vocab) {
  for (Family family : {Family::Chatml, Family::Llama3, Family::Gemma, Family::Llama2, Family::Mistral,
                        Family::Zephyr, Family::Plain}) {
    ChatTemplate candidate(family, vocab);
    if (candidate.name() == name) return candidate;
  }
  throw ChatTemplateError("unknown chat template '" + std::string(name) + "' (known: " +
                          std::string(known_names()) + ")");
}

std::string_view ChatTemplate::name() const {
  switch (family_) {
    case Family::Chatml: return "chatml";
    case Family::Llama3: return "llama3";
    case Family::Gemma: return "gemma";
    case Family::Llama2: return "llama2";
    case Family::Mistral: return "mistral";
    case Family::Zephyr: return "zephyr";
    case Family::Plain: return "plain";
  }
  return "plain";
}

std::string ChatTemplate::apply(std::span<const ChatMessage> messages, bool add_generation_prompt) const {
  if (messages.empty()) throw ChatTemplateError("a chat needs at least one message");
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const std::string& role = messages[i].role;
    if (role != "system" && role != "user" && role != "assistant")
      throw ChatTemplateError("message " + std::to_string(i) + " has role '" + role +
                              "'; the roles are system, user and assistant");
  }
  auto check_alternation = [](std::span<const ChatMessage> turns) {
    for (std::size_t i = 0; i < turns.size(); ++i)
      if ((turns[i].role == "user") != (i % 2 == 0)) throw ChatTemplateError(std::string(kAlternateError));
  };

  std::string out;
  switch (family_) {
    case Family::Chatml:
      if (!default_system_.empty() && messages[0].role != "system")
        append(out, "<|im_start|>system\n", default_system_, "<|im_end|>\n");
      for (const ChatMessage& m : messages) append(out, "<|im_start|>", m.role, "\n", m.content, "<|im_end|>\n");
      if (add_generation_prompt) out += "<|im_start|>assistant\n";
      break;

    case Family::Llama3:
      out += bos_;
      for (const ChatMessage& m : messages)
        append(out, "<|start_header_id|>", m.role, "<|end_header_id|>\n\n", python_strip(m.content), "<|eot_id|>");
      if (add_generation_prompt || generation_prompt_always_) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;

    case Family::Gemma:
      if (messages[0].role == "system") throw ChatTemplateError("System role not supported");
      check_alternation(messages);
      out += bos_;
      for (const ChatMessage& m : messages)
        append(out, "<start_of_turn>", m.role == "assistant" ? std::string_view("model") : std::string_view(m.role),
               "\n", python_strip(m.content), "<end_of_turn>\n");
      if (add_generation_prompt) out += "<start_of_turn>model\n";
      break;

    case Family::Llama2: {
      const bool has_system = messages[0].role == "system";
      const std::span<const ChatMessage> turns = has_system ? messages.subspan(1) : messages;
      check_alternation(turns);
      for (std::size_t i = 0; i < turns.size(); ++i) {
        std::string content;
        if (i == 0 && has_system) append(content, "<<SYS>>\n", messages[0].content, "\n<</SYS>>\n\n");
        content += turns[i].content;
        if (turns[i].role == "user")
          append(out, bos_, "[INST] ", python_strip(content), " [/INST]");
        else if (turns[i].role == "assistant")
          append(out, " ", python_strip(content), " ", eos_);
      }
      break;
    }

    case Family::Mistral:
      check_alternation(messages);
      out += bos_;
      for (const ChatMessage& m : messages) {
        if (m.role == "user")
          append(out, "[INST] ", m.content, " [/INST]");
        else if (m.role == "assistant")
          append(out, m.content, eos_);
        else
          throw ChatTemplateError("Only user and assistant roles are supported!");
      }
      break;

    case Family::Zephyr:
      for (const ChatMessage& m : messages) append(out, "<|", m.role, "|>\n", m.content, eos_, "\n");
      if (add_generation_prompt) out += "<|assistant|>\n";
      break;

    case Family::Plain:
      for (const ChatMessage& m : messages) append(out, m.role, ": ", m.content, "\n");
      if (add_generation_prompt) out += "assistant:";
      break;
  }
  return out;
}

}  // namespace troupe
