#include <utility>  // first: Boost 1.74's asio/awaitable.hpp uses std::exchange without it

#include "daemon/http_server.hpp"

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <optional>
#include <random>
#include <thread>
#include <unordered_set>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "daemon/api_error.hpp"
#include "daemon/api_keys.hpp"
#include "daemon/metrics.hpp"
#include "daemon/openai_request.hpp"
#include "daemon/openai_response.hpp"
#include "daemon/thread_cpu.hpp"
#include "model/chat_prompt.hpp"

namespace troupe {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using net::awaitable;
using net::use_awaitable;
using json = nlohmann::ordered_json;

namespace {

using Clock = std::chrono::steady_clock;

// What the engine's threads hand to the connection: chunks and the end, plus a wake-up of
// the coroutine that waits on `wake` (touched on the io thread only).
struct Exchange {
  explicit Exchange(net::any_io_executor executor) : wake(executor) {
    wake.expires_at(Clock::time_point::max());
  }
  std::mutex mutex;
  std::vector<TextChunk> chunks;
  std::optional<EndEvent> end;
  bool wake_posted = false;
  net::steady_timer wake;
  bool signalled = false;    // io thread only: woken since the last wait (the wake-up may
                             // come while the coroutine is writing, not waiting)
  bool client_gone = false;  // io thread only
  bool watching = true;      // io thread only: the disconnect watch may still act

  void signal() {  // io thread
    signalled = true;
    wake.cancel();
  }

  void notify(std::shared_ptr<Exchange> self) {  // under mutex
    if (wake_posted) return;
    wake_posted = true;
    net::post(wake.get_executor(), [self = std::move(self)] { self->signal(); });
  }
};

class ExchangeSink final : public ResponseSink {
 public:
  explicit ExchangeSink(std::shared_ptr<Exchange> exchange) : exchange_(std::move(exchange)) {}
  void on_chunk(TextChunk chunk) override {
    std::lock_guard lock(exchange_->mutex);
    exchange_->chunks.push_back(std::move(chunk));
    exchange_->notify(exchange_);
  }
  void on_end(EndEvent end) override {
    std::lock_guard lock(exchange_->mutex);
    exchange_->end = std::move(end);
    exchange_->notify(exchange_);
  }

