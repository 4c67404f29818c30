// troupe-server: loads a model and serves the OpenAI-compatible HTTP API (daemon/http_server.hpp).
//   troupe-server --config config/troupe-server.conf [--flag value ...]
// Exit status: 0 after a drain (SIGTERM/SIGINT), 1 when the model or the address fails,
// 2 for a bad option.
#include <fstream>
#include <iostream>

#include <spdlog/spdlog.h>

#include "actors/options.hpp"
#include "daemon/http_server.hpp"
#include "daemon/server_options.hpp"

namespace {

using namespace troupe;

std::string banner(const ServerOptions& options) {
  const EngineOptions& engine = options.engine;
  const bool sim = engine.backend.name == "sim";
  return fmt::format(
      "troupe-server: model {}, backend {} (threads {}), runtime {}, sync {}, workers {}, "
      "kv-granularity {}, max-batch-tokens {}, max-seqs {}, max-queued {}, context {}, "
      "kv {}, prefix-cache {}, request-timeout {} ms, drain-timeout {} ms, body limit {} B, "
      "header limit {} B, idle-timeout {} ms, api keys {}",
      sim ? "simulated " + engine.sim_profile : engine.model_path, engine.backend.name,
      engine.backend.threads, to_string(engine.runtime), to_string(engine.sync), engine.workers,
      to_string(engine.kv_granularity), engine.planner.max_batch_tokens, engine.planner.max_seqs,
      engine.planner.max_queued,
      engine.context_tokens > 0 ? std::to_string(engine.context_tokens) : "model's",
      engine.backend.kv_blocks > 0 ? std::to_string(engine.backend.kv_blocks) + " blocks"
                                   : std::to_string(engine.backend.kv_bytes >> 20) + " MiB",
      engine.prefix_cache ? "on" : "off", engine.request_timeout.count(),
      options.http.drain_timeout.count(), options.http.max_body_bytes,
      options.http.max_header_bytes, options.http.idle_timeout.count(),
      options.http.api_keys.empty() ? "off" : std::to_string(options.http.api_keys.size()));
}

}  // namespace

int main(int argc, char** argv) {
  const auto description = server_options_description();
  ServerOptions options;
  try {
    const auto values = parse_options(description, std::vector<std::string>(argv + 1, argv + argc));
    if (help_requested(values)) {
      std::cout << "usage: troupe-server [--config FILE] [--option value ...]\n"
                   "Serves a GGUF model over an OpenAI-compatible HTTP API.\n\n"
                << description << "\n";
      return 0;
    }
    options = read_server_options(values);
    if (options.engine.backend.name == "sim" && options.http.served_model_name.empty())
      options.http.served_model_name = "sim-" + options.engine.sim_profile;
    if (options.print_config) {
      std::cout << effective_config_text(description, values);
      return 0;
    }
    options.engine.validate();
  } catch (const std::exception& error) {
    std::cerr << "troupe-server: " << error.what() << " (see --help)\n";
    return 2;
  }
  spdlog::set_level(spdlog::level::from_str(options.log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::info("{}", banner(options));
  if (!options.backend_fallback.empty()) spdlog::warn("{}", options.backend_fallback);
  try {
    const EngineOptions engine_options = options.engine;
    HttpServer server(options.http, options.engine.chat_template,
                      [engine_options] { return make_engine(engine_options); });
    spdlog::info("listening on http://{}:{}", options.http.host, server.port());
    if (!options.http.port_file.empty()) {
      const std::string temporary = options.http.port_file + ".tmp";
      std::ofstream(temporary) << server.port() << "\n";
      std::rename(temporary.c_str(), options.http.port_file.c_str());
    }
    const int status = server.run(true);
    spdlog::info("troupe-server stopped");
    return status;
  } catch (const std::exception& error) {
    spdlog::error("{}", error.what());
    return 1;
  }
}
