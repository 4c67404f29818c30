#include "actors/request_flow.hpp"

#include <algorithm>
#include <exception>
#include <string_view>

#include "model/chat_prompt.hpp"
#include "model/tokenizer_error.hpp"

namespace troupe {

struct RequestFlow::State {
  State(std::shared_ptr<const LoadedModel> loaded)
      : model(std::move(loaded)), detokenizer(model->tokenizer(), DecodeOptions{false, false}) {}

  std::shared_ptr<const LoadedModel> model;
  Detokenizer detokenizer;
  std::vector<int32_t> prompt;
  int32_t max_new_tokens = 0;
  SamplingParams sampling;
  bool ignore_eos = false;
  std::vector<std::string> stop;
  EngineClock::time_point arrival;
  EngineClock::time_point deadline = EngineClock::time_point::max();

  std::string held_text;               // final bytes not yet sent (a stop string may start there)
  std::vector<TokenChoice> held_tokens;
  int32_t generated = 0;
  bool done = false;
  bool finished = false;
  bool stop_string_hit = false;        // the bytes after the match are dropped
  FinishReason reason = FinishReason::Length;
  int32_t cached_tokens = 0;
  Timings timings;

  double since_arrival(EngineClock::time_point at) const {
    return std::chrono::duration<double>(at - arrival).count();
  }
};

namespace {

EndEvent invalid(std::string param, std::string message) {
  EndEvent end;
  end.kind = EndKind::Error;
  end.error = ErrorKind::InvalidRequest;
  end.param = std::move(param);
  end.message = std::move(message);
  return end;
}

// SamplingParams::validate names the field first ("top_p must be ...").
std::string sampling_field(std::string_view message) {
  return std::string(message.substr(0, message.find(' ')));
}

// Where the first stop string starts in text, or npos.
std::size_t first_stop(std::string_view text, const std::vector<std::string>& stops) {
  std::size_t first = std::string_view::npos;
  for (const std::string& stop : stops) first = std::min(first, text.find(stop));
  return first;
}

// Length of the longest suffix of text that is a proper prefix of a stop string: bytes that
// must wait for the next token before they can be sent.
std::size_t stop_prefix_suffix(std::string_view text, const std::vector<std::string>& stops) {
  std::size_t longest = 0;
  for (const std::string& stop : stops) {
    const std::size_t most = std::min(text.size(), stop.size() - 1);
    for (std::size_t n = most; n > longest; --n)
      if (text.substr(text.size() - n) == std::string_view(stop).substr(0, n)) {
        longest = n;
        break;
      }
  }
  return longest;
}

}  // namespace

std::variant<std::unique_ptr<RequestFlow>, EndEvent> RequestFlow::start(
    const GenerateRequest& request, std::shared_ptr<const LoadedModel> model,
    const ChatTemplate& chat_template, int32_t context_tokens) {
  const Tokenizer& tokenizer = model->tokenizer();
  std::vector<int32_t> prompt;
  if (!request.prompt_tokens.empty()) {
    const int32_t n_vocab = tokenizer.vocab().size();
    for (int32_t token : request.prompt_tokens)
      if (token < 0 || token >= n_vocab)
        return invalid("prompt", "prompt token " + std::to_string(token) +
                                     " is outside the vocabulary (ids 0 to " +
                                     std::to_string(n_vocab - 1) + ")");
    prompt = request.prompt_tokens;
  } else if (request.chat) {
    if (request.messages.empty())
      return invalid("messages", "the conversation has no messages; send at least one");
    try {
      prompt = encode_chat(tokenizer, chat_template, request.messages);
    } catch (const ChatTemplateError& error) {
      return invalid("messages", error.what());
    }
  } else {
    if (request.prompt.empty())
      return invalid("prompt", "the prompt is empty; send some text or prompt tokens");
    prompt = tokenizer.encode(request.prompt, true, true);
  }
  if (prompt.empty())
    return invalid("prompt", "the prompt gives no tokens; send some text or prompt tokens");
  if (request.max_tokens < 1)
    return invalid("max_tokens", "max_tokens must be at least 1, got " +
                                     std::to_string(request.max_tokens));
  for (const std::string& stop : request.stop)
    if (stop.empty()) return invalid("stop", "a stop string is empty; remove it");
  try {
    request.sampling.validate();
  } catch (const std::invalid_argument& error) {
    return invalid(sampling_field(error.what()), error.what());
  }
  if (int64_t(prompt.size()) >= context_tokens)
    return invalid("prompt", "the prompt has " + std::to_string(prompt.size()) +
                                 " tokens but the context holds " +
                                 std::to_string(context_tokens) +
                                 " in all, generation included; shorten the prompt");

  std::unique_ptr<RequestFlow> flow(new RequestFlow());
  flow->state_ = std::make_unique<State>(std::move(model));
  State& state = *flow->state_;
  state.max_new_tokens =
      std::min<int32_t>(request.max_tokens, context_tokens - int32_t(prompt.size()));
  state.prompt = std::move(prompt);
  state.sampling = request.sampling;
  state.ignore_eos = request.ignore_eos;
  state.stop = request.stop;
  state.arrival = request.arrival;
  if (request.timeout) {
    const auto room = EngineClock::time_point::max() - request.arrival;
    state.deadline = *request.timeout >= room ? EngineClock::time_point::max()
                                              : request.arrival + *request.timeout;
  }
  return flow;
}

RequestFlow::~RequestFlow() = default;

const std::vector<int32_t>& RequestFlow::prompt() const { return state_->prompt; }
int32_t RequestFlow::max_new_tokens() const { return state_->max_new_tokens; }
const SamplingParams& RequestFlow::sampling() const { return state_->sampling; }
bool RequestFlow::ignore_eos() const { return state_->ignore_eos; }
EngineClock::time_point RequestFlow::deadline() const { return state_->deadline; }

void RequestFlow::on_queued(EngineClock::time_point admitted, int32_t cached_tokens) {
  State& state = *state_;
  if (state.timings.queued < 0) state.timings.queued = state.since_arrival(admitted);
  state.cached_tokens = cached_tokens;
}

RequestFlow::Step RequestFlow::on_token(const SampledOutput& token) {
  State& state = *state_;
  if (state.done) return {};
  const double at = state.since_arrival(token.at);
  if (state.timings.first_token < 0) state.timings.first_token = at;
  state.timings.token_times.push_back(at);
  ++state.generated;

  Step step;
  const Tokenizer& tokenizer = state.model->tokenizer();
  if (!state.ignore_eos && tokenizer.vocab().is_eog(token.token)) {
    state.done = true;
    state.reason = FinishReason::Stop;
    step.done = true;  // the held text goes out with finish()
    return step;
  }

  TokenChoice choice{.token = token.token, .logprob = token.logprob, .top = token.top, .text = {}};
  bool drop_space = false;
  tokenizer.append_text(token.token, false, drop_space, choice.text);
  state.held_text += state.detokenizer.push(token.token);
  state.held_tokens.push_back(std::move(choice));

  std::size_t send = state.held_text.size();
  if (!state.stop.empty()) {
    const std::size_t stop_at = first_stop(state.held_text, state.stop);
    if (stop_at != std::string::npos) {
      state.held_text.resize(stop_at);
      send = stop_at;
      state.done = true;
      state.stop_string_hit = true;
      state.reason = FinishReason::Stop;
    } else {
      send -= stop_prefix_suffix(state.held_text, state.stop);
    }
  }
  if (!state.done && state.generated >= state.max_new_tokens) state.done = true;
  if (state.done) {  // finish() sends what is held (a stop string already cut off)
    step.done = true;
    return step;
  }

  if (send > 0) {
    TextChunk chunk;
    chunk.text = state.held_text.substr(0, send);
    state.held_text.erase(0, send);
    chunk.tokens = std::move(state.held_tokens);
    state.held_tokens.clear();
    step.chunk = std::move(chunk);
  }
  return step;
}

std::pair<std::optional<TextChunk>, EndEvent> RequestFlow::finish(EndKind kind,
                                                                   EngineClock::time_point now,
                                                                   ErrorKind error,
                                                                   std::string message) {
  State& state = *state_;
  state.done = true;
  std::optional<TextChunk> last;
  if (kind == EndKind::Finished && !state.finished) {
    if (!state.stop_string_hit) {
      state.held_text += state.detokenizer.flush();
      const std::size_t stop_at = first_stop(state.held_text, state.stop);
      if (stop_at != std::string::npos) {
        state.held_text.resize(stop_at);
        state.reason = FinishReason::Stop;
      }
    }
    if (!state.held_text.empty() || !state.held_tokens.empty()) {
      last.emplace();
      last->text = std::move(state.held_text);
      last->tokens = std::move(state.held_tokens);
    }
  }
  state.held_text.clear();
  state.held_tokens.clear();
  state.finished = true;

  EndEvent end;
  end.kind = kind;
  end.finish = state.reason;
  if (kind == EndKind::Error) {
    end.error = error == ErrorKind::None ? ErrorKind::Internal : error;
    end.message = std::move(message);
  } else if (kind == EndKind::Cancelled) {
    end.error = error;
    end.message = std::move(message);
  }
  end.usage.prompt_tokens = int32_t(state.prompt.size());
  end.usage.completion_tokens = state.generated;
  end.usage.cached_tokens = state.cached_tokens;
  state.timings.finished = state.since_arrival(now);
  end.timings = std::move(state.timings);
  end.model_generation = state.model->generation();
  return {std::move(last), std::move(end)};
}

}  // namespace troupe