 private:
  std::shared_ptr<Exchange> exchange_;
};

// A wake-up for a coroutine waiting on work done by another thread: the thread posts
// complete(), the coroutine awaits done.
struct Completion {
  explicit Completion(net::any_io_executor executor) : wake(executor) {
    wake.expires_at(Clock::time_point::max());
  }
  net::steady_timer wake;
  bool done = false;
  int status = 200;
  std::string body;
};

enum class Route { Health, Models, Completions, ChatCompletions, Tokenize, Detokenize, Reload,
                   Metrics, Unknown };

struct RouteInfo {
  Route route;
  std::string_view path;
  http::verb method;
  bool needs_key;
};

constexpr RouteInfo kRoutes[] = {
    {Route::Health, "/health", http::verb::get, false},
    {Route::Models, "/v1/models", http::verb::get, true},
    {Route::Completions, "/v1/completions", http::verb::post, true},
    {Route::ChatCompletions, "/v1/chat/completions", http::verb::post, true},
    {Route::Tokenize, "/tokenize", http::verb::post, true},
    {Route::Detokenize, "/detokenize", http::verb::post, true},
    {Route::Reload, "/admin/reload", http::verb::post, true},
    {Route::Metrics, "/metrics", http::verb::get, false},
};

const RouteInfo* find_route(std::string_view path) {
  for (const RouteInfo& info : kRoutes)
    if (info.path == path) return &info;
  return nullptr;
}

std::string random_hex(std::size_t digits) {
  static thread_local std::mt19937_64 generator{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text(digits, '0');
  for (char& c : text) c = kHex[generator() & 15];
  return text;
}

int64_t unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string_view std_view(beast::string_view text) { return {text.data(), text.size()}; }
beast::string_view beast_view(std::string_view text) { return {text.data(), text.size()}; }

// Cancels the pending reads of a stream (without closing it) when a request takes longer than
// `limit` to arrive. disarm() stops it and says whether it fired.
class ReadDeadline {
 public:
  ReadDeadline(beast::tcp_stream& stream, std::chrono::milliseconds limit)
      : timer_(stream.get_executor()), state_(std::make_shared<State>()) {
    timer_.expires_after(limit);
    timer_.async_wait([state = state_, &stream](beast::error_code ec) {
      if (ec || !state->armed) return;
      state->fired = true;
      beast::error_code ignored;
      stream.socket().cancel(ignored);
    });
  }
  ~ReadDeadline() { disarm(); }
  bool disarm() {
    state_->armed = false;
    timer_.cancel();
    return state_->fired;
  }

 private:
  struct State {
    bool armed = true;
    bool fired = false;
  };
  net::steady_timer timer_;
  std::shared_ptr<State> state_;
};

// The access log's facts about one request.
struct Outcome {
  int status = 0;
  int32_t prompt_tokens = -1, completion_tokens = -1;
};

}  // namespace

struct HttpServer::Impl {
  Impl(HttpOptions http_options, std::string chat_template_name, EngineFactory factory)
      : options(std::move(http_options)),
        chat_template(std::move(chat_template_name)),
        make_engine(std::move(factory)),
        keys(options.api_keys),
        acceptor(io) {
    const tcp::endpoint endpoint(net::ip::make_address(options.host), options.port);
    acceptor.open(endpoint.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.bind(endpoint);
    acceptor.listen(net::socket_base::max_listen_connections);
    started = unix_seconds();
  }

  // ---- state ----
  net::io_context io{1};
  HttpOptions options;
  std::string chat_template;
  EngineFactory make_engine;
  ApiKeys keys;
  tcp::acceptor acceptor;
  ServerMetrics metrics;
  ThreadCpuClocks http_clocks;
  int64_t started = 0;

  mutable std::mutex engine_mutex;
  std::shared_ptr<Engine> engine_ptr;
  std::atomic<bool> draining{false};
  std::atomic<bool> load_failed{false};
  std::atomic<bool> reloading{false};
  std::thread loader, drainer, reloader;
  std::mutex reloader_mutex;

  // io thread only
  bool stopping = false;
  struct Session {
    beast::tcp_stream* stream;
    bool busy;
  };
  std::unordered_set<Session*> sessions;
  std::shared_ptr<const ModelFacts> facts;
  uint64_t facts_generation = 0;
  std::optional<net::steady_timer> stop_deadline;

  std::shared_ptr<Engine> engine() const {
    std::lock_guard lock(engine_mutex);
    return engine_ptr;
  }

  std::string served_name(const LoadedModel& model) const {
    if (!options.served_model_name.empty()) return options.served_model_name;
    return std::filesystem::path(model.source()).stem().string();
  }

  const ModelFacts& model_facts_of(Engine& engine) {
    const std::shared_ptr<const LoadedModel> model = engine.model();
    if (!facts || facts_generation != model->generation()) {
      facts = std::make_shared<const ModelFacts>(
          model_facts(*model, served_name(*model), engine.context_tokens()));
      facts_generation = model->generation();
    }
    return *facts;
  }

  // ---- life ----
  void start_loading() {
    loader = std::thread([this] {
      try {
        std::shared_ptr<Engine> made = make_engine();
        const auto model = made->model();
        spdlog::info("model ready: {} (generation {}, context {} tokens)", model->source(),
                     model->generation(), made->context_tokens());
        std::lock_guard lock(engine_mutex);
        engine_ptr = std::move(made);
      } catch (const std::exception& error) {
        spdlog::error("cannot start the engine: {}", error.what());
        load_failed = true;
        net::post(io, [this] { begin_drain(); });
      }
    });
  }

  void begin_drain() {  // io thread
    if (draining.exchange(true)) return;
    spdlog::info("draining: no new connections; running requests may finish within {} ms",
                 options.drain_timeout.count());
    beast::error_code ignored;
    acceptor.close(ignored);
    drainer = std::thread([this] {
      if (loader.joinable()) loader.join();
      {
        std::lock_guard lock(reloader_mutex);
        if (reloader.joinable()) reloader.join();
      }
      if (std::shared_ptr<Engine> current = engine()) {
        const int cancelled = current->shutdown(options.drain_timeout);
        spdlog::info("engine stopped; {} request(s) cancelled at the drain timeout", cancelled);
      }
      net::post(io, [this] { finish_stop(); });
    });
  }

  void finish_stop() {  // io thread
    stopping = true;
    for (Session* session : sessions)
      if (!session->busy) session->stream->socket().close();
    stop_deadline.emplace(io, std::chrono::seconds(5));
    stop_deadline->async_wait([this](beast::error_code) { io.stop(); });
    stop_if_idle();
  }

  void stop_if_idle() {
    if (!stopping) return;
    for (Session* session : sessions)
      if (session->busy) return;
    io.stop();
  }

  // ---- reload ----
  // Runs fn(status, body) on the io thread when the reload ends.
  bool start_reload(std::string path, std::function<void(int, std::string)> done) {
    if (reloading.exchange(true)) return false;
    std::lock_guard lock(reloader_mutex);
    if (reloader.joinable()) reloader.join();
    reloader = std::thread([this, path = std::move(path), done = std::move(done)] {
      int status = 200;
      std::string body;
      std::shared_ptr<Engine> current = engine();
      try {
        if (!current) throw std::runtime_error("the model is still loading");
        current->reload(path);
        const auto model = current->model();
        json answer;
        answer["status"] = "ok";
        answer["generation"] = model->generation();
        answer["model"] = model->source();
        body = answer.dump();
        spdlog::info("reloaded: {} is generation {}", model->source(), model->generation());
      } catch (const ModelLoadError& error) {
        status = 400;
        body = error_body(invalid_request(error.what(), "model", "model_load_failed"));
        spdlog::error("reload failed: {}", error.what());
      } catch (const std::exception& error) {
        status = 503;
        body = error_body(ApiError(503, error.what(), "service_unavailable"));
        spdlog::error("reload failed: {}", error.what());
      }
      reloading = false;
      net::post(io, [done, status, body = std::move(body)]() mutable {
        done(status, std::move(body));
      });
    });
    return true;
  }

  // ---- connections ----
  awaitable<void> accept_loop() {
    http_clocks.add_current_thread();
    while (acceptor.is_open()) {
      beast::error_code ec;
      tcp::socket socket = co_await acceptor.async_accept(net::redirect_error(use_awaitable, ec));
      if (ec) {
        if (ec == net::error::operation_aborted || !acceptor.is_open()) break;
        spdlog::warn("accept: {}", ec.message());
        continue;
      }
      socket.set_option(tcp::no_delay(true), ec);
      net::co_spawn(io, session(std::move(socket)), net::detached);
    }
  }

  awaitable<void> session(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    Session registration{&stream, false};
    sessions.insert(&registration);
    metrics.connection_opened();
    try {
      co_await serve_connection(stream, registration);
    } catch (const std::exception& error) {
      spdlog::warn("connection ended by an error: {}", error.what());
    }
    sessions.erase(&registration);
    metrics.connection_closed();
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream.socket().close(ignored);
    stop_if_idle();
  }

  awaitable<void> serve_connection(beast::tcp_stream& stream, Session& registration) {
    beast::flat_buffer buffer;
    while (!stopping) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(options.max_header_bytes));
      parser.body_limit(options.max_body_bytes);
      beast::error_code ec;
      // Our own deadline, not the stream's: a stream timeout closes the socket, and a client
      // that stalled mid-request should still get its 408.
      ReadDeadline deadline(stream, options.idle_timeout);
      co_await http::async_read_header(stream, buffer, parser,
                                       net::redirect_error(use_awaitable, ec));
      registration.busy = !ec || parser.got_some();
      if (!ec && parser.get()[http::field::expect] == "100-continue" &&
          !parser.is_done()) {
        http::response<http::empty_body> go_on{http::status::continue_, 11};
        co_await http::async_write(stream, go_on, net::redirect_error(use_awaitable, ec));
      }
      if (!ec && !parser.is_done())
        co_await http::async_read(stream, buffer, parser, net::redirect_error(use_awaitable, ec));
      if (deadline.disarm() && ec == net::error::operation_aborted) ec = beast::error::timeout;
      if (ec) {
        co_await answer_read_error(stream, parser, ec);
        co_return;
      }
      stream.expires_never();
      const Clock::time_point arrival = Clock::now();
      http::request<http::string_body> request = parser.release();
      const bool keep_alive = co_await handle(stream, request, arrival);
      registration.busy = false;
      if (!keep_alive) co_return;
    }
  }

