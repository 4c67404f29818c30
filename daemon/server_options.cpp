#include "daemon/server_options.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "actors/options.hpp"

namespace troupe {
namespace po = boost::program_options;

namespace {

void add_http_options(po::options_description& description) {
  description.add_options()
      ("print-config", "print the effective configuration (a valid config file) and exit")
      ("host", po::value<std::string>()->value_name("ADDRESS")->default_value("127.0.0.1"),
       "address to listen on")
      ("port", po::value<int>()->value_name("N")->default_value(8080),
       "TCP port to listen on (0: any free port, see --port-file)")
      ("port-file", po::value<std::string>()->value_name("FILE")->default_value(""),
       "write the bound port to FILE once listening")
      ("api-keys", po::value<std::string>()->value_name("LIST")->default_value(""),
       "comma-separated API keys; when set, /v1, /tokenize, /detokenize and /admin need "
       "`Authorization: Bearer KEY`")
      ("max-body-bytes", po::value<int64_t>()->value_name("N")->default_value(1 << 20),
       "largest request body accepted (larger: 413)")
      ("max-header-bytes", po::value<int64_t>()->value_name("N")->default_value(16 << 10),
       "largest request line + header fields accepted (larger: 431)")
      ("idle-timeout", po::value<double>()->value_name("SECONDS")->default_value(60.0),
       "close a connection idle (or sending its request) this long")
      ("drain-timeout", po::value<double>()->value_name("SECONDS")->default_value(30.0),
       "on SIGTERM/SIGINT, let running requests finish this long, then cancel them")
      ("request-timeout", po::value<double>()->value_name("SECONDS")->default_value(600.0),
       "deadline of a request from its arrival")
      ("served-model-name", po::value<std::string>()->value_name("NAME")->default_value(""),
       "the model id of /v1/models and responses (empty: the model file's stem)")
      ("access-log", po::value<bool>()->value_name("BOOL")->default_value(true),
       "log one line per request")
      ("log-level", po::value<std::string>()->value_name("LEVEL")->default_value("info"),
       "trace, debug, info, warn, error or off");
}

void add_engine_options(po::options_description& description) {
  description.add_options()
      ("workers", po::value<int>()->value_name("N")->default_value(1),
       "backends (each with its own compute pool and one step in flight)")
      ("max-batch-tokens", po::value<int>()->value_name("N")->default_value(512),
       "tokens of one batch (decodes and prefill chunks together)")
      ("max-seqs", po::value<int>()->value_name("N")->default_value(64),
       "sequences running at once")
      ("max-queued", po::value<int>()->value_name("N")->default_value(256),
       "waiting requests; beyond that a request gets 429")
      ("context-tokens", po::value<int>()->value_name("N")->default_value(0),
       "context per sequence (0: the model's trained context)")
      ("kv-block-tokens", po::value<int>()->value_name("N")->default_value(16),
       "tokens per KV-cache block")
      ("kv-blocks", po::value<int64_t>()->value_name("N")->default_value(0),
       "KV-cache blocks (0: as many as --kv-mib allows)")
      ("kv-mib", po::value<int64_t>()->value_name("MIB")->default_value(256),
       "KV-cache memory when --kv-blocks is 0")
      ("kv-granularity", po::value<std::string>()->value_name("NAME")->default_value("step"),
       "KV-cache calls: step (one transaction per planner iteration, batched calls) or token "
       "(one call per token)")
      ("prefix-cache", po::value<bool>()->value_name("BOOL")->default_value(true),
       "reuse cached KV blocks of common prompt prefixes")
      ("chat-template", po::value<std::string>()->value_name("NAME")->default_value(""),
       "chat template family (empty: detect from the model)")
      ("sim-profile", po::value<std::string>()->value_name("NAME")->default_value("7b-h200"),
       "model and device profile of --backend sim")
      ("sim-time-scale", po::value<double>()->value_name("X")->default_value(1.0),
       "--backend sim: multiply simulated step times by X (0: no sleeping)")
      ("actor-timeout", po::value<double>()->value_name("SECONDS")->default_value(10.0),
       "--sync actor: how long a call to the owning actor waits for its reply");
}

std::chrono::milliseconds read_seconds(const po::variables_map& values, const std::string& option,
                                       double min, double max) {
  return std::chrono::milliseconds(
      static_cast<int64_t>(std::llround(read_in_range(values, option, min, max) * 1000.0)));
}

template <class T>
T only_one(const std::vector<T>& list, const char* option) {
  if (list.size() != 1)
    throw OptionsError(std::string("--") + option + ": troupe-server takes exactly one value, got " +
                       std::to_string(list.size()));
  return list.front();
}

std::string any_text(const boost::any& value) {
  std::ostringstream text;
  if (const auto* s = boost::any_cast<std::string>(&value)) return *s;
  if (const auto* i = boost::any_cast<int>(&value)) return std::to_string(*i);
  if (const auto* l = boost::any_cast<int64_t>(&value)) return std::to_string(*l);
  if (const auto* b = boost::any_cast<bool>(&value)) return *b ? "true" : "false";
  if (const auto* d = boost::any_cast<double>(&value)) {
    text << *d;
    return text.str();
  }
  return "?";
}

}  // namespace

po::options_description server_options_description() {
  po::options_description description("troupe-server options");
  add_general_options(description);
  add_http_options(description);
  add_model_options(description);
  add_runtime_option(description, "actors");
  add_sync_option(description, "parking");
  add_engine_options(description);
  return description;
}

ServerOptions read_server_options(const po::variables_map& values) {
  ServerOptions options;
  options.print_config = values.count("print-config") > 0;
  HttpOptions& http = options.http;
  http.host = values.at("host").as<std::string>();
  if (http.host.empty()) throw OptionsError("--host: empty address");
  http.port = static_cast<uint16_t>(read_in_range(values, "port", 0, 65535));
  http.port_file = values.at("port-file").as<std::string>();
  for (std::string_view key : options_detail::split_list(values.at("api-keys").as<std::string>()))
    if (!key.empty()) http.api_keys.emplace_back(key);
  http.max_body_bytes = static_cast<std::size_t>(
      read_in_range<int64_t>(values, "max-body-bytes", 1024, int64_t{1} << 32));
  http.max_header_bytes = static_cast<std::size_t>(
      read_in_range<int64_t>(values, "max-header-bytes", 1024, int64_t{1} << 20));
  http.idle_timeout = read_seconds(values, "idle-timeout", 0.1, 86400.0);
  http.drain_timeout = read_seconds(values, "drain-timeout", 0.0, 86400.0);
  http.served_model_name = values.at("served-model-name").as<std::string>();
  http.access_log = values.at("access-log").as<bool>();
  options.log_level = values.at("log-level").as<std::string>();
  static const char* const levels[] = {"trace", "debug", "info", "warn", "error", "off"};
  if (std::find(std::begin(levels), std::end(levels), options.log_level) == std::end(levels))
    throw OptionsError("--log-level: unknown level '" + options.log_level +
                       "' (expected trace, debug, info, warn, error or off)");

  const ModelOptions model = read_model_options(values);
  options.backend_fallback = model.backend_fallback;
  const SyncOptions sync = read_sync_options(values);
  EngineOptions& engine = options.engine;
  engine.runtime = only_one(sync.runtime, "runtime");
  engine.sync = only_one(sync.sync, "sync");
  if (engine.runtime == Runtime::Threads && engine.sync == SyncMode::Actor)
    throw OptionsError("--sync: 'actor' needs --runtime actors (the threads runtime has no "
                       "actor to own the state)");
  try {
    engine.kv_granularity = parse_kv_granularity(values.at("kv-granularity").as<std::string>());
  } catch (const std::invalid_argument& error) {
    throw OptionsError(std::string("--kv-granularity: ") + error.what());
  }
  engine.sharing.actor_timeout = read_seconds(values, "actor-timeout", 0.001, 3600.0);
  engine.model_path = model.model.string();
  engine.chat_template = values.at("chat-template").as<std::string>();
  engine.backend.name = model.backend;
  engine.backend.threads = model.backend_threads;
  engine.backend.max_batch_tokens = read_in_range(values, "max-batch-tokens", 1, 1 << 20);
  engine.backend.kv_block_tokens = read_in_range(values, "kv-block-tokens", 1, 4096);
  engine.backend.kv_blocks = read_in_range<int64_t>(values, "kv-blocks", 0, int64_t{1} << 32);
  engine.backend.kv_bytes =
      static_cast<uint64_t>(read_in_range<int64_t>(values, "kv-mib", 1, int64_t{1} << 24)) << 20;
  engine.sim_profile = values.at("sim-profile").as<std::string>();
  engine.sim_time_scale = read_in_range(values, "sim-time-scale", 0.0, 1e6);
  engine.workers = read_in_range(values, "workers", 1, 256);
  engine.planner.max_batch_tokens = engine.backend.max_batch_tokens;
  engine.planner.max_seqs = read_in_range(values, "max-seqs", 1, 1 << 20);
  engine.planner.max_queued = read_in_range(values, "max-queued", 0, 1 << 24);
  engine.planner.workers = engine.workers;
  if (engine.planner.max_seqs > engine.planner.max_batch_tokens)
    throw OptionsError("--max-seqs: " + std::to_string(engine.planner.max_seqs) +
                       " exceeds --max-batch-tokens " +
                       std::to_string(engine.planner.max_batch_tokens) +
                       " (every running sequence's decode token must fit in one batch)");
  engine.context_tokens = read_in_range(values, "context-tokens", 0, 1 << 24);
  engine.prefix_cache = values.at("prefix-cache").as<bool>();
  engine.request_timeout = read_seconds(values, "request-timeout", 0.001, 7 * 86400.0);
  return options;
}

std::string effective_config_text(const po::options_description& description,
                                  const po::variables_map& values) {
  std::string text = "# troupe-server effective configuration\n";
  for (const auto& option : description.options()) {
    const std::string& name = option->long_name();
    if (name == "help" || name == "config" || name == "print-config") continue;
    const auto found = values.find(name);
    if (found == values.end() || found->second.empty()) continue;
    const std::string value = any_text(found->second.value());
    if (name == "api-keys" && !value.empty())
      text += "# api-keys = (set, not shown)\n";
    else
      text += name + " = " + value + "\n";
  }
  return text;
}

}  // namespace troupe
