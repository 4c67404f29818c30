#include "daemon/openai_request.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include <nlohmann/json.hpp>

namespace troupe {
namespace {

using json = nlohmann::json;

std::string type_name(const json& value) {
  if (value.is_number_integer()) return "an integer";
  if (value.is_number()) return "a number";
  if (value.is_string()) return "a string";
  if (value.is_boolean()) return "a boolean";
  if (value.is_array()) return "an array";
  if (value.is_object()) return "an object";
  return "null";
}

[[noreturn]] void wrong_type(const std::string& field, const char* expected, const json& value) {
  throw invalid_request("'" + field + "' must be " + expected + ", got " + type_name(value),
                        field);
}

json parse_body(std::string_view body) {
  json parsed;
  try {
    parsed = json::parse(body.begin(), body.end());
  } catch (const json::parse_error& error) {
    throw invalid_request(std::string("the request body is not valid JSON: ") + error.what());
  }
  if (!parsed.is_object())
    throw invalid_request("the request body must be a JSON object, got " + type_name(parsed));
  return parsed;
}

// The field, or nullptr when absent or null (OpenAI's clients send null for "not set").
const json* field(const json& object, const char* name) {
  const auto found = object.find(name);
  if (found == object.end() || found->is_null()) return nullptr;
  return &*found;
}

std::optional<int64_t> get_int(const json& object, const char* name, int64_t min, int64_t max) {
  const json* value = field(object, name);
  if (!value) return std::nullopt;
  if (!value->is_number_integer()) wrong_type(name, "an integer", *value);
  int64_t number = 0;
  if (value->is_number_unsigned()) {
    const uint64_t unsigned_number = value->get<uint64_t>();
    number = unsigned_number > uint64_t(std::numeric_limits<int64_t>::max())
                 ? std::numeric_limits<int64_t>::max()
                 : int64_t(unsigned_number);
  } else {
    number = value->get<int64_t>();
  }
  if (number < min || number > max)
    throw invalid_request("'" + std::string(name) + "' must be in [" + std::to_string(min) + ", " +
                              std::to_string(max) + "], got " + std::to_string(number),
                          name);
  return number;
}

std::optional<double> get_number(const json& object, const char* name, double min, double max,
                                 bool min_exclusive = false) {
  const json* value = field(object, name);
  if (!value) return std::nullopt;
  if (!value->is_number()) wrong_type(name, "a number", *value);
  const double number = value->get<double>();
  const bool low = min_exclusive ? !(number > min) : !(number >= min);
  if (low || !(number <= max)) {
    json shown = number;
    throw invalid_request("'" + std::string(name) + "' must be in " + (min_exclusive ? "(" : "[") +
                              json(min).dump() + ", " + json(max).dump() + "], got " +
                              shown.dump(),
                          name);
  }
  return number;
}

std::optional<bool> get_bool(const json& object, const char* name) {
  const json* value = field(object, name);
  if (!value) return std::nullopt;
  if (!value->is_boolean()) wrong_type(name, "a boolean", *value);
  return value->get<bool>();
}

std::optional<std::string> get_string(const json& object, const char* name) {
  const json* value = field(object, name);
  if (!value) return std::nullopt;
  if (!value->is_string()) wrong_type(name, "a string", *value);
  return value->get<std::string>();
}

void refuse_if(bool refused, const char* param, const std::string& message) {
  if (refused) throw invalid_request(message, param, "unsupported_parameter");
}

std::vector<int32_t> token_list(const json& array, const std::string& name) {
  std::vector<int32_t> tokens;
  tokens.reserve(array.size());
  for (std::size_t i = 0; i < array.size(); ++i) {
    const json& element = array[i];
    if (!element.is_number_integer() || element.get<int64_t>() < 0 ||
        element.get<int64_t>() > std::numeric_limits<int32_t>::max())
      throw invalid_request("'" + name + "[" + std::to_string(i) +
                                "]' must be a token id (an integer >= 0)",
                            name);
    tokens.push_back(element.get<int32_t>());
  }
  return tokens;
}

void read_prompt(const json& body, GenerateRequest& request) {
  const json* prompt = field(body, "prompt");
  if (!prompt) throw invalid_request("'prompt' is required", "prompt");
  if (prompt->is_string()) {
    request.prompt = prompt->get<std::string>();
    return;
  }
  if (!prompt->is_array())
    wrong_type("prompt", "a string, an array of token ids or an array of one string", *prompt);
  if (prompt->empty()) throw invalid_request("'prompt' must not be an empty array", "prompt");
  if ((*prompt)[0].is_number()) {
    request.prompt_tokens = token_list(*prompt, "prompt");
    return;
  }
  if (prompt->size() > 1)
    throw invalid_request("several prompts in one request are not supported; send one request "
                          "per prompt",
                          "prompt", "unsupported_parameter");
  const json& only = (*prompt)[0];
  if (only.is_string()) {
    request.prompt = only.get<std::string>();
  } else if (only.is_array()) {
    if (only.empty()) throw invalid_request("'prompt[0]' must not be empty", "prompt");
    request.prompt_tokens = token_list(only, "prompt[0]");
  } else {
    wrong_type("prompt[0]", "a string or an array of token ids", only);
  }
}

std::string message_content(const json& content, const std::string& name) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) wrong_type(name, "a string or an array of text parts", content);
  std::string text;
  for (std::size_t i = 0; i < content.size(); ++i) {
    const std::string part_name = name + "[" + std::to_string(i) + "]";
    const json& part = content[i];
    if (!part.is_object()) wrong_type(part_name, "an object", part);
    const std::optional<std::string> type = get_string(part, "type");
    if (type != "text")
      throw invalid_request("'" + part_name + ".type' must be \"text\" (only text is supported)",
                            part_name + ".type");
    const json* part_text = field(part, "text");
    if (!part_text || !part_text->is_string())
      throw invalid_request("'" + part_name + ".text' must be a string", part_name + ".text");
    text += part_text->get<std::string>();
  }
  return text;
}