  awaitable<void> answer_read_error(beast::tcp_stream& stream,
                                    http::request_parser<http::string_body>& parser,
                                    beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == net::error::eof ||
        ec == net::error::connection_reset || ec == net::error::operation_aborted ||
        ec == net::error::bad_descriptor || (ec == beast::error::timeout && !parser.got_some()))
      co_return;
    std::optional<ApiError> error;
    if (ec == http::error::body_limit) {
      error.emplace(413, "the request body exceeds the limit of " +
                             std::to_string(options.max_body_bytes) + " bytes",
                    "invalid_request_error", "", "request_too_large");
    } else if (ec == http::error::header_limit) {
      error.emplace(431, "the request line and header fields exceed the limit of " +
                             std::to_string(options.max_header_bytes) + " bytes",
                    "invalid_request_error", "", "header_too_large");
    } else if (ec == beast::error::timeout) {
      error.emplace(408, "the request was not received in time", "invalid_request_error", "",
                    "request_timeout");
    } else {
      error.emplace(400, "malformed HTTP request: " + ec.message(), "invalid_request_error");
    }
    const std::string target = parser.is_header_done() ? std::string(parser.get().target()) : "-";
    const std::string method =
        parser.is_header_done() ? std::string(parser.get().method_string()) : "-";
    co_await send_error(stream, *error, false, 11);
    log_access(method, target.size() > 200 ? target.substr(0, 200) + "..." : target,
               Outcome{error->status()}, Clock::now());
    metrics.record_response("other", error->status());
    co_await linger(stream);
  }

