// CompletionFormatter: the OpenAI response bodies of one completion or chat completion, from
// the engine's chunks and terminal event: SSE events while streaming (`data: {chunk}\n\n` ...
// `data: [DONE]\n\n`; chat's first event carries the role, the last chunk the finish_reason,
// an optional usage chunk before [DONE]) or one JSON body when not streaming. Token text that
// is not valid UTF-8 (part of a character) is written with U+FFFD in JSON strings; logprob
// entries of chat also carry the exact bytes.
// Thread safety: none; one formatter per request. Keeps the model handle it is given.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "actors/engine.hpp"
#include "daemon/api_error.hpp"
#include "daemon/openai_request.hpp"

namespace troupe {

// A JSON string literal (quotes included) for any bytes.
std::string json_string(std::string_view bytes);

class CompletionFormatter {
 public:
  // id: "cmpl-..." or "chatcmpl-..."; created: Unix seconds; model: for top-logprob pieces.
  CompletionFormatter(Endpoint endpoint, std::string id, int64_t created, std::string model_name,
                      std::shared_ptr<const LoadedModel> model, bool logprobs);

  // Streaming: the events of one chunk (chat: the role event first, once).
  std::string stream_chunk(const TextChunk& chunk);
  // Streaming: the finishing chunk (finish_reason), the usage chunk when asked, [DONE].
  std::string stream_end(const EndEvent& end, bool include_usage);
  // Streaming: an error after the stream began, then [DONE].
  static std::string stream_error(const ApiError& error);

  // Non-streaming: collects the chunks, then the whole response body.
  void add(const TextChunk& chunk);
  std::string response(const EndEvent& end) const;

 private:
  std::string chunk_prefix() const;
  void append_logprobs(std::string& out, const std::vector<TokenChoice>& tokens,
                       std::size_t& text_offset) const;

  Endpoint endpoint_;
  std::string id_;
  int64_t created_;
  std::string model_name_;
  std::shared_ptr<const LoadedModel> model_;
  bool logprobs_;
  bool role_sent_ = false;
  std::size_t text_offset_ = 0;
  std::string text_;                    // non-streaming
  std::vector<TokenChoice> tokens_;     // non-streaming, with logprobs
};

// {"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details"}
std::string usage_json(const Usage& usage);

}  // namespace troupe