std::vector<ChatMessage> read_messages(const json& body) {
  const json* messages = field(body, "messages");
  if (!messages) throw invalid_request("'messages' is required", "messages");
  if (!messages->is_array()) wrong_type("messages", "an array", *messages);
  if (messages->empty()) throw invalid_request("'messages' must not be empty", "messages");
  std::vector<ChatMessage> conversation;
  conversation.reserve(messages->size());
  for (std::size_t i = 0; i < messages->size(); ++i) {
    const std::string name = "messages[" + std::to_string(i) + "]";
    const json& message = (*messages)[i];
    if (!message.is_object()) wrong_type(name, "an object", message);
    const json* role = field(message, "role");
    if (!role) throw invalid_request("'" + name + ".role' is required", name + ".role");
    if (!role->is_string()) wrong_type(name + ".role", "a string", *role);
    std::string role_name = role->get<std::string>();
    if (role_name == "developer") role_name = "system";
    if (role_name != "system" && role_name != "user" && role_name != "assistant")
      throw invalid_request("'" + name + ".role' must be system, user or assistant, got '" +
                                role->get<std::string>() + "'",
                            name + ".role");
    const json* content = field(message, "content");
    if (!content) throw invalid_request("'" + name + ".content' is required", name + ".content");
    conversation.push_back({std::move(role_name), message_content(*content, name + ".content")});
  }
  return conversation;
}

std::vector<std::string> read_stop(const json& body) {
  const json* stop = field(body, "stop");
  if (!stop) return {};
  std::vector<std::string> stops;
  if (stop->is_string()) {
    stops.push_back(stop->get<std::string>());
  } else if (stop->is_array()) {
    if (stop->size() > 16)
      throw invalid_request("'stop' may list at most 16 strings", "stop");
    for (std::size_t i = 0; i < stop->size(); ++i) {
      if (!(*stop)[i].is_string())
        wrong_type("stop[" + std::to_string(i) + "]", "a string", (*stop)[i]);
      stops.push_back((*stop)[i].get<std::string>());
    }
  } else {
    wrong_type("stop", "a string or an array of strings", *stop);
  }
  for (const std::string& text : stops)
    if (text.empty()) throw invalid_request("'stop' strings must not be empty", "stop");
  return stops;
}