  // After an error answer on a connection whose client may still be sending: stop writing,
  // read and drop what comes for a while, so that closing does not reset the connection
  // before the client has read the answer.
  awaitable<void> linger(beast::tcp_stream& stream) {
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    const auto until = Clock::now() + std::min<Clock::duration>(options.idle_timeout,
                                                               std::chrono::seconds(5));
    std::vector<char> sink(64 << 10);
    while (!ec && Clock::now() < until) {
      stream.expires_at(until);
      co_await stream.async_read_some(net::buffer(sink), net::redirect_error(use_awaitable, ec));
    }
  }

  // ---- plain responses ----
  awaitable<void> send(beast::tcp_stream& stream, int status, std::string body,
                       std::string_view content_type, bool keep_alive, unsigned version,
                       std::vector<std::pair<http::field, std::string>> extra = {}) {
    http::response<http::string_body> response{static_cast<http::status>(status), version};
    response.set(http::field::server, "troupe");
    response.set(http::field::content_type, beast_view(content_type));
    for (auto& [name, value] : extra) response.set(name, value);
    response.keep_alive(keep_alive);
    response.body() = std::move(body);
    response.prepare_payload();
    beast::error_code ec;
    stream.expires_after(options.idle_timeout);
    co_await http::async_write(stream, response, net::redirect_error(use_awaitable, ec));
    stream.expires_never();
  }

  awaitable<void> send_error(beast::tcp_stream& stream, const ApiError& error, bool keep_alive,
                             unsigned version) {
    std::vector<std::pair<http::field, std::string>> extra;
    if (error.status() == 429) extra.emplace_back(http::field::retry_after, "1");
    if (error.status() == 401) extra.emplace_back(http::field::www_authenticate, "Bearer");
    co_await send(stream, error.status(), error_body(error), "application/json", keep_alive,
                  version, std::move(extra));
  }

