// RequestFlow: the text side of one request, the same in both runtimes (the RequestActor of
// `actors`, the request path of `threads`): builds the prompt tokens, turns sampled tokens
// into streamed chunks (incremental detokenization: whole UTF-8 characters only; stop
// strings held back until they can no longer match, cut at the first match), decides when
// the request is done (EOS unless ignore_eos, a stop string, max_tokens) and builds the one
// terminal event with usage and timings.
// Thread safety: none; one RequestFlow per request, used by one thread (or actor) at a time.
// Borrows the LoadedModel (tokenizer, vocabulary), which must outlive it: keep its handle.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "actors/engine.hpp"
#include "model/detokenizer.hpp"
#include "model/model_state.hpp"

namespace troupe {

// One sampled token as a worker reports it.
struct SampledOutput {
  uint64_t seq = 0;
  int32_t token = 0;
  float logprob = 0.0f;
  std::vector<TokenLogprob> top;
  EngineClock::time_point at;   // when it was sampled
};

class RequestFlow {
 public:
  // Checks and tokenizes the request against the model and context: on a client's mistake
  // returns the terminal event (InvalidRequest naming `param`: prompt / messages / max_tokens
  // / stop / sampling fields) instead. max_new_tokens() = min(max_tokens, context - prompt).
  static std::variant<std::unique_ptr<RequestFlow>, EndEvent> start(
      const GenerateRequest& request, std::shared_ptr<const LoadedModel> model,
      const ChatTemplate& chat_template, int32_t context_tokens);
  ~RequestFlow();

  const std::vector<int32_t>& prompt() const;
  int32_t max_new_tokens() const;
  const SamplingParams& sampling() const;
  bool ignore_eos() const;
  EngineClock::time_point deadline() const;

  // Facts from the runtime, for usage and timings.
  void on_queued(EngineClock::time_point admitted, int32_t cached_tokens);

  struct Step {
    std::optional<TextChunk> chunk;   // text that became final (may be absent)
    bool done = false;                // the request is finished: send finish() next
  };
  // Feeds one sampled token (tokens after done are ignored and return {}).
  Step on_token(const SampledOutput& token);

  // The last chunk (text still held back, when finishing by length or EOS) and the terminal
  // event. kind Finished uses the reason found by on_token (or Length); Cancelled / Error
  // take error and message. Call once.
  std::pair<std::optional<TextChunk>, EndEvent> finish(EndKind kind, EngineClock::time_point now,
                                                       ErrorKind error = ErrorKind::None,
                                                       std::string message = {});
 private:
  RequestFlow() = default;
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace troupe