std::size_t prompt_bytes(const GenerateRequest& request) {
  if (!request.prompt_tokens.empty()) return 0;
  if (!request.chat) return request.prompt.size();
  std::size_t bytes = 0;
  for (const ChatMessage& message : request.messages) bytes += message.content.size();
  return bytes;
}

void check_prompt_fits(const GenerateRequest& request, const ModelFacts& model) {
  const char* param = request.chat ? "messages" : "prompt";
  if (!request.prompt_tokens.empty()) {
    if (int64_t(request.prompt_tokens.size()) >= model.context_tokens)
      throw invalid_request("the prompt has " + std::to_string(request.prompt_tokens.size()) +
                                " tokens; the context holds " +
                                std::to_string(model.context_tokens) +
                                " tokens, prompt and completion together",
                            param, "context_length_exceeded");
    return;
  }
  const std::size_t bytes = prompt_bytes(request);
  const std::size_t most_bytes = std::size_t(model.context_tokens) * model.max_token_bytes;
  if (bytes > most_bytes)
    throw invalid_request("the prompt is " + std::to_string(bytes) +
                              " bytes, more than the context of " +
                              std::to_string(model.context_tokens) +
                              " tokens can hold (at most " + std::to_string(most_bytes) +
                              " bytes)",
                          param, "context_length_exceeded");
}

}  // namespace

ModelFacts model_facts(const LoadedModel& model, std::string served_name, int32_t context_tokens) {
  ModelFacts facts;
  facts.served_name = std::move(served_name);
  facts.context_tokens = context_tokens;
  const Tokenizer& tokenizer = model.tokenizer();
  const int32_t size = tokenizer.vocab().size();
  for (int32_t id = 0; id < size; ++id)
    facts.max_token_bytes = std::max(facts.max_token_bytes, tokenizer.piece(id).size());
  return facts;
}

