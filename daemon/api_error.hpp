// ApiError: an HTTP error answer in OpenAI's shape, {"error":{"message","type","param","code"}},
// with its status. Thrown by the request parsers for a client's mistake (4xx) and built from
// an engine's terminal event (error_from_end). Immutable; safe from any thread.
#pragma once

#include <stdexcept>
#include <string>

#include "actors/engine.hpp"

namespace troupe {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string type, std::string param = {},
           std::string code = {});
  int status() const { return status_; }
  const std::string& type() const { return type_; }
  const std::string& param() const { return param_; }   // "" is written as null
  const std::string& code() const { return code_; }     // "" is written as null

 private:
  int status_;
  std::string type_, param_, code_;
};

// 400 invalid_request_error naming the field at fault.
ApiError invalid_request(std::string message, std::string param = {}, std::string code = {});

// The error of an EndEvent of kind Error: InvalidRequest 400, QueueFull 429, Unavailable 503,
// Timeout 504, WorkerFailed and Internal 500.
ApiError error_from_end(const EndEvent& end);

// The JSON body (no trailing newline).
std::string error_body(const ApiError& error);

}  // namespace troupe