  void log_access(std::string_view method, std::string_view target, const Outcome& outcome,
                  Clock::time_point arrival) {
    if (!options.access_log) return;
    const double seconds = std::chrono::duration<double>(Clock::now() - arrival).count();
    if (outcome.prompt_tokens >= 0)
      spdlog::info("{} {} {} prompt={} completion={} {:.3f}s", method, target, outcome.status,
                   outcome.prompt_tokens, outcome.completion_tokens, seconds);
    else
      spdlog::info("{} {} {} {:.3f}s", method, target, outcome.status, seconds);
  }

  // ---- routing ----
  // Returns whether the connection stays open.
  awaitable<bool> handle(beast::tcp_stream& stream, http::request<http::string_body>& request,
                         Clock::time_point arrival) {
    const std::string_view target = std_view(request.target());
    const std::string_view path = target.substr(0, target.find('?'));
    const RouteInfo* info = find_route(path);
    const std::string route_label = info ? std::string(info->path) : "other";
    bool keep_alive = request.keep_alive() && !stopping;
    const unsigned version = request.version();
    Outcome outcome;
    std::optional<ApiError> failure;  // answered after the try: no co_await in a handler
    try {
      if (!info)
        throw ApiError(404, "no route " + std::string(path) +
                                " (routes: /v1/completions, /v1/chat/completions, /v1/models, "
                                "/tokenize, /detokenize, /health, /metrics, /admin/reload)",
                       "not_found_error", "", "not_found");
      if (request.method() != info->method) {
        outcome.status = 405;
        const ApiError error(405,
                             "method " + std::string(std_view(request.method_string())) + " not allowed on " +
                                 std::string(path) + "; use " +
                                 std::string(std_view(http::to_string(info->method))),
                             "invalid_request_error", "", "method_not_allowed");
        std::vector<std::pair<http::field, std::string>> allow;
        allow.emplace_back(http::field::allow, std::string(std_view(http::to_string(info->method))));
        co_await send(stream, 405, error_body(error), "application/json", keep_alive, version,
                      std::move(allow));
      } else if (info->needs_key && !keys.accepts(std_view(request[http::field::authorization]))) {
        throw ApiError(401,
                       "a valid API key is required: send `Authorization: Bearer KEY`",
                       "authentication_error", "", "invalid_api_key");
      } else {
        switch (info->route) {
          case Route::Completions:
          case Route::ChatCompletions:
            outcome = co_await generate(stream, request, arrival,
                                        info->route == Route::ChatCompletions
                                            ? Endpoint::ChatCompletions
                                            : Endpoint::Completions,
                                        keep_alive);
            break;
          case Route::Reload:
            outcome.status = co_await reload_route(stream, request, keep_alive);
            break;
          default: {
            SimpleAnswer answer = simple_route(info->route, request);
            outcome.status = answer.status;
            co_await send(stream, answer.status, std::move(answer.body), answer.content_type,
                          keep_alive, version);
          }
        }
      }
    } catch (const ApiError& error) {
      failure = error;
    } catch (const std::exception& error) {
      spdlog::error("{} {}: {}", std_view(request.method_string()), path, error.what());
      failure.emplace(500, std::string("internal error: ") + error.what(), "server_error", "",
                      "internal_error");
    }
    if (failure) {
      outcome.status = failure->status();
      co_await send_error(stream, *failure, keep_alive, version);
    }
    metrics.record_response(route_label, outcome.status);
    log_access(std_view(request.method_string()), path, outcome, arrival);
    co_return keep_alive && !stopping;
  }

  std::shared_ptr<Engine> ready_engine() const {
    std::shared_ptr<Engine> current = engine();
    if (!current)
      throw ApiError(503, "the model is loading; retry shortly", "service_unavailable", "",
                     "loading");
    return current;
  }

