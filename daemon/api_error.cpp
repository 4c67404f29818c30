#include "daemon/api_error.hpp"

#include <nlohmann/json.hpp>

namespace troupe {

ApiError::ApiError(int status, std::string message, std::string type, std::string param,
                   std::string code)
    : std::runtime_error(std::move(message)),
      status_(status),
      type_(std::move(type)),
      param_(std::move(param)),
      code_(std::move(code)) {}

ApiError invalid_request(std::string message, std::string param, std::string code) {
  return ApiError(400, std::move(message), "invalid_request_error", std::move(param),
                  std::move(code));
}

ApiError error_from_end(const EndEvent& end) {
  std::string message = end.message.empty() ? "the request failed" : end.message;
  switch (end.error) {
    case ErrorKind::InvalidRequest:
      return invalid_request(std::move(message), end.param);
    case ErrorKind::QueueFull:
      return ApiError(429, std::move(message), "rate_limit_error", {}, "queue_full");
    case ErrorKind::Unavailable:
      return ApiError(503, std::move(message), "service_unavailable", {}, "unavailable");
    case ErrorKind::Timeout:
      return ApiError(504, std::move(message), "timeout_error", {}, "deadline_exceeded");
    case ErrorKind::WorkerFailed:
      return ApiError(500, std::move(message), "server_error", {}, "worker_failed");
    case ErrorKind::None:
    case ErrorKind::Internal:
      break;
  }
  return ApiError(500, std::move(message), "server_error", {}, "internal_error");
}

std::string error_body(const ApiError& error) {
  nlohmann::ordered_json body;
  auto& inner = body["error"];
  inner["message"] = error.what();
  inner["type"] = error.type();
  inner["param"] = error.param().empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(error.param());
  inner["code"] = error.code().empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(error.code());
  return body.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace troupe
