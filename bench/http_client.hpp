#pragma once
// A minimal blocking HTTP/1.1 client for `troupe-bench load` (Boost.Beast): one connection
// per request (Connection: close), a POST with a JSON body, and the response read as it
// arrives, so that each Server-Sent Event ("data: ...") is timestamped when its bytes land.
// Thread safety: the functions keep no state; call them from as many threads as requests
// are in flight. Errors are results (status 0 and a message), never exceptions, except for
// an unusable URL.

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

struct HttpUrl {
  std::string host;
  std::string port;    // "80" when the URL has none
  std::string prefix;  // path before the API's, "" or e.g. "/api"
};

// "http://HOST[:PORT][/PREFIX]"; throws std::invalid_argument saying what is wrong (https is
// not supported).
HttpUrl parse_http_url(std::string_view url);

struct SseEvent {
  std::chrono::steady_clock::time_point at;  // when its last byte was read
  std::string data;                          // the payload after "data: " (lines joined)
};

struct HttpResult {
  int status = 0;                // 0: no HTTP response (the error says why)
  std::string error;             // connection or protocol failure
  std::string body;              // a body that was not an event stream (e.g. an error's JSON)
  std::vector<SseEvent> events;  // text/event-stream responses
  std::chrono::steady_clock::time_point sent;  // when the request was written
};

// POSTs body (application/json) to prefix + target; api_key, when not empty, goes in an
// Authorization: Bearer header. Gives up with an error after `timeout` without progress.
HttpResult http_post(const HttpUrl& url, const std::string& target, const std::string& body,
                     const std::string& api_key, std::chrono::milliseconds timeout);
// GETs prefix + target, otherwise as http_post.
HttpResult http_get(const HttpUrl& url, const std::string& target, const std::string& api_key,
                    std::chrono::milliseconds timeout);

// Splits event-stream bytes into the data payloads of complete events; leaves an incomplete
// event's bytes in `pending` for the next call. Comment lines (":...") and fields other than
// data are ignored.
std::vector<std::string> take_sse_events(std::string& pending);

}  // namespace troupe