  struct SimpleAnswer {
    int status;
    std::string body;
    std::string_view content_type;
  };
  SimpleAnswer simple_route(Route route,
                                                              const http::request<http::string_body>& request) {
    constexpr std::string_view kJson = "application/json";
    switch (route) {
      case Route::Health: {
        const std::shared_ptr<Engine> current = engine();
        if (draining || !current) {
          json body;
          body["status"] = draining ? "draining" : (load_failed ? "failed" : "loading");
          return {503, body.dump(), kJson};
        }
        json body;
        body["status"] = "ok";
        body["model"] = served_name(*current->model());
        body["generation"] = current->model()->generation();
        return {200, body.dump(), kJson};
      }
      case Route::Models: {
        const std::shared_ptr<Engine> current = ready_engine();
        const ModelFacts& facts_now = model_facts_of(*current);
        json entry;
        entry["id"] = facts_now.served_name;
        entry["object"] = "model";
        entry["created"] = started;
        entry["owned_by"] = "troupe";
        entry["max_model_len"] = facts_now.context_tokens;
        json body;
        body["object"] = "list";
        body["data"] = json::array({entry});
        return {200, body.dump(), kJson};
      }
      case Route::Tokenize: {
        const std::shared_ptr<Engine> current = ready_engine();
        const TokenizeRequest parsed = parse_tokenize_request(request.body());
        const std::shared_ptr<const LoadedModel> model = current->model();
        std::vector<int32_t> tokens;
        if (parsed.chat) {
          try {
            const Vocab& vocab = model->tokenizer().vocab();
            const ChatTemplate chat = chat_template.empty()
                                          ? ChatTemplate::detect(vocab.chat_template(), vocab)
                                          : ChatTemplate::named(chat_template, vocab);
            tokens = encode_chat(model->tokenizer(), chat, parsed.messages);
          } catch (const ChatTemplateError& error) {
            throw invalid_request(error.what(), "messages");
          }
        } else {
          tokens = model->tokenizer().encode(parsed.prompt, parsed.add_special_tokens, true);
        }
        json body;
        body["tokens"] = tokens;
        body["count"] = tokens.size();
        body["max_model_len"] = current->context_tokens();
        return {200, body.dump(), kJson};
      }
      case Route::Detokenize: {
        const std::shared_ptr<Engine> current = ready_engine();
        const std::shared_ptr<const LoadedModel> model = current->model();
        const std::vector<int32_t> tokens =
            parse_detokenize_request(request.body(), model->tokenizer().vocab().size());
        json body;
        body["prompt"] = model->tokenizer().decode(tokens);
        return {200, body.dump(-1, ' ', false, json::error_handler_t::replace), kJson};
      }
      case Route::Metrics: {
        const std::shared_ptr<Engine> current = engine();
        std::optional<EngineStats> stats;
        if (current) stats = current->stats();
        const CpuSplit cpu{http_clocks.seconds(), process_cpu_seconds()};
        return {200, metrics.render(stats ? &*stats : nullptr, cpu),
                "text/plain; version=0.0.4; charset=utf-8"};
      }
      default:
        break;
    }
    throw ApiError(500, "unrouted request", "server_error");
  }

  awaitable<int> reload_route(beast::tcp_stream& stream,
                              const http::request<http::string_body>& request, bool keep_alive) {
    ready_engine();
    if (draining)
      throw ApiError(503, "the server is shutting down; no reload", "service_unavailable", "",
                     "draining");
    std::string path = parse_reload_request(request.body());
    auto completion = std::make_shared<Completion>(io.get_executor());
    const bool started_now =
        start_reload(std::move(path), [completion](int status, std::string body) {
          completion->status = status;
          completion->body = std::move(body);
          completion->done = true;
          completion->wake.cancel();
        });
    if (!started_now)
      throw ApiError(409, "a reload is already running; retry when it has finished",
                     "invalid_request_error", "", "reload_in_progress");
    while (!completion->done) {
      beast::error_code ec;
      co_await completion->wake.async_wait(net::redirect_error(use_awaitable, ec));
    }
    co_await send(stream, completion->status, std::move(completion->body), "application/json",
                  keep_alive, request.version());
    co_return completion->status;
  }

