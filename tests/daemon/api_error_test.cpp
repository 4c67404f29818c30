#include "daemon/api_error.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace troupe {
namespace {

EndEvent error_end(ErrorKind kind, std::string message, std::string param = {}) {
  EndEvent end;
  end.kind = EndKind::Error;
  end.error = kind;
  end.message = std::move(message);
  end.param = std::move(param);
  return end;
}

TEST(ApiError, EngineErrorsMapToStatuses) {
  EXPECT_EQ(error_from_end(error_end(ErrorKind::InvalidRequest, "bad", "stop")).status(), 400);
  EXPECT_EQ(error_from_end(error_end(ErrorKind::InvalidRequest, "bad", "stop")).param(), "stop");
  EXPECT_EQ(error_from_end(error_end(ErrorKind::QueueFull, "full")).status(), 429);
  EXPECT_EQ(error_from_end(error_end(ErrorKind::Unavailable, "draining")).status(), 503);
  EXPECT_EQ(error_from_end(error_end(ErrorKind::Timeout, "late")).status(), 504);
  EXPECT_EQ(error_from_end(error_end(ErrorKind::WorkerFailed, "boom")).status(), 500);
  EXPECT_EQ(error_from_end(error_end(ErrorKind::Internal, "bug")).status(), 500);
  EXPECT_STREQ(error_from_end(error_end(ErrorKind::QueueFull, "the queue is full")).what(),
               "the queue is full");
}

TEST(ApiError, BodyHasOpenAisShape) {
  const auto body = nlohmann::json::parse(error_body(invalid_request("no \xff good", "top_p")));
  EXPECT_EQ(body.size(), 1u);
  const auto& error = body.at("error");
  EXPECT_EQ(error.at("message"), "no \xef\xbf\xbd good");  // invalid UTF-8 replaced
  EXPECT_EQ(error.at("type"), "invalid_request_error");
  EXPECT_EQ(error.at("param"), "top_p");
  EXPECT_TRUE(error.at("code").is_null());
  const auto without_param = nlohmann::json::parse(error_body(ApiError(503, "x", "t")));
  EXPECT_TRUE(without_param.at("error").at("param").is_null());
}

}  // namespace
}  // namespace troupe
