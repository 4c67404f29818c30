// HttpServer: the OpenAI-compatible HTTP front end of troupe-server over an Engine (Boost.Beast,
// C++20 coroutines on one io thread; this header keeps Beast out of its includers).
// Routes: POST /v1/completions, /v1/chat/completions (SSE when "stream"), GET /v1/models,
// POST /tokenize, /detokenize, GET /health, POST /admin/reload, GET /metrics.
// Life: the constructor binds (so the port is known at once); run() loads the engine with the
// factory on another thread (/health answers 503 until it is ready), serves, and returns the
// exit status once stopped: stop() (or SIGTERM/SIGINT) stops accepting, lets running requests
// finish for drain_timeout (Engine::shutdown), answers what is still open and returns 0;
// 1 when the engine could not be made. reload() (or SIGHUP) reloads the model as
// POST /admin/reload does. A client that disconnects cancels its request.
// Thread safety: stop() and reload() may be called from any thread; run() once.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "actors/engine.hpp"
#include "daemon/server_options.hpp"

namespace troupe {

using EngineFactory = std::function<std::unique_ptr<Engine>()>;

class HttpServer {
 public:
  // chat_template: the family name /tokenize uses for messages ("" = detect from the model).
  // Throws std::runtime_error naming the address when it cannot listen there.
  HttpServer(HttpOptions options, std::string chat_template, EngineFactory make_engine);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  uint16_t port() const;
  int run(bool handle_signals);
  void stop();
  void reload();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace troupe
