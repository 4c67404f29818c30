#include "daemon/openai_response.hpp"

#include <nlohmann/json.hpp>

namespace troupe {
namespace {

using json = nlohmann::json;

std::string number_text(double value) { return json(value).dump(); }

std::string finish_reason(const EndEvent& end) {
  return end.finish == FinishReason::Stop ? "\"stop\"" : "\"length\"";
}

std::string bytes_array(std::string_view bytes) {
  std::string out = "[";
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(static_cast<unsigned char>(bytes[i]));
  }
  return out + "]";
}

}  // namespace

std::string json_string(std::string_view bytes) {
  return json(std::string(bytes)).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string usage_json(const Usage& usage) {
  return "{\"prompt_tokens\":" + std::to_string(usage.prompt_tokens) +
         ",\"completion_tokens\":" + std::to_string(usage.completion_tokens) +
         ",\"total_tokens\":" + std::to_string(usage.prompt_tokens + usage.completion_tokens) +
         ",\"prompt_tokens_details\":{\"cached_tokens\":" + std::to_string(usage.cached_tokens) +
         "}}";
}

CompletionFormatter::CompletionFormatter(Endpoint endpoint, std::string id, int64_t created,
                                         std::string model_name,
                                         std::shared_ptr<const LoadedModel> model, bool logprobs)
    : endpoint_(endpoint),
      id_(std::move(id)),
      created_(created),
      model_name_(std::move(model_name)),
      model_(std::move(model)),
      logprobs_(logprobs) {}

std::string CompletionFormatter::chunk_prefix() const {
  const bool chat = endpoint_ == Endpoint::ChatCompletions;
  return "{\"id\":" + json_string(id_) + ",\"object\":" +
         (chat ? "\"chat.completion.chunk\"" : "\"text_completion\"") +
         ",\"created\":" + std::to_string(created_) + ",\"model\":" + json_string(model_name_);
}

void CompletionFormatter::append_logprobs(std::string& out, const std::vector<TokenChoice>& tokens,
                                          std::size_t& text_offset) const {
  const Tokenizer& tokenizer = model_->tokenizer();
  auto piece = [&](int32_t id) -> std::string_view {
    return tokenizer.vocab().contains(id) ? tokenizer.piece(id) : std::string_view{};
  };
  if (endpoint_ == Endpoint::ChatCompletions) {
    out += "{\"content\":[";
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      const TokenChoice& token = tokens[i];
      if (i) out += ',';
      out += "{\"token\":" + json_string(token.text) + ",\"logprob\":" +
             number_text(token.logprob) + ",\"bytes\":" + bytes_array(token.text) +
             ",\"top_logprobs\":[";
      for (std::size_t k = 0; k < token.top.size(); ++k) {
        if (k) out += ',';
        const std::string_view text = piece(token.top[k].token);
        out += "{\"token\":" + json_string(text) + ",\"logprob\":" +
               number_text(token.top[k].logprob) + ",\"bytes\":" + bytes_array(text) + "}";
      }
      out += "]}";
    }
    out += "]}";
    return;
  }
  std::string texts, logprobs, tops, offsets;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const TokenChoice& token = tokens[i];
    const char* comma = i ? "," : "";
    texts += comma + json_string(token.text);
    logprobs += comma + number_text(token.logprob);
    offsets += comma + std::to_string(text_offset);
    text_offset += token.text.size();
    tops += comma;
    tops += '{';
    for (std::size_t k = 0; k < token.top.size(); ++k) {
      if (k) tops += ',';
      tops += json_string(piece(token.top[k].token)) + ":" + number_text(token.top[k].logprob);
    }
    tops += '}';
  }
  out += "{\"tokens\":[" + texts + "],\"token_logprobs\":[" + logprobs + "],\"top_logprobs\":[" +
         tops + "],\"text_offset\":[" + offsets + "]}";
}

std::string CompletionFormatter::stream_chunk(const TextChunk& chunk) {
  std::string out;
  const bool chat = endpoint_ == Endpoint::ChatCompletions;
  if (chat && !role_sent_) {
    role_sent_ = true;
    out += "data: " + chunk_prefix() +
           ",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
           "\"logprobs\":null,\"finish_reason\":null}]}\n\n";
  }
  if (chunk.text.empty() && !(logprobs_ && !chunk.tokens.empty())) return out;
  out += "data: " + chunk_prefix() + ",\"choices\":[{\"index\":0,";
  out += chat ? "\"delta\":{\"content\":" + json_string(chunk.text) + "}"
              : "\"text\":" + json_string(chunk.text);
  out += ",\"logprobs\":";
  if (logprobs_)
    append_logprobs(out, chunk.tokens, text_offset_);
  else
    out += "null";
  out += ",\"finish_reason\":null}]}\n\n";
  return out;
}

std::string CompletionFormatter::stream_end(const EndEvent& end, bool include_usage) {
  std::string out;
  const bool chat = endpoint_ == Endpoint::ChatCompletions;
  if (chat && !role_sent_) out += stream_chunk(TextChunk{});
  out += "data: " + chunk_prefix() + ",\"choices\":[{\"index\":0,";
  out += chat ? "\"delta\":{}" : "\"text\":\"\"";
  out += ",\"logprobs\":null,\"finish_reason\":" + finish_reason(end) + "}]}\n\n";
  if (include_usage)
    out += "data: " + chunk_prefix() + ",\"choices\":[],\"usage\":" + usage_json(end.usage) +
           "}\n\n";
  out += "data: [DONE]\n\n";
  return out;
}

std::string CompletionFormatter::stream_error(const ApiError& error) {
  return "data: " + error_body(error) + "\n\ndata: [DONE]\n\n";
}

void CompletionFormatter::add(const TextChunk& chunk) {
  text_ += chunk.text;
  if (logprobs_) tokens_.insert(tokens_.end(), chunk.tokens.begin(), chunk.tokens.end());
}

std::string CompletionFormatter::response(const EndEvent& end) const {
  const bool chat = endpoint_ == Endpoint::ChatCompletions;
  std::string out = "{\"id\":" + json_string(id_) + ",\"object\":" +
                    (chat ? "\"chat.completion\"" : "\"text_completion\"") +
                    ",\"created\":" + std::to_string(created_) +
                    ",\"model\":" + json_string(model_name_) + ",\"choices\":[{\"index\":0,";
  out += chat ? "\"message\":{\"role\":\"assistant\",\"content\":" + json_string(text_) + "}"
              : "\"text\":" + json_string(text_);
  out += ",\"logprobs\":";
  if (logprobs_) {
    std::size_t offset = 0;
    append_logprobs(out, tokens_, offset);
  } else {
    out += "null";
  }
  out += ",\"finish_reason\":" + finish_reason(end) + "}],\"usage\":" + usage_json(end.usage) +
         "}";
  return out;
}

}  // namespace troupe
