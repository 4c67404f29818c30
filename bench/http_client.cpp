#include <utility>  // Boost 1.74's Asio uses std::exchange without including it

#include "bench/http_client.hpp"

#include <stdexcept>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace troupe {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

}  // namespace

HttpUrl parse_http_url(std::string_view url) {
  constexpr std::string_view scheme = "http://";
  if (url.substr(0, 8) == "https://")
    throw std::invalid_argument("https is not supported; use http://HOST:PORT");
  if (url.substr(0, scheme.size()) != scheme)
    throw std::invalid_argument("expected http://HOST[:PORT][/PREFIX]");
  std::string_view rest = url.substr(scheme.size());
  const std::size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  HttpUrl parsed;
  if (slash != std::string_view::npos) parsed.prefix = std::string(rest.substr(slash));
  while (!parsed.prefix.empty() && parsed.prefix.back() == '/') parsed.prefix.pop_back();
  const std::size_t colon = authority.rfind(':');
  if (colon != std::string_view::npos && authority.find(']', colon) == std::string_view::npos) {
    parsed.port = std::string(authority.substr(colon + 1));
    authority = authority.substr(0, colon);
  } else {
    parsed.port = "80";
  }
  if (authority.size() >= 2 && authority.front() == '[' && authority.back() == ']')
    authority = authority.substr(1, authority.size() - 2);
  parsed.host = std::string(authority);
  if (parsed.host.empty()) throw std::invalid_argument("the URL has no host");
  if (parsed.port.empty() || parsed.port.find_first_not_of("0123456789") != std::string::npos)
    throw std::invalid_argument("the port must be a number");
  return parsed;
}

std::vector<std::string> take_sse_events(std::string& pending) {
  std::vector<std::string> events;
  for (;;) {
    std::size_t end = pending.find("\n\n");
    std::size_t separator = 2;
    if (const std::size_t crlf = pending.find("\r\n\r\n"); crlf < end) end = crlf, separator = 4;
    if (end == std::string::npos) break;
    const std::string event = pending.substr(0, end);
    pending.erase(0, end + separator);
    std::string data;
    bool has_data = false;
    std::size_t start = 0;
    while (start <= event.size()) {
      std::size_t line_end = event.find('\n', start);
      if (line_end == std::string::npos) line_end = event.size();
      std::string line = event.substr(start, line_end - start);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.rfind("data:", 0) == 0) {
        std::string value = line.substr(5);
        if (!value.empty() && value.front() == ' ') value.erase(0, 1);
        if (has_data) data += '\n';
        data += value;
        has_data = true;
      }
      start = line_end + 1;
    }
    if (has_data) events.push_back(std::move(data));
  }
  return events;
}

namespace {

HttpResult exchange(http::verb method, const HttpUrl& url, const std::string& target,
                    const std::string* body, const std::string& api_key,
                    std::chrono::milliseconds timeout) {
  HttpResult result;
  try {
    asio::io_context io;
    beast::tcp_stream stream(io);
    // Runs one asynchronous operation to its end, or fails it after `timeout`.
    auto run = [&](auto&& start_operation) {
      beast::error_code error;
      stream.expires_after(timeout);
      start_operation([&](beast::error_code e, std::size_t) { error = e; });
      io.restart();
      io.run();
      return error;
    };
    auto check = [](beast::error_code error) {
      if (error == beast::error::timeout)
        throw std::runtime_error("no progress within the timeout");
      if (error) throw beast::system_error(error);
    };
    tcp::resolver resolver(io);
    const auto endpoints = resolver.resolve(url.host, url.port);
    {
      beast::error_code error;
      stream.expires_after(timeout);
      stream.async_connect(endpoints,
                           [&](beast::error_code e, const tcp::endpoint&) { error = e; });
      io.restart();
      io.run();
      check(error);
    }

    http::request<http::string_body> request(method, url.prefix + target, 11);
    request.set(http::field::host, url.host + ":" + url.port);
    request.set(http::field::accept, "text/event-stream, application/json");
    request.set(http::field::connection, "close");
    if (!api_key.empty()) request.set(http::field::authorization, "Bearer " + api_key);
    if (body) {
      request.set(http::field::content_type, "application/json");
      request.body() = *body;
    }
    request.prepare_payload();
    result.sent = Clock::now();
    check(run([&](auto handler) { http::async_write(stream, request, handler); }));

    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 << 20);
    check(run([&](auto handler) { http::async_read_header(stream, buffer, parser, handler); }));
    result.status = static_cast<int>(parser.get().result_int());
    const bool event_stream = parser.get()[http::field::content_type].find("text/event-stream") !=
                              beast::string_view::npos;
    std::string pending;
    auto on_body = [&](std::uint64_t, beast::string_view data, beast::error_code&) {
      pending.append(data.data(), data.size());
      const Clock::time_point now = Clock::now();
      for (std::string& event : take_sse_events(pending))
        result.events.push_back({now, std::move(event)});
      return data.size();
    };
    auto on_chunk_header = [](std::uint64_t, beast::string_view, beast::error_code&) {};
    if (event_stream) {
      parser.on_chunk_header(on_chunk_header);
      parser.on_chunk_body(on_body);
    }
    while (!parser.is_done()) {
      const beast::error_code error =
          run([&](auto handler) { http::async_read_some(stream, buffer, parser, handler); });
      if (error == http::error::end_of_chunk) continue;
      check(error);
    }
    if (event_stream && !parser.chunked()) {  // an event stream without chunked encoding
      pending += parser.get().body();
      for (std::string& event : take_sse_events(pending))
        result.events.push_back({Clock::now(), std::move(event)});
    } else if (!event_stream) {
      result.body = parser.get().body();
    }
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  } catch (const std::exception& error) {
    result.error = error.what();
    if (result.status != 0) result.error = "after the response header: " + result.error;
  }
  return result;
}

}  // namespace

HttpResult http_post(const HttpUrl& url, const std::string& target, const std::string& body,
                     const std::string& api_key, std::chrono::milliseconds timeout) {
  return exchange(http::verb::post, url, target, &body, api_key, timeout);
}

HttpResult http_get(const HttpUrl& url, const std::string& target, const std::string& api_key,
                    std::chrono::milliseconds timeout) {
  return exchange(http::verb::get, url, target, nullptr, api_key, timeout);
}

}  // namespace troupe
