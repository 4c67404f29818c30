// The options of troupe-server: the shared groups of actors/options.hpp (config file, model,
// one sync mode, one runtime) plus the HTTP server's and the engine's own. Every option is a
// long flag and a key of the flat INI config file (a flag overrides the file).
// read_server_options() throws OptionsError naming the option for a bad value.
// Units: byte limits in bytes, timeouts in seconds (fractions allowed), kv-bytes in MiB.
// Stateless; safe from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "actors/engine.hpp"

namespace troupe {

struct HttpOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;                       // 0: an ephemeral port (see port_file)
  std::string port_file;                      // when set, the bound port is written there
  std::vector<std::string> api_keys;          // empty: no authentication
  std::size_t max_body_bytes = 1u << 20;
  std::size_t max_header_bytes = 16u << 10;   // request line and header fields together
  std::chrono::milliseconds idle_timeout{60'000};  // keep-alive and slow-sender limit
  std::chrono::milliseconds drain_timeout{30'000};
  std::string served_model_name;              // "": the model file's stem (or the sim profile)
  bool access_log = true;
};

struct ServerOptions {
  HttpOptions http;
  EngineOptions engine;
  std::string log_level = "info";
  bool print_config = false;
  std::string backend_fallback;  // why --backend auto chose cpu (empty: it did not)
};

// Every option troupe-server accepts, --help and --config included.
boost::program_options::options_description server_options_description();

// Throws OptionsError naming the option (troupe-server takes one runtime and one sync mode).
ServerOptions read_server_options(const boost::program_options::variables_map& values);

// The effective values as a config file troupe-server accepts (API keys masked).
std::string effective_config_text(const boost::program_options::options_description& description,
                                  const boost::program_options::variables_map& values);

}  // namespace troupe