  // ---- generation ----
  // Cancels the request when the client closes its connection while it runs. Peeks, so that a
  // client that already sent its next request (pipelining) is not taken for gone.
  void watch_disconnect(beast::tcp_stream& stream, std::shared_ptr<Exchange> exchange,
                        std::shared_ptr<Engine> current, RequestId id) {
    tcp::socket& socket = stream.socket();
    socket.async_wait(tcp::socket::wait_read, [&socket, exchange, current, id](
                                                  beast::error_code ec) {
      if (ec || !exchange->watching) return;
      char byte;
      const ssize_t peeked = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
      if (peeked > 0 || (peeked < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))) return;
      exchange->client_gone = true;
      current->cancel(id);
      exchange->signal();
    });
  }

  awaitable<bool> write_chunk(beast::tcp_stream& stream, Exchange& exchange,
                              const std::string& payload) {
    if (exchange.client_gone || payload.empty()) co_return !exchange.client_gone;
    beast::error_code ec;
    stream.expires_after(options.idle_timeout);
    co_await net::async_write(stream, http::make_chunk(net::buffer(payload)),
                              net::redirect_error(use_awaitable, ec));
    if (ec) exchange.client_gone = true;
    co_return !ec;
  }

  awaitable<Outcome> generate(beast::tcp_stream& stream, http::request<http::string_body>& request,
                              Clock::time_point arrival, Endpoint endpoint, bool& keep_alive) {
    const std::shared_ptr<Engine> current = ready_engine();
    const ModelFacts& facts_now = model_facts_of(*current);
    CompletionRequest parsed = parse_completion_request(request.body(), endpoint, facts_now);
    parsed.generate.arrival = arrival;
    const bool chat = endpoint == Endpoint::ChatCompletions;
    CompletionFormatter formatter(endpoint, (chat ? "chatcmpl-" : "cmpl-") + random_hex(24),
                                  unix_seconds(), facts_now.served_name, current->model(),
                                  parsed.logprobs);

    auto exchange = std::make_shared<Exchange>(io.get_executor());
    const RequestId id =
        current->submit(std::move(parsed.generate), std::make_shared<ExchangeSink>(exchange));
    watch_disconnect(stream, exchange, current, id);

    const unsigned version = request.version();
    bool stream_started = false;
    std::optional<http::response<http::empty_body>> sse_header;
    std::optional<http::response_serializer<http::empty_body>> sse_serializer;
    std::vector<TextChunk> chunks;
    std::optional<EndEvent> end;
    std::string payload;
    Outcome outcome;
    while (true) {
      {
        std::lock_guard lock(exchange->mutex);
        chunks.swap(exchange->chunks);
        if (exchange->end) end = std::move(exchange->end);
        exchange->wake_posted = false;
      }
      if (!parsed.stream) {
        for (const TextChunk& chunk : chunks) formatter.add(chunk);
      } else if (!exchange->client_gone &&
                 (!chunks.empty() || (end && end->kind == EndKind::Finished))) {
        if (!stream_started) {
          stream_started = true;
          sse_header.emplace(http::status::ok, version);
          sse_header->set(http::field::server, "troupe");
          sse_header->set(http::field::content_type, "text/event-stream");
          sse_header->set(http::field::cache_control, "no-cache");
          sse_header->keep_alive(keep_alive);
          sse_header->chunked(true);
          sse_serializer.emplace(*sse_header);
          beast::error_code ec;
          stream.expires_after(options.idle_timeout);
          co_await http::async_write_header(stream, *sse_serializer,
                                            net::redirect_error(use_awaitable, ec));
          if (ec) exchange->client_gone = true;
        }
        payload.clear();
        for (const TextChunk& chunk : chunks) payload += formatter.stream_chunk(chunk);
        if (end && end->kind == EndKind::Finished)
          payload += formatter.stream_end(*end, parsed.include_usage);
        co_await write_chunk(stream, *exchange, payload);
      }
      chunks.clear();
      if (end) break;
      if (exchange->client_gone) current->cancel(id);
      if (!exchange->signalled) {
        beast::error_code ec;
        co_await exchange->wake.async_wait(net::redirect_error(use_awaitable, ec));
      }
      exchange->signalled = false;
    }
    exchange->watching = false;
    {
      beast::error_code ignored;
      stream.socket().cancel(ignored);  // the disconnect watch
    }
    metrics.record_end(*end);
    outcome.prompt_tokens = end->usage.prompt_tokens;
    outcome.completion_tokens = end->usage.completion_tokens;

    if (exchange->client_gone) {
      keep_alive = false;
      outcome.status = 499;  // client closed the connection (nginx's convention, log only)
      co_return outcome;
    }
    std::optional<ApiError> error;
    if (end->kind == EndKind::Error) {
      error = error_from_end(*end);
    } else if (end->kind == EndKind::Cancelled) {
      error.emplace(503, "the request was cancelled: the server is shutting down",
                    "service_unavailable", "", "cancelled");
    }
    if (!stream_started) {
      if (error) {
        outcome.status = error->status();
        co_await send_error(stream, *error, keep_alive, version);
      } else {
        outcome.status = 200;
        co_await send(stream, 200, formatter.response(*end), "application/json", keep_alive,
                      version);
      }
      co_return outcome;
    }
    outcome.status = 200;
    if (error) {
      outcome.status = error->status();
      co_await write_chunk(stream, *exchange, CompletionFormatter::stream_error(*error));
    }
    beast::error_code ec;
    stream.expires_after(options.idle_timeout);
    co_await net::async_write(stream, http::make_chunk_last(),
                              net::redirect_error(use_awaitable, ec));
    stream.expires_never();
    if (ec) keep_alive = false;
    co_return outcome;
  }
};