CompletionRequest parse_completion_request(std::string_view body_text, Endpoint endpoint,
                                           const ModelFacts& model) {
  const json body = parse_body(body_text);
  CompletionRequest parsed;
  parsed.endpoint = endpoint;
  GenerateRequest& request = parsed.generate;
  const bool chat = endpoint == Endpoint::ChatCompletions;

  if (const std::optional<std::string> name = get_string(body, "model");
      name && !name->empty() && *name != model.served_name)
    throw invalid_request("the model '" + *name + "' does not exist; this server serves '" +
                              model.served_name + "' (see GET /v1/models)",
                          "model", "model_not_found");

  if (chat) {
    request.chat = true;
    request.messages = read_messages(body);
  } else {
    read_prompt(body, request);
  }

  constexpr int64_t kMaxTokensLimit = int64_t{1} << 30;
  std::optional<int64_t> max_tokens;
  if (chat) max_tokens = get_int(body, "max_completion_tokens", 1, kMaxTokensLimit);
  if (!max_tokens) max_tokens = get_int(body, "max_tokens", 1, kMaxTokensLimit);
  // Chat answers run to the end of the context unless limited, as OpenAI's do.
  request.max_tokens = int32_t(max_tokens.value_or(chat ? std::max(model.context_tokens, 1)
                                                        : kDefaultCompletionTokens));

  SamplingParams& sampling = request.sampling;
  if (auto value = get_number(body, "temperature", 0.0, 2.0)) sampling.temperature = float(*value);
  if (auto value = get_number(body, "top_p", 0.0, 1.0, true)) sampling.top_p = float(*value);
  if (auto value = get_int(body, "top_k", -1, std::numeric_limits<int32_t>::max()))
    sampling.top_k = int32_t(*value);
  if (auto value = get_number(body, "min_p", 0.0, 1.0)) sampling.min_p = float(*value);
  if (auto value = get_number(body, "frequency_penalty", -2.0, 2.0))
    sampling.frequency_penalty = float(*value);
  if (auto value = get_number(body, "presence_penalty", -2.0, 2.0))
    sampling.presence_penalty = float(*value);
  if (auto value = get_number(body, "repetition_penalty", 0.0, 10.0, true))
    sampling.repetition_penalty = float(*value);
  if (auto value = get_int(body, "seed", std::numeric_limits<int64_t>::min(),
                           std::numeric_limits<int64_t>::max()))
    sampling.seed = uint64_t(*value);

  if (chat) {
    parsed.logprobs = get_bool(body, "logprobs").value_or(false);
    const std::optional<int64_t> top =
        get_int(body, "top_logprobs", 0, SamplingParams::kMaxLogprobs);
    if (top && !parsed.logprobs)
      throw invalid_request("'top_logprobs' needs 'logprobs' set to true", "top_logprobs");
    sampling.n_logprobs = int32_t(top.value_or(0));
  } else if (auto top = get_int(body, "logprobs", 0, SamplingParams::kMaxLogprobs)) {
    parsed.logprobs = true;
    sampling.n_logprobs = int32_t(*top);
  }
  sampling.logprob = parsed.logprobs;  // otherwise nobody reads it: skip the normalizer

  request.stop = read_stop(body);
  request.ignore_eos = get_bool(body, "ignore_eos").value_or(false);
  (void)get_string(body, "user");
  parsed.stream = get_bool(body, "stream").value_or(false);
  if (const json* options = field(body, "stream_options")) {
    if (!options->is_object()) wrong_type("stream_options", "an object", *options);
    parsed.include_usage = get_bool(*options, "include_usage").value_or(false);
  }

  refuse_if(get_int(body, "n", 1, 128).value_or(1) != 1, "n",
            "'n' must be 1: several choices per request are not supported; send one request "
            "per choice");
  refuse_if(get_int(body, "best_of", 1, 128).value_or(1) != 1, "best_of",
            "'best_of' must be 1: it is not supported");
  refuse_if(get_bool(body, "echo").value_or(false), "echo", "'echo' is not supported");
  refuse_if(!get_string(body, "suffix").value_or("").empty(), "suffix",
            "'suffix' is not supported");
  if (const json* bias = field(body, "logit_bias")) {
    if (!bias->is_object()) wrong_type("logit_bias", "an object", *bias);
    refuse_if(!bias->empty(), "logit_bias", "'logit_bias' is not supported");
  }
  if (const json* tools = field(body, "tools")) {
    if (!tools->is_array()) wrong_type("tools", "an array", *tools);
    refuse_if(!tools->empty(), "tools", "'tools' (function calling) is not supported");
  }
  if (const json* format = field(body, "response_format")) {
    if (!format->is_object()) wrong_type("response_format", "an object", *format);
    refuse_if(get_string(*format, "type").value_or("text") != "text", "response_format",
              "'response_format' other than {\"type\": \"text\"} is not supported");
  }

  check_prompt_fits(request, model);
  return parsed;
}

TokenizeRequest parse_tokenize_request(std::string_view body_text) {
  const json body = parse_body(body_text);
  TokenizeRequest parsed;
  parsed.add_special_tokens = get_bool(body, "add_special_tokens").value_or(true);
  if (field(body, "messages")) {
    parsed.chat = true;
    parsed.messages = read_messages(body);
    return parsed;
  }
  const std::optional<std::string> prompt = get_string(body, "prompt");
  if (!prompt) throw invalid_request("'prompt' (a string) or 'messages' is required", "prompt");
  parsed.prompt = *prompt;
  return parsed;
}

std::vector<int32_t> parse_detokenize_request(std::string_view body_text, int32_t vocab_size) {
  const json body = parse_body(body_text);
  const json* tokens = field(body, "tokens");
  if (!tokens) throw invalid_request("'tokens' is required", "tokens");
  if (!tokens->is_array()) wrong_type("tokens", "an array of token ids", *tokens);
  std::vector<int32_t> ids = token_list(*tokens, "tokens");
  for (std::size_t i = 0; i < ids.size(); ++i)
    if (ids[i] >= vocab_size)
      throw invalid_request("'tokens[" + std::to_string(i) + "]' = " + std::to_string(ids[i]) +
                                " is outside the vocabulary of " + std::to_string(vocab_size) +
                                " tokens",
                            "tokens");
  return ids;
}

std::string parse_reload_request(std::string_view body_text) {
  if (body_text.find_first_not_of(" \t\r\n") == std::string_view::npos) return {};
  const json body = parse_body(body_text);
  return get_string(body, "model").value_or("");
}

}  // namespace troupe
