// Parsing of the OpenAI-style request bodies into engine requests. Every client mistake
// (malformed JSON, a wrong type, a value out of range, an unknown model, a bad role, missing
// content, a prompt that cannot fit the context) throws ApiError 400 naming the field, e.g.
// param "messages[2].content". Unknown fields are ignored, as OpenAI's clients send extras.
// A prompt is refused by its byte length, before tokenizing, when even at the longest token
// it would need more tokens than the context holds.
// Pure functions; safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "actors/engine.hpp"
#include "daemon/api_error.hpp"

namespace troupe {

enum class Endpoint : uint8_t { Completions, ChatCompletions };

// What a request is checked against: the served model's name and context.
struct ModelFacts {
  std::string served_name;
  int32_t context_tokens = 0;
  std::size_t max_token_bytes = 1;   // the most bytes one vocabulary token stands for
};

// The facts of a loaded model (max_token_bytes scans the vocabulary once).
ModelFacts model_facts(const LoadedModel& model, std::string served_name, int32_t context_tokens);

struct CompletionRequest {
  Endpoint endpoint = Endpoint::Completions;
  GenerateRequest generate;
  bool stream = false;
  bool include_usage = false;   // stream_options.include_usage
  bool logprobs = false;        // token logprobs asked for (generate.sampling.n_logprobs: top)
};

inline constexpr int32_t kDefaultCompletionTokens = 16;

CompletionRequest parse_completion_request(std::string_view body, Endpoint endpoint,
                                           const ModelFacts& model);

// POST /tokenize: {"prompt": "..."} or {"messages": [...]}, optional "add_special_tokens".
struct TokenizeRequest {
  std::string prompt;
  std::vector<ChatMessage> messages;
  bool chat = false;
  bool add_special_tokens = true;
};
TokenizeRequest parse_tokenize_request(std::string_view body);

// POST /detokenize: {"tokens": [ids]}; ids are checked against vocab_size.
std::vector<int32_t> parse_detokenize_request(std::string_view body, int32_t vocab_size);

// POST /admin/reload: {"model": "PATH"} or an empty body (the current path again).
std::string parse_reload_request(std::string_view body);

}  // namespace troupe