HttpServer::HttpServer(HttpOptions options, std::string chat_template, EngineFactory make_engine) {
  const std::string address = options.host + ":" + std::to_string(options.port);
  try {
    impl_ = std::make_unique<Impl>(std::move(options), std::move(chat_template),
                                   std::move(make_engine));
  } catch (const boost::system::system_error& error) {
    throw std::runtime_error("cannot listen on " + address + ": " + error.code().message());
  }
}

HttpServer::~HttpServer() {
  if (!impl_) return;
  for (std::thread* thread : {&impl_->drainer, &impl_->loader})  // as run(): drainer first
    if (thread->joinable()) thread->join();
  std::lock_guard lock(impl_->reloader_mutex);
  if (impl_->reloader.joinable()) impl_->reloader.join();
}

uint16_t HttpServer::port() const { return impl_->acceptor.local_endpoint().port(); }

int HttpServer::run(bool handle_signals) {
  Impl& impl = *impl_;
  std::optional<net::signal_set> signals;
  std::function<void()> wait_signal;
  if (handle_signals) {
    signals.emplace(impl.io, SIGINT, SIGTERM, SIGHUP);
    wait_signal = [&] {
      signals->async_wait([&](beast::error_code ec, int signal) {
        if (ec) return;
        if (signal == SIGHUP && impl.draining) {
          spdlog::warn("SIGHUP ignored: the server is shutting down");
        } else if (signal == SIGHUP) {
          spdlog::info("SIGHUP: reloading the model");
          if (!impl.start_reload({}, [](int, std::string) {}))
            spdlog::warn("SIGHUP ignored: a reload is already running");
        } else {
          spdlog::info("{}: shutting down", signal == SIGINT ? "SIGINT" : "SIGTERM");
          impl.begin_drain();
        }
        wait_signal();
      });
    };
    wait_signal();
  }
  impl.start_loading();
  net::co_spawn(impl.io, impl.accept_loop(), net::detached);
  impl.io.run();
  if (signals) signals->cancel();
  // io.run() may return while the drainer is still joining the loader (closing the acceptor
  // can leave the io context without work): join the drainer first, so that no thread is
  // ever joined by two threads at once.
  for (std::thread* thread : {&impl.drainer, &impl.loader})
    if (thread->joinable()) thread->join();
  {
    std::lock_guard lock(impl.reloader_mutex);
    if (impl.reloader.joinable()) impl.reloader.join();
  }
  return impl.load_failed ? 1 : 0;
}

void HttpServer::stop() {
  net::post(impl_->io, [impl = impl_.get()] { impl->begin_drain(); });
}

void HttpServer::reload() {
  net::post(impl_->io, [impl = impl_.get()] {
    if (!impl->draining) impl->start_reload({}, [](int, std::string) {});
  });
}

}  // namespace troupe
